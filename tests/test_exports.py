"""Exports of two kinds: the package's public names (exactly what ``chat.__all__`` promises), and
conversation downloads (bounded on disk however many are made)."""

from __future__ import annotations

import asyncio
import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from gradio.route_utils import delete_files_created_by_app
from gradio.state_holder import SessionState
from guard_fakes import ScriptedBackend

import chat
from chat import ChatEngine
from chat.reply.transcript import EXPORTS_KEPT, ExportFolder
from chat.ui import GRADIO_CACHE_LIFETIME, build_ui


def test_all_names_exist_and_are_sorted() -> None:
    assert chat.__all__ == sorted(chat.__all__)
    missing = [name for name in chat.__all__ if not hasattr(chat, name)]
    assert missing == []


def test_every_public_error_is_exported() -> None:
    from chat import errors

    public = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.ChatError)
    }
    assert public <= set(chat.__all__)


# -- conversation exports (Markdown / JSON downloads) ----------------------------------------------


def conversation(i: int) -> list[dict[str, Any]]:
    """A chat as the Chatbot sends it to a handler: content as text parts."""
    return [
        {"role": "user", "content": [{"type": "text", "text": f"第 {i} 个问题"}]},
        {"role": "assistant", "content": [{"type": "text", "text": f"answer {i}"}]},
    ]


def test_exports_keep_only_the_newest_few_files() -> None:
    folder = ExportFolder(keep=4)
    paths = [folder.write(conversation(i), "md" if i % 2 else "json") for i in range(30)]
    assert sorted(folder.files()) == sorted(paths[-4:])
    assert "answer 29" in paths[-1].read_text(encoding="utf-8") and paths[-1].suffix == ".md"
    assert json.loads(paths[-2].read_text(encoding="utf-8"))["messages"][1]["content"] == "answer 28"


def test_exports_in_the_same_second_never_overwrite_each_other() -> None:
    folder = ExportFolder()
    first, second = folder.write(conversation(1), "md"), folder.write(conversation(2), "md")
    assert first != second  # usually the same name (a time stamp to the second), never one file
    assert "answer 1" in first.read_text(encoding="utf-8")
    assert "answer 2" in second.read_text(encoding="utf-8")


def test_many_exports_through_gradio_leave_a_bounded_number_of_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app's handlers, run by Gradio as the Export buttons run them: Gradio copies each file
    into its cache (the copy is what the browser downloads), our folder keeps at most
    ``EXPORTS_KEPT``, and Gradio's copies are registered for its scheduled deletion."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    (tmp_path / "tmp").mkdir()
    demo = build_ui(ChatEngine({"local": ScriptedBackend(["hi"])}), personas={"p": ""}, max_context=2048)
    exports = [f for f in demo.fns.values() if any(o.elem_id == "export-file" for o in f.outputs)]
    assert len(exports) == 2  # Markdown and JSON
    state = SessionState(demo)

    count = 3 * EXPORTS_KEPT

    async def export_all() -> list[Path]:
        outs = [await demo.process_api(exports[i % 2], [conversation(i)], state=state) for i in range(count)]
        return [Path(out["data"][0]["path"]) for out in outs]

    # A thread of its own: the browser tests' Playwright keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        downloads = pool.submit(asyncio.run, export_all()).result()

    ours = [p for p in (tmp_path / "tmp").rglob("*") if p.is_file()]
    assert 0 < len(ours) <= EXPORTS_KEPT
    assert all(p.is_relative_to(tmp_path / "gradio") for p in downloads)
    assert f"answer {count - 1}" in downloads[-1].read_text(encoding="utf-8")  # pruning never took a live one
    assert "answer 0" in downloads[0].read_text(encoding="utf-8")

    assert demo.delete_cache == GRADIO_CACHE_LIFETIME
    delete_files_created_by_app(demo, age=0)  # what the schedule does once the copies are old
    assert not [p for p in (tmp_path / "gradio").rglob("*") if p.is_file()]
