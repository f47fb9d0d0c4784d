"""The README's quick start and the API page's code samples run as written (against the embedded
model and the launched app)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
API_DOC = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")


def python_block(after_heading: str) -> str:
    section = API_DOC.split(f"## {after_heading}\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S)[1]


def test_front_matter_configures_a_gradio_space() -> None:
    front = README.split("---\n")[1]
    assert "sdk: gradio" in front and "app_file: app.py" in front
    assert re.search(r"sdk_version: \d+\.\d+\.\d+", front)


def test_quick_start_commands() -> None:
    assert "pip install -r requirements.txt && python app.py" in README
    assert ".ci/run" in README and (ROOT / ".ci" / "run").exists()


def test_python_api_sample_runs(capsys) -> None:  # noqa: ANN001
    exec(compile(python_block("Python API"), "docs/api.md:Python API", "exec"), {})  # noqa: S102 - our own docs
    streamed, _, rest = capsys.readouterr().out.partition("\n ")
    assert streamed.strip()  # the streamed reply
    assert re.match(r"\d+(\.\d+)? tok/s\n.+", rest, re.S)  # the stats, then the whole reply


def test_gradio_api_sample_runs(app_url: str) -> None:
    code = python_block("Gradio API").replace("http://127.0.0.1:7860/", app_url)
    code = re.sub(r"max_new_tokens=\d+", "max_new_tokens=16", code)  # the sample as written, shorter
    namespace: dict = {}
    exec(compile(code, "docs/api.md:Gradio API", "exec"), namespace)  # noqa: S102
    assert isinstance(namespace["reply"], str) and namespace["reply"].strip()
