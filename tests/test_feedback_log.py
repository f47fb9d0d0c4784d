"""The feedback log stays bounded: it rotates by size, keeps a few backups, and never tears a line."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from chat import ConfigError, Settings
from chat.reply.transcript import FEEDBACK_LOG_MAX_BYTES, FeedbackLog

HISTORY = [
    {"role": "user", "content": "你好，介绍一下长城。" * 5},
    {"role": "assistant", "content": "长城是中国古代的军事防御工程。" * 5},
]


def entries(log: FeedbackLog) -> list[dict]:
    """Every kept entry, oldest first (backups are read from the highest number down)."""
    lines: list[dict] = []
    for path in reversed(log.files()):
        lines += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return lines


def test_filling_past_the_limit_rotates_and_keeps_the_newest(tmp_path: Path) -> None:
    log = FeedbackLog(tmp_path / "feedback.jsonl", max_bytes=2000, backups=2)
    for i in range(60):  # each line is ~500 bytes: about 30 KB written in all
        log.record(liked=i % 2 == 0, index=i, history=HISTORY, model="local:SmolLM2")

    files = log.files()
    assert [p.name for p in files] == ["feedback.jsonl", "feedback.jsonl.1", "feedback.jsonl.2"]
    assert not (tmp_path / "feedback.jsonl.3").exists()
    assert all(p.stat().st_size <= 2000 for p in files)
    kept = [e["message_index"] for e in entries(log)]
    assert kept == list(range(60 - len(kept), 60))  # the newest, in order, none lost in between
    assert len(kept) >= 6  # three files of at least two ~500-byte lines each


def test_without_backups_the_log_starts_over(tmp_path: Path) -> None:
    log = FeedbackLog(tmp_path / "feedback.jsonl", max_bytes=1200, backups=0)
    for i in range(20):
        log.record(liked=True, index=i, history=HISTORY)
    assert log.files() == [tmp_path / "feedback.jsonl"]
    assert (tmp_path / "feedback.jsonl").stat().st_size <= 1200
    assert entries(log)[-1]["message_index"] == 19


def test_concurrent_writers_never_tear_lines_or_lose_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "feedback.jsonl"
    # Two logs on one file, as two UIs in one process would have: they share the lock.
    logs = [FeedbackLog(path, max_bytes=3000, backups=50), FeedbackLog(path, max_bytes=3000, backups=50)]

    def write(worker: int) -> None:
        for i in range(25):
            logs[worker % 2].record(liked=True, index=worker * 100 + i, history=HISTORY)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    kept = entries(logs[0])  # every line parses: no two writes interleaved
    assert sorted(e["message_index"] for e in kept) == sorted(
        w * 100 + i for w in range(4) for i in range(25)
    )
    assert all(p.stat().st_size <= 3000 for p in logs[0].files())


def test_the_limit_is_a_setting_with_an_environment_variable() -> None:
    assert Settings().feedback_log_max_bytes == FEEDBACK_LOG_MAX_BYTES
    flag = Settings.from_sources(["--feedback-log-max-bytes", "4096"], env={})
    env = Settings.from_sources([], env={"CHAT_FEEDBACK_LOG_MAX_BYTES": "8192"})
    assert (flag.feedback_log_max_bytes, env.feedback_log_max_bytes) == (4096, 8192)
    with pytest.raises(ConfigError, match="--feedback-log-max-bytes must be positive, got 0"):
        Settings.from_sources(["--feedback-log-max-bytes", "0"], env={})
