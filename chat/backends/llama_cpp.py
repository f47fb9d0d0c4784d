"""The local backend: one in-process llama.cpp model shared by every session.

Generation is serialised by a ``TurnQueue``; closing the stream (Stop, a closed tab) ends the
token loop at the next token and frees the model for the next request in the queue.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from chat.backends.base import Backend, Chunk, Finish
from chat.errors import ConfigError, ContextOverflow
from chat.messages import GenerationParams, Message
from chat.queueing import Cancelled, TurnQueue

DEFAULT_N_CTX = 4096
PER_MESSAGE_OVERHEAD = 8  # used only for GGUFs without a chat template


def gpu_offload_supported() -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


class LlamaCppBackend(Backend):
    name = "local"

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int = DEFAULT_N_CTX,
        n_gpu_layers: int | None = None,
        n_threads: int | None = None,
        chat_format: str | None = None,
    ) -> None:
        from llama_cpp import Llama

        if n_gpu_layers is None:
            n_gpu_layers = -1 if gpu_offload_supported() else 0
        try:
            self._llm = Llama(
                model_path=str(model_path),
                n_ctx=n_ctx,
                n_gpu_layers=n_gpu_layers,
                n_threads=n_threads,
                chat_format=chat_format,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ConfigError(
                f"cannot load {model_path.name}: {exc}. The file may be corrupt or truncated; "
                "if memory is short, lower --n-ctx or --n-gpu-layers"
            ) from None
        self.model = model_path.name.removesuffix(".gguf")
        self.model_path = model_path
        self.n_gpu_layers = n_gpu_layers
        self._queue = TurnQueue()
        self._formatter = _template_formatter(self._llm)

    # -- Backend ------------------------------------------------------------------------------

    def context_window(self) -> int:
        return self._llm.n_ctx()

    @property
    def queue_depth(self) -> int:
        return self._queue.depth

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Exact prompt length: render the model's own chat template, then tokenize it."""
        dicts = [m.to_dict() for m in messages]
        if self._formatter is None:
            return sum(len(self.tokenize(m.content)) + PER_MESSAGE_OVERHEAD for m in messages)
        rendered = self._formatter(messages=dicts)
        return len(
            self._llm.tokenize(
                rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True
            )
        )

    def tokenize(self, text: str) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def stream(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        cancel: threading.Event | None = None,
        api_key: str | None = None,
    ) -> Iterator[Chunk]:
        try:
            yield from self._queue.wait_turn(cancel)
        except Cancelled:
            yield Finish("cancelled")
            return
        pieces: list[str] = []
        reason = "stop"
        completion = None
        try:
            if params.temperature == 0:
                # Greedy decoding is reproducible only from the same KV state: a reused prefix
                # evaluates in different batches and can change the argmax (see README).
                self._llm.reset()
            try:
                completion = self._llm.create_chat_completion(
                    [m.to_dict() for m in messages],
                    temperature=params.temperature,
                    top_p=params.top_p,
                    max_tokens=params.max_new_tokens,
                    seed=params.seed,
                    stream=True,
                )
                for chunk in completion:
                    choice = chunk["choices"][0]
                    text = choice["delta"].get("content")
                    if text:
                        pieces.append(text)
                        yield text
                    if choice.get("finish_reason"):
                        reason = choice["finish_reason"]
                    if cancel is not None and cancel.is_set():
                        reason = "cancelled"
                        break
            except ValueError as exc:  # llama.cpp's "Requested tokens exceed context window"
                if "context window" in str(exc):
                    raise ContextOverflow(str(exc)) from None
                raise
            # No prompt_tokens: the engine counted this exact prompt when it fitted the context.
            yield Finish(reason, completion_tokens=len(self.tokenize("".join(pieces))))
        finally:
            if completion is not None:
                completion.close()
            self._queue.release()

    def close(self) -> None:
        llm, self._llm = getattr(self, "_llm", None), None
        if llm is not None:
            llm.close()


def _template_formatter(llm):  # noqa: ANN001, ANN202 - llama_cpp types are private
    """A formatter for the GGUF's own chat template, so token counts match what is generated."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return None
    vocab = llm._model  # noqa: SLF001 - the only way to read the special tokens' text
    eos = llm.token_eos()
    bos = llm.token_bos()
    return Jinja2ChatFormatter(
        template=template,
        eos_token=vocab.token_get_text(eos) if eos != -1 else "",
        bos_token=vocab.token_get_text(bos) if bos != -1 else "",
        stop_token_ids=[eos],
    )
