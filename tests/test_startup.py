"""Starting the app: Gradio imported without rewriting its type stubs, and built without the
FastAPI apps it throws away (bench/bench_startup.py measures both). Every other test shows the
app still works; these show the two are in force, and harmless where they cannot be."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gradio.component_meta
import pytest
from gradio.routes import App
from guard_fakes import ScriptedBackend

from chat import ChatEngine, Settings
from chat.gradio_stubs import _StubSkipper, skip_stub_regeneration
from chat.server import build_app

ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.strip()


def test_app_py_imports_gradio_without_rewriting_its_stubs() -> None:
    # app.py's own imports (not main()), then Gradio as chat.server imports it
    out = run_python(
        "import sys, app, chat.server, gradio as gr, gradio.component_meta as meta\n"
        "print(meta.create_or_modify_pyi.__name__)\n"
        "print(any(type(f).__name__ == '_StubSkipper' for f in sys.meta_path))\n"
        "print(gr.Textbox(label='still a component').label)"
    )
    assert out.splitlines() == ["_no_stub", "False", "still a component"]  # the finder left once used


def test_the_tests_import_gradio_as_the_app_does() -> None:
    assert gradio.component_meta.create_or_modify_pyi.__name__ == "_no_stub"  # conftest called it


def test_once_gradio_is_imported_skipping_changes_nothing() -> None:
    before = list(sys.meta_path)
    skip_stub_regeneration()
    assert sys.meta_path == before and not any(isinstance(f, _StubSkipper) for f in sys.meta_path)


def test_building_the_app_makes_gradios_app_twice_not_six_times(monkeypatch: pytest.MonkeyPatch) -> None:
    """Gradio makes a whole FastAPI app whenever a Blocks is created, closed or queued; the page
    keeps the queue's and the mount's (one_gradio_app). A Gradio upgrade that moves the calls
    shows here."""
    made: list[bool] = []
    real = App.create_app

    def counting(*args: object, **kwargs: object) -> object:
        made.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(App, "create_app", staticmethod(counting))
    build_app(ChatEngine({"local": ScriptedBackend(["Hello."])}), Settings(n_ctx=2048))
    assert len(made) == 2
    assert App.create_app is counting  # one_gradio_app put back what it found
