"""The load test's short version (bench/bench_replicas.py, issue 32): two ``app.py`` replicas behind
the shipped nginx config, on one real PostgreSQL and one real Redis, started together with no
CHAT_COOKIE_SECRET; six users of three turns over /api/chat and /ws, each from its own address;
mid-run one replica is killed with SIGKILL; the live one marks its replies interrupted, then it is
started again (as a restart policy would).

The backend is a scripted OpenAI-compatible server on loopback (tests/fault_server.py): the
replicas need no model, and the test measures the app tier, not llama.cpp."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from bench_replicas import run  # noqa: E402


@pytest.mark.slow
def test_replicas_share_limits_cache_and_visitors_and_survive_a_kill(postgres) -> None:  # noqa: ANN001
    url = postgres.create_database(f"fleet_{secrets.token_hex(4)}")
    figures = run(replicas=2, users=6, turns=3, rate_limit=6, reply_lease=3.0, database_url=url)
    shown = "\n".join(f"{name}: {value}" for name, value in figures.items())
    # Counted once across replicas: 11 messages alternating between two replicas, limit 6.
    assert figures["429s for them (limit + 5 sent: 5 expected)"] == 5, shown
    assert figures["429s (other users)"] == 0, shown
    assert figures["cache hit on another replica"] is True, shown
    # The kill: every acknowledged message is stored, the cut replies are marked interrupted,
    # and the users went on (their visitor cookies valid on the other replica: no 404s).
    assert figures["replica killed mid-run"] is True and figures["turns after the kill"] > 0, shown
    assert figures["messages lost"] == 0, shown
    # A message the dying replica kept before it could answer, sent again by its user under the
    # same idempotency key: stored once.
    assert figures["messages stored twice (resent, though the dying replica had kept it)"] == 0, shown
    assert figures["the message stored just before the kill, then resent: copies stored"] == 1, shown
    assert figures["its resend's status"] == 200, shown
    assert figures["of them, already stored by the dying replica (stored once: same idempotency key)"] >= 1
    assert figures["messages stored"] == figures["messages sent (acknowledged)"], shown
    # Replies in flight on the killed replica are marked interrupted by the live replica once
    # their leases ran out, before the killed one started again: the cut ones, and those whose
    # client got a 502 first. A reply whose last words were stored just before the kill is whole.
    assert figures["seconds until the live replicas marked them (no restart)"] != "never", shown
    cut = figures["replies cut by the kill"]
    resent = figures["messages resent (no answer at all from the dying replica)"]
    assert figures["replies marked interrupted"] <= cut + resent, shown
    assert figures["replies left streaming"] == 0 and figures["other errors"] == {}, shown
