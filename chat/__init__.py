"""A guarded chat engine over a local llama.cpp model or an OpenAI-compatible API.

Python API (no Gradio needed)::

    from chat import GenerationParams, Settings, build_engine

    engine = build_engine(Settings())            # the embedded SmolLM2 model
    for event in engine.stream([{"role": "user", "content": "Hello"}], GenerationParams(max_new_tokens=64)):
        if isinstance(event, TextDelta):
            print(event.text, end="", flush=True)

``engine.reply(messages, params)`` runs a reply to the end and returns its ``Done`` event.
"""

from chat.backends.base import Backend, Finish
from chat.engine import ChatEngine
from chat.engine.retry import RetryPolicy
from chat.errors import (
    AuthFailed,
    BackendError,
    BackendTimeout,
    BadResponse,
    ChatError,
    ConfigError,
    ContextOverflow,
    InputBlocked,
    InvalidRequest,
    OutputBlocked,
    RateLimited,
    Unavailable,
)
from chat.factory import build_engine
from chat.messages import (
    Done,
    Event,
    GenerationParams,
    Message,
    Notice,
    Stats,
    TextDelta,
    ThinkingDelta,
    Waiting,
)
from chat.settings import Settings

__all__ = [
    "AuthFailed",
    "Backend",
    "BackendError",
    "BackendTimeout",
    "BadResponse",
    "ChatEngine",
    "ChatError",
    "ConfigError",
    "ContextOverflow",
    "Done",
    "Event",
    "Finish",
    "GenerationParams",
    "InputBlocked",
    "InvalidRequest",
    "Message",
    "Notice",
    "OutputBlocked",
    "RateLimited",
    "RetryPolicy",
    "Settings",
    "Stats",
    "TextDelta",
    "ThinkingDelta",
    "Unavailable",
    "Waiting",
    "build_engine",
]
