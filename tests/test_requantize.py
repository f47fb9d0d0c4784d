"""The embedded model's 16-bit copy (chat.backends.local.requantize): made once, the same model, never in the way."""

from __future__ import annotations

import logging
from pathlib import Path

import llama_cpp
from llama_cpp import LLAMA_FTYPE_MOSTLY_Q4_1, Llama

from chat.backends.local.backend import LlamaCppBackend
from chat.backends.local.model_files import embedded_model_path
from chat.backends.local.requantize import FOLDER, copy_type, cpu_copy


def file_type(path: Path) -> int:
    """``general.file_type`` from a GGUF's header, read with llama.cpp's own loader (vocab only)."""
    llm = Llama(str(path), vocab_only=True, verbose=False)
    try:
        return int(llm.metadata["general.file_type"])
    finally:
        llm.close()


def ftype(kind: str) -> int:
    return getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{kind}")


def test_the_type_follows_the_cpu() -> None:
    native_bf16 = "AVX512_BF16 = 1" in llama_cpp.llama_print_system_info().decode()
    assert copy_type() == ("BF16" if native_bf16 else "F16")


def test_the_app_loads_the_embedded_model_as_16_bit_floats_with_its_chat_template(
    local_backend: LlamaCppBackend, data_dir: str
) -> None:
    shipped = embedded_model_path()
    assert local_backend.model == f"SmolLM2-135M-Instruct.{copy_type()}"
    assert local_backend.model_path.is_relative_to(Path(data_dir) / FOLDER)
    assert local_backend._llm.metadata["general.file_type"] == str(ftype(copy_type()))
    original = Llama(str(shipped), vocab_only=True, verbose=False)
    try:
        assert original.metadata["general.file_type"] == str(LLAMA_FTYPE_MOSTLY_Q4_1)  # never touched
        kept = {k: v for k, v in original.metadata.items() if k != "general.file_type"}
        assert {k: local_backend._llm.metadata.get(k) for k in kept} == kept  # template, tokenizer
    finally:
        original.close()


def test_the_copy_is_made_once_and_an_older_one_is_removed(tmp_path: Path, caplog) -> None:
    stale = tmp_path / "1234-5678"
    stale.mkdir()
    (stale / "SmolLM2-135M-Instruct.F16.gguf").write_bytes(b"GGUF from an older release")
    (tmp_path / "mine").mkdir()  # not a copy: kept
    shipped = embedded_model_path()
    q8 = cpu_copy(shipped, tmp_path, "Q8_0")  # this release stored as another type before
    with caplog.at_level(logging.INFO, "chat.backends.local.requantize"):
        copy = cpu_copy(shipped, tmp_path, "F16")
    assert copy.name == "SmolLM2-135M-Instruct.F16.gguf" and file_type(copy) == ftype("F16")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([copy.parent.name, "mine"])  # older copy gone
    assert [p.name for p in copy.parent.iterdir()] == [copy.name]  # no partial file, nor the Q8_0 one
    assert not q8.exists()
    assert "stored SmolLM2-135M-Instruct.Q4_1.gguf as F16" in caplog.text
    made = copy.stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO, "chat.backends.local.requantize"):
        assert cpu_copy(shipped, tmp_path, "F16") == copy
    assert copy.stat().st_mtime_ns == made and not caplog.text  # the next start reuses it


def test_a_folder_that_cannot_hold_the_copy_loads_the_shipped_file(tmp_path: Path, caplog) -> None:
    blocked = tmp_path / "data"
    blocked.write_text("a file where the folder should be")
    with caplog.at_level(logging.WARNING, "chat.backends.local.requantize"):
        assert cpu_copy(embedded_model_path(), blocked / "models") == embedded_model_path()
    assert "loading it as shipped" in caplog.text
    assert "Traceback" not in caplog.text
