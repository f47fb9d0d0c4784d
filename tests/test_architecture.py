"""docs/architecture.md is the map of the house: it lists every module of chat/ and, for each
room, the rooms it imports. Both are read from the code here, so the map cannot drift from it.

``python tests/test_architecture.py`` prints the map's generated part, to paste between its
markers.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHAT = ROOT / "chat"
DOC = ROOT / "docs" / "architecture.md"
START, END = "<!-- layout-map:start -->\n", "\n<!-- layout-map:end -->"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def room_of(module: str) -> str:
    """A module's room: the package under chat/ that holds it (subfolders included); each module
    at chat/'s root is a room of its own."""
    return ".".join(module.split(".")[:2])


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(CHAT.rglob("*.py"))}


def imports(path: Path) -> set[str]:
    """Every chat module ``path`` imports, at the top or inside a function."""
    found: set[str] = set()
    known = modules()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("chat"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("chat."))
    return {name for name in found if name in known}


def rooms() -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name in modules():
        grouped.setdefault(room_of(name), []).append(name)
    return grouped


def room_uses() -> dict[str, set[str]]:
    uses: dict[str, set[str]] = {room: set() for room in rooms()}
    for name, path in modules().items():
        room = room_of(name)
        uses[room] |= {room_of(other) for other in imports(path)} - {room}
    return uses


def summary(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    first = " ".join(doc.split("\n\n", 1)[0].split())
    return first.replace("|", "\\|")


def layout_map() -> str:
    found, uses = modules(), room_uses()
    lines = []
    for room, names in sorted(rooms().items()):
        where = room.replace(".", "/") + ("/" if ROOT.joinpath(*room.split(".")).is_dir() else ".py")
        used = ", ".join(f"`{r.replace('.', '/')}`" for r in sorted(uses[room])) or "nothing in chat/"
        lines += [f"### `{where}`", "", f"Uses: {used}.", "", "| module | what |", "|---|---|"]
        for name in names:
            lines.append(f"| `{found[name].relative_to(ROOT)}` | {summary(found[name])} |")
        lines.append("")
    return "\n".join(lines).rstrip()


def test_the_map_lists_every_module_and_the_rooms_each_room_imports() -> None:
    documented = DOC.read_text(encoding="utf-8").split(START)[1].split(END)[0]
    assert documented == layout_map(), (
        "run: python tests/test_architecture.py, and paste into docs/architecture.md"
    )


def test_no_room_and_its_lower_neighbour_import_each_other() -> None:
    uses = room_uses()
    both = sorted(
        {tuple(sorted((a, b))) for a, used in uses.items() for b in used if a in uses.get(b, set())}
    )
    assert both == [], f"rooms that import each other: {both}"


MODULE_MAX_LINES = 450  # the house's bounds (docs/architecture.md): a longer piece does several jobs
FUNCTION_MAX_LINES = 80


def test_no_module_or_function_outgrows_the_house_bounds() -> None:
    long_modules, long_functions = [], []
    for name, path in modules().items():
        text = path.read_text(encoding="utf-8")
        if (lines := text.count("\n")) > MODULE_MAX_LINES:
            long_modules.append((name, lines))
        for node in ast.walk(ast.parse(text)):
            length = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and length > FUNCTION_MAX_LINES:
                long_functions.append((name, node.name, length))
    assert long_modules == [] and long_functions == [], (long_modules, long_functions)


if __name__ == "__main__":
    print(layout_map())
