"""Store time per turn on SQLite and on PostgreSQL over loopback.

A turn is what the app writes for one message: the user's message (before generation), the
assistant reply started as ``streaming``, its text written as it streams (at most once a second:
a 64-token reply at 20 tokens/s makes 3 intermediate writes) and the final ``complete``. Only time
spent in store calls counts: the stream's clock is simulated, so nothing sleeps. Conversations
grow to 20 turns, so the figure includes any cost of a longer history.

PostgreSQL is Debian's, started in a temporary folder with default durability (fsync on), as
the tests do (tests/pg.py), unless ``--postgres-url`` names a server. Prints a Markdown table.

    python bench/bench_store.py [--turns 400] [--postgres-url postgresql://user:pass@host/db]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # pg.py: a throw-away PostgreSQL cluster

from chat.store import Store  # noqa: E402

QUESTION = "Could you explain how the return policy works for items bought on sale? " * 3
TOKENS = 64  # deltas per reply
TOKEN_SECONDS = 0.05  # simulated stream pace: 20 tokens/s
TURNS_PER_CONVERSATION = 20
TARGETS_MS = {"SQLite": 2.0, "PostgreSQL": 5.0}


def one_turn(store: Store, owner: str, conversation_id: str) -> tuple[float, int]:
    """Seconds spent in the store for one turn, and how many writes it made."""
    clock = [0.0]
    start = time.perf_counter()
    store.add_message(owner, conversation_id, "user", QUESTION)
    writer = store.reply_writer(owner, conversation_id, clock=lambda: clock[0])
    writes = 2
    for i in range(TOKENS):
        clock[0] += TOKEN_SECONDS
        before = writer._written  # noqa: SLF001  (counting writes for the table only)
        writer.append(f" tok{i}")
        writes += writer._written != before  # noqa: SLF001
    writer.finish("complete")
    return time.perf_counter() - start, writes + 1


def measure(store: Store, turns: int, warmup: int = 20) -> tuple[list[float], int]:
    times: list[float] = []
    writes = 0
    conversation = None
    for n in range(warmup + turns):
        owner = f"user:{n // TURNS_PER_CONVERSATION % 10}"
        if n % TURNS_PER_CONVERSATION == 0:
            conversation = store.create_conversation(owner)
        seconds, writes = one_turn(store, owner, conversation.id)
        if n >= warmup:
            times.append(seconds)
    return times, writes


def row(name: str, times: list[float], writes: int) -> str:
    ms = sorted(t * 1000 for t in times)
    p50, p95 = statistics.median(ms), ms[int(len(ms) * 0.95) - 1]
    target = TARGETS_MS.get(name)
    verdict = f"<= {target:g} | {'yes' if p50 <= target else 'no'}" if target else "(none) | "
    return (
        f"| {name} | {len(ms)} | {writes} | {ms[0]:.2f} | {p50:.2f} | {p95:.2f} "
        f"| {statistics.fmean(ms):.2f} | {verdict} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=400)
    parser.add_argument("--postgres-url", default="")
    args = parser.parse_args()
    start_load = os.getloadavg()[0]  # other work on the machine shows in every figure
    rows = []
    with ExitStack() as stack:
        folder = stack.enter_context(tempfile.TemporaryDirectory())
        databases = [("SQLite", f"sqlite:///{folder}/chat.db")]
        if args.postgres_url:
            databases.append(("PostgreSQL", args.postgres_url))
        else:
            import pg

            if pg.binaries() is not None:
                server = stack.enter_context(pg.postgres_server(durable=True))
                url = server.create_database("bench")
                databases.append(("PostgreSQL", url))
                # For reference: every commit waits for the disk (what the store does not ask for).
                databases.append(
                    ("PostgreSQL, synchronous_commit=on", f"{url}?options=-c%20synchronous_commit%3Don")
                )
            else:
                print("PostgreSQL is not installed: measuring SQLite only", file=sys.stderr)
        for name, url in databases:
            store = Store.open(url)
            try:
                rows.append(row(name, *measure(store, args.turns)))
            finally:
                store.close()
    print(
        f"Store time per turn: user message + reply of {TOKENS} deltas streamed at "
        f"{1 / TOKEN_SECONDS:g} tokens/s (written at most once a second) + complete; "
        f"conversations of {TURNS_PER_CONVERSATION} turns; the store's settings (SQLite WAL with "
        f"synchronous=NORMAL; PostgreSQL fsync on, asynchronous commit), loopback.\n"
    )
    print("| database | turns | writes per turn | min ms | p50 ms | p95 ms | mean ms | target (p50) | met |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---|")
    print("\n".join(rows))
    print(
        f"\n{os.cpu_count()} CPUs; load average {start_load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end."
    )


if __name__ == "__main__":
    main()
