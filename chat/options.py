"""How a setting is declared and read: a flag and environment variables per field, parsed into
``chat.settings.Settings`` (flags win), checked, and listed for the docs. ``Settings`` is the
schema; this is its intake, so the schema reads as a list of settings.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import field, fields
from typing import Any
from urllib.parse import urlsplit

from chat.errors import ConfigError


def flag_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true/false, got {text!r}")


def comma_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def option(env: str | tuple[str, ...], help: str, *, flag: bool = True, parse: Any = str, **kw: Any) -> Any:
    envs = (env,) if isinstance(env, str) else env
    return field(metadata={"env": envs, "help": help, "flag": flag, "parse": parse}, **kw)


STT_PROVIDERS = ("local", "off")  # besides an OpenAI-compatible base URL (chat/voice)
TTS_PROVIDERS = ("espeak", "browser", "off")

# Checks only a room above can answer (the backend registry adds one: is each named backend
# registered and buildable?). Settings import no room, so every room can import settings.
_CHECKS: list[Callable[[Any], None]] = []


def add_check(check: Callable[[Any], None]) -> None:
    """Run ``check`` on every ``Settings`` built from now on; it raises ``ConfigError``."""
    _CHECKS.append(check)


def read_sources(schema: type, argv: Sequence[str] | None, env: Mapping[str, str] | None) -> dict[str, Any]:
    """Each field's value from its flag, else its environment variables; fields given by neither
    keep their defaults. A value that cannot be read raises ``ConfigError`` naming its source."""
    env = os.environ if env is None else env
    args = vars(build_parser(schema).parse_args(argv))
    values: dict[str, Any] = {}
    for f in fields(schema):
        meta = f.metadata
        raw = args.get(f.name) if meta["flag"] else None
        source = f"--{f.name.replace('_', '-')}"
        if raw is None:
            for name in meta["env"]:
                if env.get(name, "") != "":
                    raw, source = env[name], name
                    break
        if raw is None:
            continue
        try:
            values[f.name] = meta["parse"](raw)
        except ValueError:
            kind = {flag_bool: "bool", comma_list: "list"}.get(meta["parse"], meta["parse"].__name__)
            raise ConfigError(f"{source}: cannot read {raw!r} as {kind}") from None
    return values


def validate(settings: Any) -> None:
    """Raise ``ConfigError`` for a value no setting may take, then run the rooms' own checks."""
    if settings.prompt_cache_bytes < 0:
        raise ConfigError(f"--prompt-cache-bytes must be 0 or more, got {settings.prompt_cache_bytes}")
    if settings.parallel is not None and not 1 <= settings.parallel <= 64:
        raise ConfigError(f"--parallel must be from 1 to 64, got {settings.parallel}")
    if settings.n_ctx < 64:
        raise ConfigError(f"--n-ctx must be at least 64, got {settings.n_ctx}")
    if not 0 < settings.port < 65536:
        raise ConfigError(f"--port must be 1-65535, got {settings.port}")
    if settings.auth and ":" not in settings.auth:
        raise ConfigError("--auth must look like user:password")
    positive = ("cache_max_entries", "cache_max_bytes", "cache_ttl", "max_message_chars", "max_turns")
    positive += ("guard_timeout", "embedding_timeout")
    positive += ("knowledge_max_chars", "knowledge_max_chunks")
    positive += ("knowledge_max_bytes", "max_tool_rounds", "tool_timeout")
    positive += ("max_audio_seconds",)
    for flag, value, names in (("stt", settings.stt, STT_PROVIDERS), ("tts", settings.tts, TTS_PROVIDERS)):
        if value not in names and not value.startswith(("http://", "https://")):
            raise ConfigError(f"--{flag} must be {', '.join(names)} or an http(s):// URL, got {value!r}")
    for name in (*positive, "feedback_log_max_bytes", "max_ws_per_client", "ws_idle_timeout"):
        if getattr(settings, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(settings, name)}")
    if settings.rate_limit < 0:
        raise ConfigError(f"--rate-limit must be 0 (off) or more, got {settings.rate_limit}")
    if settings.max_body_bytes < 1024:
        raise ConfigError(f"--max-body-bytes must be at least 1024, got {settings.max_body_bytes}")
    if settings.max_upload_bytes < 1024:
        raise ConfigError(f"--max-upload-bytes must be at least 1024, got {settings.max_upload_bytes}")
    for proxy in settings.trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(f"--trusted-proxies: {proxy!r} is not an IP address or CIDR network") from None
    for origin in settings.allowed_origins:
        if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
            raise ConfigError(f"--allowed-origins: {origin!r} must look like https://host[:port] (no path)")
    if settings.log_format not in ("text", "json"):
        raise ConfigError(f"--log-format must be text or json, got {settings.log_format!r}")
    if settings.retention_days < 0:
        raise ConfigError(f"--retention-days must be 0 (keep) or more, got {settings.retention_days}")
    if settings.redis_url and urlsplit(settings.redis_url).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError("CHAT_REDIS_URL must start with redis://, rediss:// or unix://")
    for check in _CHECKS:
        check(settings)


def build_parser(schema: type) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Self-hosted LLM chat (Gradio + llama.cpp / OpenAI-compatible APIs)"
    )
    for f in fields(schema):
        meta = f.metadata
        if not meta["flag"]:
            continue
        env = " or ".join(meta["env"])
        if meta["parse"] is flag_bool:
            parser.add_argument(
                f"--{f.name.replace('_', '-')}",
                dest=f.name,
                nargs="?",
                const="true",
                default=None,
                help=f"{meta['help']} [env {env}]",
            )
        else:
            parser.add_argument(
                f"--{f.name.replace('_', '-')}", dest=f.name, default=None, help=f"{meta['help']} [env {env}]"
            )
    return parser


def options_table(schema: type) -> str:
    """The table of ``schema``'s options (flag, variable, default, meaning) for the docs."""
    rows = ["| flag | environment variable | default | meaning |", "|---|---|---|---|"]
    for f in fields(schema):
        meta = f.metadata
        flag = f"`--{f.name.replace('_', '-')}`" if meta["flag"] else "(none)"
        env = ", ".join(f"`{e}`" for e in meta["env"])
        default = f.default if f.default not in ("", None, ()) else ""
        rows.append(f"| {flag} | {env} | {default} | {meta['help']} |")
    return "\n".join(rows)
