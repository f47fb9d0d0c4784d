"""Export, import and feedback files for conversations, in both languages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chat import InvalidRequest
from chat.reply.transcript import FeedbackLog, from_json, to_json, to_markdown

HISTORY = [
    {"role": "user", "metadata": None, "content": [{"type": "text", "text": "你好，介绍一下长城。"}]},
    {"role": "assistant", "metadata": {"title": "2 earlier messages were left out"}, "content": ""},
    {"role": "assistant", "content": "长城是中国古代的军事防御工程。\n\n```python\nprint('hi')\n```"},
    {"role": "user", "content": "Thanks!"},
]


def test_json_round_trip_keeps_messages_and_drops_notices() -> None:
    exported = to_json(HISTORY)
    data = json.loads(exported)
    assert data["version"] == 1
    assert [m["role"] for m in data["messages"]] == ["user", "assistant", "user"]
    assert "长城" in exported  # readable, not \\u escapes
    assert from_json(exported) == data["messages"]


def test_markdown_export_has_roles_code_and_notices() -> None:
    md = to_markdown(HISTORY)
    assert md.startswith("**User**\n\n你好，介绍一下长城。")
    assert "> 2 earlier messages were left out" in md
    assert "```python\nprint('hi')\n```" in md


def test_plain_openai_lists_import_too() -> None:
    assert from_json('[{"role": "user", "content": "hi"}]') == [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ("not json", "not valid JSON"),
        ('{"messages": 3}', "expected a list of messages"),
        ('[{"role": "system", "content": "x"}]', "message 1 needs a role of user or assistant"),
        ('[{"role": "user", "content": 5}]', "message 1 needs text content"),
        (b"\xff\xfe\x00", "not valid JSON"),
        ("[" + " " * (6 * 1024 * 1024) + "]", "larger than 5 MB"),
    ],
)
def test_bad_imports_are_explained(data, fragment: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        from_json(data)
    assert fragment in str(info.value)


def test_feedback_log_appends_json_lines(tmp_path: Path) -> None:
    log = FeedbackLog(tmp_path / "logs" / "feedback.jsonl")
    log.record(liked=True, index=2, history=HISTORY, model="local:SmolLM2")
    log.record(liked=False, index=2, history=HISTORY, model="local:SmolLM2")
    lines = [
        json.loads(line)
        for line in (tmp_path / "logs" / "feedback.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert [e["rating"] for e in lines] == ["like", "dislike"]
    assert lines[0]["conversation"][0]["content"] == "你好，介绍一下长城。"
    assert lines[0]["model"] == "local:SmolLM2" and lines[0]["message_index"] == 2
