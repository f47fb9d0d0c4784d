"""Import Gradio without regenerating its type stubs.

Each time Gradio is imported, every component class reads and parses its own source file twice
to rewrite the ``.pyi`` stub beside it (``gradio.component_meta.create_or_modify_pyi``): an aid
for Gradio's own developers' editors that changes nothing at run time. Here it was 1.3-2 s of
the app's 5-6 s of imports (bench/bench_startup.py). ``skip_stub_regeneration()``, called before
Gradio is first imported (app.py, the tests' conftest), turns it into a no-op; called later, or
against a Gradio without the function, it changes nothing.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

MODULE = "gradio.component_meta"
FUNCTION = "create_or_modify_pyi"


def _no_stub(*args: Any, **kwargs: Any) -> None:
    """What Gradio's stub writer does here: nothing."""


class _StubSkipper(importlib.abc.MetaPathFinder):
    """Finds ``gradio.component_meta`` as usual, then swaps the stub writer out once the module
    has run and before any component class is defined (they look it up when they are created)."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name != MODULE:
            return None
        sys.meta_path.remove(self)  # once is enough
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            if callable(getattr(module, FUNCTION, None)):
                setattr(module, FUNCTION, _no_stub)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def skip_stub_regeneration() -> None:
    if MODULE in sys.modules or any(isinstance(f, _StubSkipper) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _StubSkipper())
