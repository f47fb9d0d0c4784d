"""Speech to text on this machine: faster-whisper (CTranslate2, int8 on CPU).

``--stt-model`` picks the weights: empty for the embedded Whisper base (``chat.voice.embedded``),
a folder holding a CTranslate2 conversion (``model.bin``, ``config.json``, ``tokenizer.json``),
or a name faster-whisper resolves through the Hugging Face cache (``small``,
``Systran/faster-whisper-small``; downloaded when the machine may reach the Hub). The model is
loaded on the first recording, not at start: a server whose users never speak pays nothing.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

from chat.voice.audio import Clip
from chat.voice.base import Segment, Transcript
from chat.voice.embedded import NAME as EMBEDDED_NAME
from chat.voice.embedded import embedded_files
from chat.voice.errors import ModelMissing

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

log = logging.getLogger(__name__)

# One loaded model per (reference, threads) in the process: every app built here (tests build
# several, bench_voice two decoders) shares its weights instead of loading 150 MB again.
_models: dict[tuple[str, int], WhisperModel] = {}
_models_lock = threading.Lock()


class LocalWhisper:
    """Shared by every request (CTranslate2 queues concurrent calls)."""

    name = "local"

    def __init__(self, model: str = "", *, threads: int | None = None, beam_size: int = 1) -> None:
        self.model_ref = model
        self.threads = threads or min(os.cpu_count() or 1, 4)
        # Greedy decoding: 10-20% less CPU than beam 5 on 2 cores with as many words right, more
        # for Mandarin (bench/bench_voice.py); no temperature fallback, whose retries took a
        # garbled 3 s clip from 1 s to 14 s.
        self.beam_size = beam_size

    @property
    def label(self) -> str:
        return self.model_ref or EMBEDDED_NAME

    def load(self) -> WhisperModel:
        key = (self.model_ref, self.threads)
        with _models_lock:
            if key not in _models:
                _models[key] = self._build()
            return _models[key]

    def _build(self) -> WhisperModel:
        from faster_whisper import WhisperModel

        args = {"device": "cpu", "compute_type": "int8", "cpu_threads": self.threads}
        try:
            if not self.model_ref:
                return WhisperModel(EMBEDDED_NAME, files=embedded_files(), **args)
            return WhisperModel(os.path.expanduser(self.model_ref), **args)
        except ModelMissing:
            raise
        except Exception as exc:  # CTranslate2, the Hub and tokenizers raise their own kinds
            log.error("speech model %s cannot be loaded: %s", self.label, exc)
            raise ModelMissing(f"speech model {self.label} cannot be loaded ({type(exc).__name__})") from None

    def transcribe(self, clip: Clip, language: str | None) -> Transcript:
        model = self.load()
        pieces, info = model.transcribe(
            clip.samples,
            language=language,
            beam_size=self.beam_size,
            temperature=0.0,
            condition_on_previous_text=False,
        )
        segments = tuple(Segment(round(p.start, 2), round(p.end, 2), p.text.strip()) for p in pieces)
        text = join_segments([segment.text for segment in segments])
        return Transcript(text=text, language=info.language, seconds=clip.seconds, segments=segments)


def join_segments(texts: list[str]) -> str:
    """Segments joined as the language writes: a space between Latin words, none between
    Chinese characters."""
    out = ""
    for text in filter(None, texts):
        if out and out[-1].isascii() and text[0].isascii():
            out += " "
        out += text
    return out
