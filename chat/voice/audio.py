"""Audio in and out: decode an upload to 16 kHz mono samples within limits, and encode speech.

Decoding goes through PyAV (FFmpeg, a dependency of faster-whisper) and stops as soon as the
recording passes the length limit, so a small file that expands to hours of samples costs no
more than the limit. Silence is judged here, before any model runs, by the loudest 30 ms.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass

import numpy as np

from chat.voice.errors import AudioTooLarge, AudioTooLong, NoSpeech, NotAudio

RATE = 16_000  # Whisper's sample rate
MAX_BYTES = 25 * 1024 * 1024  # as OpenAI's audio routes
# Loudest 30 ms window below this RMS (about -46 dBFS) is silence: room noise of a phone's
# microphone sits below it, a word spoken at arm's length well above.
SILENCE_RMS = 0.005
WINDOW = RATE * 30 // 1000

# Encoders for OpenAI's response_format values: (container, codec, sample rate, media type).
# Compressed ones at 32 kbit/s: speech from a formant synthesiser loses nothing audible.
BIT_RATE = 32_000
FORMATS: dict[str, tuple[str, str, int | None, str]] = {
    "wav": ("wav", "pcm_s16le", None, "audio/wav"),
    "mp3": ("mp3", "libmp3lame", None, "audio/mpeg"),
    "opus": ("ogg", "libopus", 48_000, "audio/ogg"),
    "flac": ("flac", "flac", None, "audio/flac"),
    "aac": ("adts", "aac", None, "audio/aac"),
    "pcm": ("s16le", "pcm_s16le", None, "audio/pcm"),
}


@dataclass(frozen=True)
class Clip:
    """A decoded recording: ``samples`` float32 in [-1, 1] at 16 kHz; ``data`` the upload as sent
    (a remote service gets the original, not a re-encoding)."""

    samples: np.ndarray
    data: bytes
    filename: str

    @property
    def seconds(self) -> float:
        return len(self.samples) / RATE


def decode(data: bytes, filename: str, max_seconds: float) -> Clip:
    """The upload as samples; ``NotAudio``, ``AudioTooLarge``, ``AudioTooLong`` or ``NoSpeech``."""
    import av  # FFmpeg's libraries load on the first recording, not when the app starts (~75 ms)

    if len(data) > MAX_BYTES:
        raise AudioTooLarge(MAX_BYTES)
    limit = int(max_seconds * RATE)
    pieces: list[np.ndarray] = []
    total = 0
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise NotAudio()
            resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    piece = out.to_ndarray().reshape(-1)
                    pieces.append(piece)
                    total += len(piece)
                if total > limit:
                    raise AudioTooLong(max_seconds)
            for out in resampler.resample(None):
                pieces.append(out.to_ndarray().reshape(-1))
    except (av.FFmpegError, ValueError, IndexError):
        raise NotAudio() from None
    samples = np.concatenate(pieces).astype(np.float32) / 32768.0 if pieces else np.zeros(0, np.float32)
    if len(samples) > limit:
        raise AudioTooLong(max_seconds)
    if not len(samples):
        raise NotAudio()
    if loudness(samples) < SILENCE_RMS:
        raise NoSpeech()
    return Clip(samples=samples, data=data, filename=filename or "audio")


def loudness(samples: np.ndarray) -> float:
    """RMS of the loudest 30 ms window (a short word in a long pause still counts)."""
    usable = len(samples) - len(samples) % WINDOW
    if usable == 0:
        return float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0
    windows = samples[:usable].reshape(-1, WINDOW)
    return float(np.sqrt((windows**2).mean(axis=1)).max())


def encode(pcm: bytes, rate: int, response_format: str) -> tuple[bytes, str]:
    """16-bit mono PCM as ``response_format`` (a key of ``FORMATS``): (bytes, media type)."""
    import av

    container_name, codec, out_rate, media_type = FORMATS[response_format]
    if response_format == "wav":
        return wav_bytes(pcm, rate), media_type
    if response_format == "pcm":
        return pcm, media_type
    samples = np.frombuffer(pcm, dtype=np.int16).reshape(1, -1)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container_name) as container:
        stream = container.add_stream(codec, rate=out_rate or rate, layout="mono")
        if response_format != "flac":
            stream.bit_rate = BIT_RATE
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = rate
        # The encoder takes its own sample format and rate: convert once, then flush.
        resampler = av.AudioResampler(format=stream.codec_context.format, layout="mono", rate=stream.rate)
        for converted in (*resampler.resample(frame), *resampler.resample(None)):
            container.mux(stream.encode(converted))
        container.mux(stream.encode(None))
    return buffer.getvalue(), media_type


def wav_bytes(pcm: bytes, rate: int) -> bytes:
    """A WAV file around 16-bit mono PCM."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)
    return buffer.getvalue()
