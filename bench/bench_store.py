"""Store time per turn on SQLite and on PostgreSQL over loopback.

A turn is what the app does in the store for one message (``Store.start_turn``): the user's
message stored (before generation) with the assistant reply started as ``streaming`` and the
conversation's summary and the owner's profile read on the way; then the reply's text written as
it streams (at most once a second: a 64-token reply at 20 tokens/s makes 3 intermediate writes)
and the final ``complete``. Only time
spent in store calls counts: the stream's clock is simulated, so nothing sleeps. Conversations
grow to 20 turns, so the figure includes any cost of a longer history. The databases take turns
in 8 rounds, so background load hits them alike; the quietest round's median is the closest to
an idle machine.

PostgreSQL is Debian's, started in a temporary folder by tests/pg.py with default durability
(fsync on; the tests turn it off), unless ``--postgres-url`` names a server. Prints a Markdown
table.

    python bench/bench_store.py [--turns 400] [--postgres-url postgresql://user:pass@host/db]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack, closing
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # pg.py: a throw-away PostgreSQL cluster

from chat.store import Store  # noqa: E402

QUESTION = "Could you explain how the return policy works for items bought on sale? " * 3
TOKENS = 64  # deltas per reply
TOKEN_SECONDS = 0.05  # simulated stream pace: 20 tokens/s
TURNS_PER_CONVERSATION = 20
ROUNDS = 8
TARGETS_MS = {"SQLite": 2.0, "PostgreSQL": 5.0}


def one_turn(store: Store, owner: str, conversation_id: str) -> tuple[float, int]:
    """Seconds spent in the store for one turn, and how many writes it made."""
    clock = [0.0]
    start = time.perf_counter()
    writer = store.start_turn(owner, conversation_id, QUESTION, clock=lambda: clock[0]).writer
    writes = 2  # the touch that reads the notes, and one insert of the message and the reply row
    for i in range(TOKENS):
        clock[0] += TOKEN_SECONDS
        before = writer._written  # noqa: SLF001  (counting writes for the table only)
        writer.append(f" tok{i}")
        writes += writer._written != before  # noqa: SLF001
    writer.finish("complete")
    return time.perf_counter() - start, writes + 1


class Turns:
    """One database's turns, measured in rounds taken in turn with the other databases, so all
    of them see the same background load."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.rounds: list[list[float]] = []
        self.writes = 0
        self._n = 0
        self._conversation = ""

    def run(self, turns: int, *, keep: bool = True) -> None:
        times = []
        for _ in range(turns):
            owner = f"user:{self._n // TURNS_PER_CONVERSATION % 10}"
            if self._n % TURNS_PER_CONVERSATION == 0:
                self._conversation = self.store.create_conversation(owner).id
            seconds, self.writes = one_turn(self.store, owner, self._conversation)
            times.append(seconds * 1000)
            self._n += 1
        if keep:
            self.rounds.append(times)

    def row(self, name: str) -> str:
        ms = sorted(t for times in self.rounds for t in times)
        p50, p95 = statistics.median(ms), ms[int(len(ms) * 0.95) - 1]
        quietest = min(statistics.median(times) for times in self.rounds)
        target = TARGETS_MS.get(name)
        verdict = f"<= {target:g} | {'yes' if p50 <= target else 'no'}" if target else "(none) | "
        return (
            f"| {name} | {len(ms)} | {self.writes} | {ms[0]:.2f} | {p50:.2f} | {quietest:.2f} | {p95:.2f} "
            f"| {statistics.fmean(ms):.2f} | {verdict} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=400)
    parser.add_argument("--postgres-url", default="")
    args = parser.parse_args()
    start_load = os.getloadavg()[0]  # other work on the machine shows in every figure
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
        measured = [(name, Turns(stack.enter_context(closing(Store.open(url))))) for name, url in databases]
        for _, turns in measured:
            turns.run(20, keep=False)  # warm-up: connections, compiled statements
        for _ in range(ROUNDS):
            for _, turns in measured:
                turns.run(args.turns // ROUNDS)
        rows = [turns.row(name) for name, turns in measured]
    print(
        f"Store time per turn: user message + reply of {TOKENS} deltas streamed at "
        f"{1 / TOKEN_SECONDS:g} tokens/s (written at most once a second) + complete; "
        f"conversations of {TURNS_PER_CONVERSATION} turns; the store's settings (SQLite WAL with "
        f"synchronous=NORMAL; PostgreSQL fsync on, asynchronous commit), loopback.\n"
    )
    print(
        "| database | turns | writes per turn | min ms | p50 ms | p50 of the quietest round ms "
        "| p95 ms | mean ms | target (p50) | met |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    print("\n".join(rows))
    print(
        f"\n{os.cpu_count()} CPUs; load average {start_load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end."
    )


if __name__ == "__main__":
    main()
