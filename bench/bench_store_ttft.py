"""Time to first token with the conversation store on and off, through ``python app.py``.

The same conversations go to two app processes: one with the store on (SQLite in a temporary data
directory; each turn sends only its message and ``conversation_id``), one with ``CHAT_STORE=off``
(each turn sends the whole history). Rounds alternate between the two, so machine noise falls on
both. Prints a Markdown table of the median time to first token per turn range.

    python bench/bench_store_ttft.py [--turns 10] [--conversations 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
from app_process import launched_app, sse_turn  # noqa: E402
from bench_turns import N_CTX, question  # noqa: E402
from support import free_port  # noqa: E402

MAX_TOKENS = 32


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--conversations", type=int, default=3)
    args = parser.parse_args()
    context = {"max_new_tokens": MAX_TOKENS, "temperature": 0.7}
    samples: dict[str, list[float]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory() as data:
        os.environ["CHAT_DATA_DIR"] = data
        with (
            launched_app(free_port(), n_ctx=N_CTX, store=True) as on_url,
            launched_app(free_port(), n_ctx=N_CTX, store=False) as off_url,
            httpx.Client(base_url=on_url) as on,
            httpx.Client(base_url=off_url) as off,
        ):
            for lane in range(args.conversations):
                conversation_id = ""
                history: list[dict[str, str]] = []
                for number in range(1, args.turns + 1):
                    text = question(lane, number)
                    body = {"user_input": text, "context": context}
                    for store in ("on", "off") if number % 2 else ("off", "on"):  # neither always first
                        if store == "on":
                            with_id = {"conversation_id": conversation_id} if conversation_id else {}
                            ttft, done = sse_turn(on, {**body, **with_id})
                            conversation_id = done["conversation_id"]
                        else:
                            ttft, done = sse_turn(off, {**body, "context": {**context, "history": history}})
                            history += [
                                {"role": "user", "content": text},
                                {"role": "assistant", "content": done["reply"]},
                            ]
                        samples[store].append(ttft * 1000)
    print(
        f"### Time to first token, store on and off ({args.conversations} conversations x {args.turns} turns)\n"
    )
    print("| store | median ms | p90 ms |\n|---|---|---|")
    for name, values in samples.items():
        ordered = sorted(values)
        print(f"| {name} | {statistics.median(values):.0f} | {ordered[int(0.9 * (len(ordered) - 1))]:.0f} |")
    diff = statistics.median(samples["on"]) - statistics.median(samples["off"])
    print(f"\nmedian difference (on - off): {diff:+.0f} ms; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
