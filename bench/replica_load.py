"""Simulated users for bench_replicas.py: each from its own loopback address (127.0.1.N, so each has
its own rate limit behind nginx), half over ``/api/chat`` streamed as SSE and half over ``/ws``,
each continuing one conversation. A message counts as acknowledged when the app answered it at
all (SSE headers, or a first ``/ws`` frame): from then on it must be in the database. A reply
whose stream breaks after that is "cut"; the user goes on with the next turn, on whichever
replica nginx picks, resuming the conversation by id. A message that got no answer at all is
sent once more, under the same idempotency key (the dying replica may have stored it)."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import websockets
from websockets.asyncio.client import connect

CONTEXT = {"temperature": 0.7, "max_new_tokens": 64}
THINK_SECONDS = (0.2, 0.8)  # a user's pause between a reply and the next message
KILL_AT = 0.4  # share of all turns done when the victim is killed, if it has a reply in flight
KILL_LATEST = 0.6  # ... and if it never has one by then, killed anyway


@dataclass
class Load:
    turns: int
    latencies: list[float] = field(default_factory=list)  # seconds, message sent to reply complete
    acked: set[str] = field(default_factory=set)
    repeated: int = 0  # acknowledged messages whose text another also sent
    resent: int = 0  # messages sent again after no answer at all (their replica was dying)
    resent_keys: list[str] = field(default_factory=list)  # their idempotency keys
    blocked: int = 0  # refused by the guard (never stored, by design)
    bad_gateway: int = 0  # 502s: a POST in flight to the replica when it was killed
    refused: int = 0
    cut: int = 0
    done: int = 0
    after_kill: int = 0
    killed: bool = False
    errors: Counter[str] = field(default_factory=Counter)
    in_flight: Counter[str] = field(default_factory=Counter)  # replies streaming, by replica


def baseline_seconds(backend_url: str, samples: int = 5) -> float:
    """The backend's own time for one reply, asked directly: the median of ``samples``."""
    times = []
    body = {"model": "scripted", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(timeout=30) as client:
        for _ in range(samples):
            start = time.perf_counter()
            with client.stream("POST", backend_url + "/chat/completions", json=body) as response:
                for _line in response.iter_lines():
                    pass
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


class Turns:
    """Counts finished turns and kills the victim once: at 40% of the turns with a reply in flight
    on it, else at 60%."""

    def __init__(self, total: int, load: Load, victim: str, kill: Callable[[], None]) -> None:
        self.total, self.load, self.victim, self.kill = total, load, victim, kill

    def finished(self) -> None:
        self.load.done += 1
        if self.load.killed:
            self.load.after_kill += 1

    def maybe_kill(self) -> None:
        busy = self.load.in_flight[self.victim] > 0
        due = self.load.done >= (KILL_AT if busy else KILL_LATEST) * self.total
        if not self.load.killed and due:
            self.load.killed = True
            self.kill()


@dataclass
class Attempt:
    acked: bool = False  # the app answered at all: the message must be in the database
    done: dict | None = None  # the reply's done frame
    refused: bool = False  # 429


class RestUser:
    """``POST /api/chat`` streamed as SSE, the conversation named by id in each request."""

    def __init__(self, n: int, proxy: str, load: Load, turns: Turns) -> None:
        transport = httpx.AsyncHTTPTransport(local_address=f"127.0.1.{n + 1}")
        self.client = httpx.AsyncClient(base_url=proxy, transport=transport, timeout=60)
        self.load, self.turns, self.conversation = load, turns, ""

    async def send(self, text: str, key: str) -> Attempt:
        attempt = Attempt()
        body = {"user_input": text, "stream": True, "context": CONTEXT, "conversation_id": self.conversation}
        headers = {"Idempotency-Key": key}
        try:
            async with self.client.stream("POST", "api/chat", json=body, headers=headers) as response:
                if response.status_code != 200:
                    attempt.refused = response.status_code == 429
                    # 502: nginx had sent the POST to the replica that died; nginx never resends
                    # a POST, so the user does (the replica may have kept the message first)
                    if response.status_code == 502:
                        self.load.bad_gateway += 1
                    elif not attempt.refused:
                        self.load.errors.update([str(response.status_code)])
                    return attempt
                attempt.acked, served = True, response.headers.get("x-served-by", "").split(",")[-1].strip()
                self.load.in_flight[served] += 1
                try:
                    attempt.done = await read_sse(response, self.turns)
                finally:
                    self.load.in_flight[served] -= 1
        except httpx.TransportError:
            pass
        return attempt

    async def close(self) -> None:
        await self.client.aclose()


async def read_sse(response: httpx.Response, turns: Turns) -> dict | None:
    event = ""
    async for line in response.aiter_lines():
        turns.maybe_kill()
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and event == "done":
            return json.loads(line[6:])
    return None


class WsUser:
    """One ``/ws`` connection while it lasts; a new one resumes the conversation by id."""

    def __init__(self, n: int, proxy: str, load: Load, turns: Turns) -> None:
        self.address, self.proxy, self.load, self.turns = f"127.0.1.{n + 1}", proxy, load, turns
        self.conversation, self.socket, self.served, self.headers = "", None, "", {}

    async def connect(self) -> None:
        if not self.headers:  # the visitor cookie first: the owner of the user's conversation
            transport = httpx.AsyncHTTPTransport(local_address=self.address)
            async with httpx.AsyncClient(base_url=self.proxy, transport=transport, timeout=30) as client:
                visitor = (await client.get("api/conversations")).cookies["chat_visitor"]
            self.headers = {"Cookie": f"chat_visitor={visitor}"}
        query = f"?conversation_id={self.conversation}" if self.conversation else ""
        url = self.proxy.replace("http://", "ws://") + "ws" + query
        self.socket = await connect(url, additional_headers=self.headers, local_addr=(self.address, 0))
        self.served = self.socket.response.headers.get("x-served-by", "").split(",")[-1].strip()

    async def send(self, text: str, key: str) -> Attempt:
        attempt = Attempt()
        try:
            if self.socket is None:
                await self.connect()
            frame_ = {"user_input": text, "context": CONTEXT, "idempotency_key": key}
            await self.socket.send(json.dumps(frame_))
            self.load.in_flight[self.served] += 1
            try:
                while attempt.done is None and not attempt.refused:
                    frame = json.loads(await self.socket.recv())
                    self.turns.maybe_kill()
                    attempt.refused = frame["type"] == "error" and frame.get("status") == 429
                    attempt.acked = attempt.acked or not attempt.refused
                    if frame["type"] == "done":
                        attempt.done = frame
                    elif frame["type"] == "error" and not attempt.refused:
                        self.load.errors.update([str(frame.get("status"))])
                        break
            finally:
                self.load.in_flight[self.served] -= 1
        except (websockets.ConnectionClosed, OSError):
            self.socket = None
        return attempt

    async def close(self) -> None:
        if self.socket is not None:
            await self.socket.close()


DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def spelled(number: int) -> str:
    """A number in words: the guard reads a run of digits as a possible one-time code."""
    return " ".join(DIGITS[int(d)] for d in str(number))


NAMES = [
    "Ana",
    "Ben",
    "Chen",
    "Dara",
    "Eli",
    "Fang",
    "Gus",
    "Hana",
    "Ivo",
    "Jun",
    "Kai",
    "Lena",
    "Mo",
    "Nia",
    "Omar",
    "Pia",
    "Quan",
    "Rosa",
    "Sam",
    "Tao",
]
NAMES += ["Uma", "Vik", "Wen", "Xia", "Yara", "Zoe", "Ada", "Bo", "Cleo", "Dev"]
QUESTIONS = [
    "What time do you open on Saturday?",
    "Can I return a jacket after two weeks?",
    "Which tea do you recommend for the evening?",
    "Is the blue scarf still in stock?",
    "What time do you close on Sunday?",
]


def message(n: int, turn: int) -> str:
    """A shop visitor's question, unique in the run for the first 30 users and 5 turns (more
    repeat a text; a digit run is avoided: the guard reads one as a possible one-time code)."""
    return f"Hi, I am {NAMES[n % len(NAMES)]}. {QUESTIONS[turn % len(QUESTIONS)]}"


async def user(person: RestUser | WsUser, n: int, load: Load) -> None:
    """``load.turns`` messages; one not answered at all (its replica died first) is sent again,
    as a client does when its connection drops before any answer."""
    try:
        for turn in range(load.turns):
            text, key = message(n, turn), str(uuid.uuid4())  # the key goes with every copy
            start = time.perf_counter()
            for tries in range(2):
                attempt = await person.send(text, key)
                if attempt.acked or attempt.refused:
                    break
                if tries == 0:
                    load.resent += 1
                    load.resent_keys.append(key)
            load.refused += attempt.refused
            blocked = attempt.done is not None and attempt.done.get("blocked")
            load.blocked += bool(blocked)  # the guard refused it: not stored, by design
            if attempt.acked and not blocked:
                load.acked.add(text)
            if attempt.done is not None:
                person.conversation = attempt.done["conversation_id"]
                load.latencies.append(time.perf_counter() - start)
            elif attempt.acked:
                load.cut += 1
            person.turns.finished()
            await asyncio.sleep(random.uniform(*THINK_SECONDS))
    finally:
        await person.close()


async def run_users(proxy: str, users: int, load: Load, *, kill_when: str, kill: Callable[[], None]) -> None:
    """``users`` at once, alternating REST and /ws; ``kill`` runs once, mid-run (see ``Turns``)."""
    turns = Turns(users * load.turns, load, kill_when, kill)
    people = [(RestUser if n % 2 == 0 else WsUser)(n, proxy, load, turns) for n in range(users)]
    await asyncio.gather(*(user(person, n, load) for n, person in enumerate(people)))
