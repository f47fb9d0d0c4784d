"""Text to speech on this machine: espeak-ng's library through ctypes.

The library comes from the ``espeakng-loader`` wheel (libespeak-ng 1.52 with its data, the
Mandarin dictionary included), else from the system (Debian's ``libespeak-ng1``). espeak-ng is a
formant synthesiser: robotic but clear, and hundreds of times faster than real time on one core.
Its library keeps global state (voice, rate, callback), so the process holds it once and one
synthesis runs at a time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import numpy as np

from chat.common.once import Once
from chat.voice.audio import FORMATS, SILENCE_RMS, encode, loudness
from chat.voice.base import Speech
from chat.voice.errors import BadVoiceRequest, ModelMissing

# espeak-ng's speak_lib.h
AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_DONT_EXIT = 0x8000  # report a missing data folder instead of exiting the process
POS_CHARACTER = 1
CHARS_UTF8 = 1
RATE = 1  # espeakRATE, words per minute

# Per language: the voice and its speed. Mandarin at 120 words a minute: at espeak's default
# 175 Whisper base understood about one short sentence in four; at 120, more (bench_voice.py).
VOICES: dict[str, tuple[str, int]] = {"en": ("en-us", 165), "zh": ("cmn", 120)}
# OpenAI's voice names, accepted so its clients work unchanged: the language's own voice.
OPENAI_VOICES = frozenset(
    [
        "alloy",
        "ash",
        "ballad",
        "coral",
        "echo",
        "fable",
        "nova",
        "onyx",
        "sage",
        "shimmer",
        "verse",
        "marin",
        "cedar",
    ]
)

_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def library_paths() -> tuple[str, str | None]:
    """(library, data folder's parent): the wheel's, else the system's with its built-in data."""
    try:
        root = Path(distribution("espeakng-loader").locate_file("espeakng_loader"))
        if (root / "libespeak-ng.so").is_file():
            return str(root / "libespeak-ng.so"), str(root)
    except PackageNotFoundError:
        pass
    found = ctypes.util.find_library("espeak-ng")
    if not found:
        raise ModelMissing(
            "espeak-ng not found: pip install espeakng-loader, or apt-get install libespeak-ng1"
        )
    return found, None


class _Library:
    """libespeak-ng, loaded and initialised once per process: its voice, rate and synthesis
    callback are global, so every ``Espeak`` shares this one object and its lock."""

    def __init__(self) -> None:
        path, data = library_paths()
        try:
            lib = ctypes.CDLL(path)
        except OSError as exc:
            raise ModelMissing(f"espeak-ng cannot be loaded from {path}: {exc}") from None
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int]
        lib.espeak_Synth.argtypes += [ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        rate = lib.espeak_Initialize(
            AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode() if data else None, INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            raise ModelMissing(f"espeak-ng found no voice data (folder {data or 'built in'})")
        self.lib, self.rate = lib, rate
        self.lock = threading.Lock()
        self._chunks: list[bytes] = []
        self._callback = _Callback(self._collect)  # kept: the library holds a pointer to it
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav: ctypes.Array, count: int, events: int) -> int:
        if count > 0:
            self._chunks.append(ctypes.string_at(wav, count * 2))
        return 0  # go on

    def synthesise(self, text: str, voice: str, speed: int) -> bytes | None:
        """16-bit mono samples at ``self.rate``; None when espeak-ng has no such voice."""
        data = text.encode("utf-8") + b"\0"
        with self.lock:
            if self.lib.espeak_SetVoiceByName(voice.encode("utf-8", "replace")) != 0:
                return None
            self.lib.espeak_SetParameter(RATE, speed, 0)
            self._chunks = []
            self.lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
            self.lib.espeak_Synchronize()
            pcm, self._chunks = b"".join(self._chunks), []
        return pcm


_shared_library = Once(_Library)  # one per process: libespeak-ng's audio callback is process-wide


class Espeak:
    name = "espeak"
    formats = tuple(FORMATS)

    def pcm(self, text: str, *, language: str, voice: str = "") -> tuple[bytes, int]:
        """16-bit mono samples and their rate."""
        default_voice, speed = VOICES.get(language, VOICES["en"])
        name = default_voice if not voice or voice in OPENAI_VOICES else voice
        library = _shared_library()
        pcm = library.synthesise(text, name, speed)
        if pcm is None:
            raise BadVoiceRequest("voice.bad_voice", value=voice[:40])
        return pcm, library.rate

    def speak(self, text: str, *, language: str, voice: str = "", response_format: str = "wav") -> Speech:
        pcm, rate = self.pcm(text, language=language, voice=voice)
        if loudness(np.frombuffer(pcm, np.int16) / 32768.0) < SILENCE_RMS:  # only marks, no words
            raise BadVoiceRequest("voice.nothing_to_say")
        audio, media_type = encode(pcm, rate, response_format)
        return Speech(audio=audio, media_type=media_type, response_format=response_format)
