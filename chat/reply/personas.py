"""Personas: system prompts kept as plain Markdown files, one per persona and language.

``prompts/personas/<key>.<lang>.md``: the first line is ``# Title`` (shown in the dropdown), then
optional ``name: value`` header lines, then a blank line and the system prompt::

    # Shop support
    knowledge: shop                    # answer from the "shop" knowledge base
    tools: shop.get_order_status       # the MCP tools it may call (patterns; "none": none)
    example: Where is my order?        # shown on an empty chat (repeat for several)

    You are the online support of a shop...

Adding a persona means adding a file; no code changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DIR = Path(__file__).resolve().parent.parent.parent / "prompts" / "personas"
_HEADER = re.compile(r"^(knowledge|example|tools):\s*(.*?)\s*$")


@dataclass(frozen=True)
class Persona:
    key: str  # the file name without language and suffix: "shop_support"
    lang: str  # "en", "zh", ... from the file name ("" when it has none)
    title: str
    prompt: str
    knowledge: str | None = None  # the knowledge base it answers from
    examples: tuple[str, ...] = ()
    tools: tuple[str, ...] | None = None  # tool name patterns it may call (None: every tool)


def parse_persona(path: Path) -> Persona:
    key, _, lang = path.name.removesuffix(".md").partition(".")
    first, _, rest = path.read_text(encoding="utf-8").partition("\n")
    lines = rest.strip().splitlines()
    headers: dict[str, list[str]] = {"knowledge": [], "example": [], "tools": []}
    while lines and (match := _HEADER.match(lines[0])):
        if match[2]:
            headers[match[1]].append(match[2])
        lines.pop(0)
    return Persona(
        key=key,
        lang=lang,
        title=first.lstrip("#").strip() or path.stem,
        prompt="\n".join(lines).strip(),
        knowledge=headers["knowledge"][0] if headers["knowledge"] else None,
        examples=tuple(headers["example"]),
        tools=tuple(p.strip() for line in headers["tools"] for p in line.split(",") if p.strip())
        if headers["tools"]
        else None,
    )


def load_persona_list(directory: Path = DEFAULT_DIR) -> list[Persona]:
    """Every persona, sorted by file name so the order is stable."""
    return [parse_persona(path) for path in sorted(directory.glob("*.md"))]


def load_personas(directory: Path = DEFAULT_DIR) -> dict[str, str]:
    """``{title: system prompt}``, sorted by file name."""
    return {p.title: p.prompt for p in load_persona_list(directory)}
