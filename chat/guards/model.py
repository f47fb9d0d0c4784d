"""The optional guard model: a small classifier for what the rules miss, on input and output.

Two ways to run one, both usable wherever a ``chat.guards.moderation.Moderation`` is (``flagged``):

``LocalGuardModel``  a GGUF run in-process through llama.cpp (``--guard-model``, a path or a Hub
                     reference, resolved like ``--model``), e.g. Qwen3Guard-Gen-0.6B or
                     Llama-Guard-3-1B.
``ChatGuardClient``  any OpenAI-compatible ``/chat/completions`` endpoint used as a classifier
                     (``--guard-url``; ``--guard-model`` names the model there).

Both have a time budget (``--guard-timeout``) and fail closed: no verdict in time, an error or
an answer that is neither safe nor unsafe raises ``ModerationUnavailable``, and the guard
refuses. A model whose name contains "guard" gets the text as the conversation its own chat
template expects; any other model gets an instruction and, in-process, a grammar that only
allows "safe" or "unsafe" (this is how the embedded SmolLM2 stands in for a guard in tests).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import httpx

from chat.errors import ConfigError
from chat.guards.moderation import ModerationUnavailable

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
GUARD_N_CTX = 4096
GUARD_THREADS = 1  # one thread: a second one fights the chat model for cores (5x slower here)
MAX_VERDICT_TOKENS = 24  # "Safety: Unsafe\nCategories: Violent" fits
INSTRUCTION = (
    "You are a content safety classifier for a chat service. Read the user's message. Answer "
    "'unsafe' if it asks for help to harm people or break the law (fraud, violence, theft, "
    "illegal drugs or weapons, hacking accounts, obtaining other people's passwords or codes), "
    "or if it contains a password, code or key. Answer 'safe' for anything else, including "
    "news, victims asking for help, prevention, education and fiction. Answer with one word: "
    "safe or unsafe."
)
_UNSAFE = re.compile(r"\b(unsafe|controversial)\b", re.IGNORECASE)
_SAFE = re.compile(r"\bsafe\b", re.IGNORECASE)
_GRAMMAR = 'root ::= "safe" | "unsafe"'


def parse_verdict(reply: str) -> bool:
    """True (refuse) for "unsafe"/"controversial", False for "safe"; anything else fails closed.

    Qwen3Guard-Gen answers "Safety: Unsafe|Controversial|Safe", Llama Guard "safe" or
    "unsafe\\nS1": the first word decides, so a category list never flips it.
    """
    if _UNSAFE.search(reply):
        return True
    if _SAFE.search(reply):
        return False
    raise ModerationUnavailable("the guard model's answer is neither safe nor unsafe")


def is_guard_model(name: str) -> bool:
    """A purpose-built guard (its chat template carries the policy), not a general model."""
    return "guard" in name.lower()


def guard_messages(text: str, *, guard: bool) -> list[dict[str, str]]:
    if guard:
        return [{"role": "user", "content": text}]
    return [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": text}]


class LocalGuardModel:
    """A GGUF classifier in this process. One call at a time; a call past ``timeout`` fails closed."""

    def __init__(
        self,
        model_path: Path,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        n_ctx: int = GUARD_N_CTX,
        n_threads: int | None = GUARD_THREADS,
    ) -> None:
        from llama_cpp import Llama, LlamaGrammar

        try:
            self._llm = Llama(
                model_path=str(model_path), n_ctx=n_ctx, n_threads=n_threads, n_gpu_layers=0, verbose=False
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ConfigError(f"cannot load the guard model {model_path.name}: {exc}") from None
        self.name = model_path.name.removesuffix(".gguf")
        self.guard = is_guard_model(self.name)
        self._grammar = None if self.guard else LlamaGrammar.from_string(_GRAMMAR, verbose=False)
        self.timeout = timeout
        self._lock = threading.Lock()  # llama.cpp contexts are not thread-safe
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="guard-model")
        self._cancel = threading.Event()

    def flagged(self, text: str) -> bool:
        deadline = time.monotonic() + self.timeout
        future: Future[str] = self._pool.submit(self._classify, text, deadline)
        try:
            reply = future.result(timeout=self.timeout)
        except FutureTimeout:
            self._cancel.set()  # the worker stops at its next token; later calls queue behind it
            raise ModerationUnavailable(f"guard model over its {self.timeout:g} s budget") from None
        return parse_verdict(reply)

    def _classify(self, text: str, deadline: float) -> str:
        with self._lock:
            self._cancel.clear()
            if time.monotonic() > deadline:
                return ""  # waited out its budget behind an earlier call: the caller has gone
            kwargs: dict[str, Any] = {"temperature": 0.0, "max_tokens": MAX_VERDICT_TOKENS, "stream": True}
            if self._grammar is not None:
                kwargs["grammar"] = self._grammar
            parts = []
            for chunk in self._llm.create_chat_completion(
                guard_messages(self._fit(text), guard=self.guard), **kwargs
            ):
                parts.append(chunk["choices"][0]["delta"].get("content") or "")
                if self._cancel.is_set():
                    break
            return "".join(parts)

    def _fit(self, text: str) -> str:
        """The end of ``text`` if it would not fit the guard's window with its prompt and answer."""
        budget = self._llm.n_ctx() - 256 - MAX_VERDICT_TOKENS
        tokens = self._llm.tokenize(text.encode(), add_bos=False)
        if len(tokens) <= budget:
            return text
        return self._llm.detokenize(tokens[-budget:]).decode(errors="ignore")

    def close(self) -> None:
        self._cancel.set()
        self._pool.shutdown(wait=True)
        self._llm.close()


class ChatGuardClient:
    """An OpenAI-compatible chat endpoint as a classifier: one attempt within ``timeout``."""

    def __init__(
        self,
        url: str,
        *,
        model: str = "",
        api_key: str = "",
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        url = url.rstrip("/")
        self.url = url if url.endswith("/chat/completions") else url + "/chat/completions"
        self.model = model
        self.guard = is_guard_model(model)
        self._grammar = not self.guard
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout, headers=headers, transport=transport)

    def flagged(self, text: str) -> bool:
        body: dict[str, Any] = {
            "messages": guard_messages(text, guard=self.guard),
            "temperature": 0,
            "max_tokens": MAX_VERDICT_TOKENS,
        }
        if self.model:
            body["model"] = self.model
        if self._grammar:  # llama.cpp's servers honour it; others answer 400 once, then go without
            body["grammar"] = _GRAMMAR
        response = self._post(body)
        if response.status_code in (400, 422) and "grammar" in body:
            self._grammar = False
            del body["grammar"]
            response = self._post(body)
        if response.status_code != 200:
            raise ModerationUnavailable(f"HTTP {response.status_code}")
        try:
            reply = response.json()["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            raise ModerationUnavailable("malformed guard response") from None
        return parse_verdict(reply)

    def _post(self, body: dict[str, Any]) -> httpx.Response:
        try:
            return self._client.post(self.url, json=body)
        except httpx.HTTPError as exc:
            raise ModerationUnavailable(type(exc).__name__) from None

    def close(self) -> None:
        self._client.close()
