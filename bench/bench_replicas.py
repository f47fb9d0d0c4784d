"""Replicas that share everything, under load (issue 32).

Replicas (``python app.py``) behind the shipped deploy/nginx.conf, one PostgreSQL, one Redis, a
scripted OpenAI-compatible backend on loopback (every reply 24 tokens, 20 ms apart), all started
together on an empty database with no CHAT_COOKIE_SECRET. Users each come from their own loopback
address, half over ``/api/chat`` (SSE) and half over ``/ws``, continuing one conversation each.
Before the load, a client sends ``limit + 5`` messages alternating replicas, and a question at
temperature 0 is asked on one replica and again on another. When 40% of the turns are done and
the first replica has a reply in flight (else at 60%), it is killed with SIGKILL; its users carry
on at once on the others, and a message that got no answer at all is sent again with the same
idempotency key. One such message is made certain: sent straight to the victim, which is killed
as soon as it has stored it, then sent again through nginx. The live replicas mark the dead one's replies interrupted once its leases run
out; then it is started again (as a restart policy with a back-off would). Users ask a shop's
questions in plain words: the guard refuses what looks like a one-time code.

Printed: the latency the app tier adds (a reply through nginx and a replica, less the same reply
straight from the backend), messages sent and stored (PostgreSQL) and lost, replies cut by the
kill and replies marked interrupted (by the live replicas, and how soon), 429s against the limit,
the cross-replica cache hit.

    python bench/bench_replicas.py                              # 3 replicas, 30 users x 5 turns
    python bench/bench_replicas.py --replicas 2 --users 6 --turns 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replica_fleet import Fleet, Kill, Replica, fleet  # noqa: E402
from replica_load import Load, baseline_seconds, run_users, spelled  # noqa: E402

from chat.settings import REPLY_LEASE_SECONDS  # noqa: E402


def pins(proxy: str, count: int) -> list[str]:
    """``chat_sticky`` values that land on ``count`` different replicas."""
    found: dict[str, str] = {}
    for i in range(256):
        served = httpx.get(proxy + "healthz", cookies={"chat_sticky": f"pin-{i}"}).headers["x-served-by"]
        found.setdefault(served, f"pin-{i}")
        if len(found) == count:
            return list(found.values())
    raise RuntimeError(f"nginx used only {len(found)} replicas")


def over_the_limit(fleet_: Fleet, load: Load) -> tuple[int, int]:
    """``limit + 5`` messages from one client, alternating replicas: (sent, refused with 429)."""
    values = pins(fleet_.proxy, min(2, len(fleet_.replicas)))
    clients = [
        httpx.Client(
            base_url=fleet_.proxy,
            transport=httpx.HTTPTransport(local_address="127.0.2.1"),
            cookies={"chat_sticky": value},
            timeout=60,
        )
        for value in values
    ]
    refused, sent = 0, fleet_.rate_limit + 5
    with clients[0], clients[-1]:
        for k in range(sent):
            text = f"Hi, quick question {k}: are you open today?"
            body = {"user_input": text, "context": {"max_new_tokens": 8}}
            response = clients[k % len(clients)].post("api/chat", json=body)
            if response.status_code == 429:
                refused += 1
            else:
                response.raise_for_status()
                load.acked.add(text)
    return sent, refused


def cache_across_replicas(fleet_: Fleet, load: Load) -> bool:
    """A temperature-0 question answered on one replica: a cache hit when asked on another."""
    values = pins(fleet_.proxy, 2)
    question = {"user_input": "What are your opening hours?", "context": {"temperature": 0}}
    hits = []
    for n, value in enumerate(values):
        transport = httpx.HTTPTransport(local_address=f"127.0.3.{n + 1}")
        pin = {"chat_sticky": value}
        with httpx.Client(base_url=fleet_.proxy, transport=transport, cookies=pin, timeout=60) as client:
            answer = client.post("api/chat", json=question)
            answer.raise_for_status()
            hits.append(answer.json()["from_cache"])
    load.acked.add(question["user_input"])  # stored twice, once per conversation
    load.repeated += 1
    return hits == [False, True]


def one_user_seconds(fleet_: Fleet, load: Load, turns: int = 5) -> list[float]:
    """A lone user's turns through nginx and a replica (SSE), before the load: the app tier's own
    cost, without 30 users and their load generator competing for the same cores."""
    times = []
    transport = httpx.HTTPTransport(local_address="127.0.4.1")
    with httpx.Client(base_url=fleet_.proxy, transport=transport, timeout=60) as client:
        conversation = ""
        for turn in range(turns):
            text = f"Hello, I am alone here: question {spelled(turn)}."
            body = {"user_input": text, "stream": True, "conversation_id": conversation}
            start = time.perf_counter()
            with client.stream("POST", "api/chat", json=body) as response:
                lines = list(response.iter_lines())
            times.append(time.perf_counter() - start)
            done = json.loads(next(line for line in reversed(lines) if line.startswith("data: "))[6:])
            conversation = done["conversation_id"]
            load.acked.add(text)
    return times


# Resent messages whose first copy the dying replica had stored: the reply right after the message
# was begun by the killed process (its writer host:pid:random).
_KEPT_BY_VICTIM = """
SELECT count(*) FROM messages q WHERE q.client_key = ANY(%s) AND (
    SELECT r.replica FROM messages r
    WHERE r.conversation_id = q.conversation_id AND r.role = 'assistant' AND r.id > q.id
    ORDER BY r.id LIMIT 1
) LIKE %s"""


def stored_figures(database_url: str, load: Load, kill: Kill) -> tuple[list[str], dict[str, int], int, int]:
    """Every user message's text, assistant replies by status, how many of the resent messages
    the killed replica had stored before it died, and the copies of ``Resend``'s message."""
    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        texts = [row[0] for row in conn.execute("SELECT content FROM messages WHERE role = 'user'")]
        kept = conn.execute(_KEPT_BY_VICTIM, (load.resent_keys, f"%:{kill.pid}:%")).fetchone()[0]
        copies_query = "SELECT count(*) FROM messages WHERE client_key = %s"
        copies = conn.execute(copies_query, (Resend.KEY,)).fetchone()[0]
        statuses = dict(
            conn.execute(
                "SELECT status, count(*) FROM messages WHERE role = 'assistant' GROUP BY status"
            ).fetchall()
        )
    return texts, statuses, kept, copies


