"""The cloud backend: any OpenAI-compatible ``/chat/completions`` API, streamed over SSE.

Works with OpenAI, DeepSeek, DashScope (compatible mode), the Hugging Face router, Ollama, vLLM
and ``llama_cpp.server``. One pooled ``httpx.Client`` is shared by every session of the process.
Retry, backoff and fallback live in the engine. The parts, one job each:

- ``backend``: ``OpenAICompatBackend``, one HTTP attempt turned into text deltas;
- ``client``: per-phase ``Timeouts`` and the pooled HTTP client;
- ``sse``: SSE events grouped by network read, chunk and JSON body reading;
- ``errors``: every httpx error, status and provider error body mapped to ``chat.errors``;
- ``watchdog``: the total deadline and cancel for a stream blocked in a read;
- ``estimate``: prompt token estimates (no remote tokenizer is available).
"""

from chat.backends.openai_compat.backend import OpenAICompatBackend, payload
from chat.backends.openai_compat.client import Timeouts, build_http_client, shared_http_client
from chat.backends.openai_compat.errors import retry_after
from chat.backends.openai_compat.estimate import estimate_text_tokens, estimate_tokens

_payload = payload  # the name bench/bench_cloud.py imports

__all__ = [
    "OpenAICompatBackend",
    "Timeouts",
    "build_http_client",
    "estimate_text_tokens",
    "estimate_tokens",
    "payload",
    "retry_after",
    "shared_http_client",
]
