"""llama.cpp's own log lines, held back while a model is loaded or converted.

llama-cpp-python passes llama.cpp's lines to stderr through the ``llama-cpp-python`` logger's
level: loading a model prints a few hundred of them. Raising the level for the moment is enough
(no file descriptors are swapped, so other threads' output is untouched); errors still show.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

LOGGER = "llama-cpp-python"


@contextmanager
def quiet_llama() -> Iterator[None]:
    log = logging.getLogger(LOGGER)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


__all__ = ["quiet_llama"]