class Resend:
    """A message the victim stores and never answers, for certain: sent straight to the victim
    (a JSON reply, which comes only when the reply is whole), the victim is killed as soon as
    the message is in the database (``stored_then_kill``), and the client sends it again through
    nginx under the same idempotency key, as one whose connection dropped."""

    TEXT = "Hi, I am Quinn. Do you gift-wrap orders?"
    KEY = "bench-resend-1"

    def __init__(self, fleet_: Fleet, victim: Replica, load: Load) -> None:
        self.fleet, self.victim, self.load = fleet_, victim, load
        self.status = 0  # the resend's HTTP status
        self._thread = threading.Thread(target=self._send, name="resend")

    def _client(self, base_url: str, **kwargs: object) -> httpx.Client:
        transport = httpx.HTTPTransport(local_address="127.0.5.1")
        return httpx.Client(base_url=base_url, transport=transport, timeout=60, **kwargs)

    def _send(self) -> None:
        body = {"user_input": self.TEXT, "context": {"max_new_tokens": 64}}
        headers = {"Idempotency-Key": self.KEY}
        with self._client(f"http://{self.victim.address}/") as direct:
            direct.get("api/conversations")  # the visitor cookie first: the owner of both copies
            cookies = {"chat_visitor": direct.cookies["chat_visitor"]}
            try:
                direct.post("api/chat", json=body, headers=headers)
                return  # answered before the kill: nothing to resend
            except httpx.TransportError:
                pass
        self.load.resent += 1
        self.load.resent_keys.append(self.KEY)
        with self._client(self.fleet.proxy, cookies=cookies) as again:
            self.status = again.post("api/chat", json=body, headers=headers).status_code
        if self.status == 200:
            self.load.acked.add(self.TEXT)

    def stored_then_kill(self) -> None:
        """Send, and return once the victim has stored the message (the kill follows)."""
        self._thread.start()
        url = self.fleet.database_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url, autocommit=True) as conn:
            deadline = time.monotonic() + 30
            query = "SELECT count(*) FROM messages WHERE client_key = %s"
            while not conn.execute(query, (self.KEY,)).fetchone()[0] and time.monotonic() < deadline:
                time.sleep(0.005)

    def join(self) -> None:
        if self._thread.ident is not None:
            self._thread.join()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def run(
    *,
    replicas: int,
    users: int,
    turns: int,
    rate_limit: int,
    reply_lease: float = REPLY_LEASE_SECONDS,
    database_url: str = "",
) -> dict[str, object]:
    """The whole run; returns the figures the table prints (the test asserts on them)."""
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as folder:
        workdir = Path(folder)
        started = time.monotonic()
        with fleet(
            workdir,
            replicas=replicas,
            rate_limit=rate_limit,
            reply_lease=reply_lease,
            database_url=database_url,
        ) as fleet_:
            start_seconds = time.monotonic() - started
            load = Load(turns=turns)
            greedy_sent, greedy_refused = over_the_limit(fleet_, load)
            cache_hit = cache_across_replicas(fleet_, load)
            direct = baseline_seconds(fleet_.backend_url)
            alone = [(seconds - direct) * 1000 for seconds in one_user_seconds(fleet_, load)]
            victim = fleet_.replicas[0]
            resend = Resend(fleet_, victim, load)
            kill = Kill(victim, fleet_.database_url, before=resend.stored_then_kill)
            asyncio.run(run_users(fleet_.proxy, users, load, kill_when=victim.address, kill=kill))
            kill.join()
            resend.join()
            texts, statuses, kept, copies = stored_figures(fleet_.database_url, load, kill)
    added = [(seconds - direct) * 1000 for seconds in load.latencies]
    stored = len(texts)
    twice = stored - len(set(texts)) - load.repeated
    return {
        "replicas": replicas,
        "users x turns": f"{users} x {turns}",
        "start, all replicas ready (s)": round(start_seconds, 1),
        "latency added, one user alone, median of 5 (ms)": round(percentile(alone, 0.5)),
        "latency added, p50 (ms)": round(percentile(added, 0.5)),
        "latency added, p95 (ms)": round(percentile(added, 0.95)),
        "backend's own reply time (ms)": round(direct * 1000),
        "messages sent (acknowledged)": len(load.acked) + load.repeated,
        "messages stored": stored,
        "messages lost": len(load.acked - set(texts)),
        "messages resent (no answer at all from the dying replica)": load.resent,
        "502s from nginx (a POST in flight to the killed replica)": load.bad_gateway,
        "of them, already stored by the dying replica (stored once: same idempotency key)": kept,
        "messages stored twice (resent, though the dying replica had kept it)": twice,
        "the message stored just before the kill, then resent: copies stored": copies,
        "its resend's status": resend.status,
        "messages the guard refused (never stored)": load.blocked,
        "replies cut by the kill": load.cut,
        "replies marked interrupted": statuses.get("interrupted", 0),
        "replies the killed replica left streaming": kill.in_flight,
        "reply lease (s)": reply_lease,
        "seconds until the live replicas marked them (no restart)": (
            round(kill.marked_after, 1) if kill.marked_after is not None else "never"
        ),
        "replies left streaming": statuses.get("streaming", 0),
        "replica killed mid-run": load.killed,
        "turns after the kill": load.after_kill,
        "rate limit per minute": rate_limit,
        "one client's messages, alternating replicas": greedy_sent,
        "429s for them (limit + 5 sent: 5 expected)": greedy_refused,
        "429s (other users)": load.refused,
        "other errors": dict(load.errors),
        "cache hit on another replica": cache_hit,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--rate-limit", type=int, default=20)
    parser.add_argument(
        "--reply-lease", type=float, default=REPLY_LEASE_SECONDS, help="CHAT_REPLY_LEASE of the replicas (s)"
    )
    args = parser.parse_args()
    figures = run(
        replicas=args.replicas,
        users=args.users,
        turns=args.turns,
        rate_limit=args.rate_limit,
        reply_lease=args.reply_lease,
    )
    print("| figure | value |\n|---|---|")
    for name, value in figures.items():
        shown = ("yes" if value else "no") if isinstance(value, bool) else (value or 0)
        print(f"| {name} | {shown} |")


if __name__ == "__main__":
    main()
