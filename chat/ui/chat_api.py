"""The public ``/chat`` API of the Gradio app (``gradio_client``'s ``predict("/chat")``).

``ApiChat`` is a part of ``chat.ui.handlers.ChatHandlers``, whose ``_pump`` steps a reply on the
handlers' worker threads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import gradio as gr

from chat.i18n import detect_language
from chat.messages import GenerationParams, TextDelta
from chat.reply.turn import Cancelled, Failure, Refusal, Reply, ReplyRequest, Step
from chat.ui.bubbles import user_message
from chat.ui.convert import build_params, build_request, knowledge_name

if TYPE_CHECKING:
    from chat.service.async_bridge import EventPump


_DEFAULTS = GenerationParams()  # the API's defaults are the engine's


class ApiChat:
    def _pump(self, reply: ReplyRequest, turn: Any = None) -> EventPump[Step]:
        raise NotImplementedError  # ChatHandlers'

    async def api(
        self,
        message: str,
        history: list[dict[str, Any]] | None = None,
        system_prompt: str = "",
        temperature: float = _DEFAULTS.temperature,
        context_length: int = _DEFAULTS.context_length,
        max_new_tokens: int = _DEFAULTS.max_new_tokens,
        top_p: float = _DEFAULTS.top_p,
        knowledge: str = "",
    ) -> AsyncIterator[str]:
        """Stream a reply for ``message`` after the optional OpenAI-style ``history``; with
        ``knowledge`` (a knowledge base name) it answers from that knowledge base, as
        ``/api/chat``'s ``context.knowledge`` does.

        Yields the reply so far (``predict`` returns the final text). Errors arrive as a
        readable message (``gradio_client.exceptions.AppError``).
        """
        lang = detect_language(message if isinstance(message, str) else "")
        text = ""
        pump: EventPump[Step] | None = None
        try:
            messages = build_request(message, history, system_prompt)
            params = build_params(temperature, context_length, max_new_tokens, top_p)
            reply = ReplyRequest(messages=messages, params=params, knowledge=knowledge_name(knowledge))
            pump = self._pump(reply)
            async for step in pump:
                match step:
                    case TextDelta():
                        text += step.text
                        yield text
                    case Refusal(stage="input"):
                        raise gr.Error(step.text, print_exception=False)
                    case Failure(error=error):
                        raise gr.Error(user_message(error, lang), print_exception=False)
                    case Reply() | Refusal() | Cancelled() if step.text != text:
                        yield step.text
        except gr.Error:
            raise
        except Exception as exc:  # noqa: BLE001 - the API seam: a readable message, never internals
            raise gr.Error(user_message(exc, lang), print_exception=False) from None
        finally:
            if pump is not None:
                await pump.aclose()
