"""The guarded path every request takes (``guarded``), the parts it is given (``protocols``),
and its helpers: response cache, retry policy, counters, reasoning split."""

from chat.engine.guarded import CACHE_REPLAY_CHUNK, ChatEngine, with_reference
from chat.engine.protocols import InputGuard, OutputFilter, OutputGuard, ResponseCache

__all__ = [
    "CACHE_REPLAY_CHUNK",
    "ChatEngine",
    "InputGuard",
    "OutputFilter",
    "OutputGuard",
    "ResponseCache",
    "with_reference",
]
