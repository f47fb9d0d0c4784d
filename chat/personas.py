"""Personas: system prompts kept as plain Markdown files, one per persona and language.

A file's first line is ``# Title`` (shown in the dropdown); the rest is the system prompt.
Adding a persona means adding a file to ``prompts/personas/``; no code changes.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "prompts" / "personas"


def load_personas(directory: Path = DEFAULT_DIR) -> dict[str, str]:
    """``{title: system prompt}``, sorted by file name so the order is stable."""
    personas: dict[str, str] = {}
    for path in sorted(directory.glob("*.md")):
        first, _, rest = path.read_text(encoding="utf-8").partition("\n")
        title = first.lstrip("#").strip() or path.stem
        personas[title] = rest.strip()
    return personas
