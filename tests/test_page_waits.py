"""Page chat requests waiting for the model hold no thread; Gradio's ``/chat`` takes a knowledge base.

The model here is a scripted backend behind the local model's own ``TurnQueue`` (the point is the
threads and the prompt, not the model); the app, Gradio's queue routes and gradio_client are real.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import anyio
import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from service_support import serve

from chat import ChatEngine
from chat.backends.base import Backend, Chunk, Finish
from chat.backends.local.queue import Cancelled, TurnQueue
from chat.knowledge.context import BEGIN
from chat.messages import GenerationParams, Message
from chat.service.async_bridge import EventPump, ThreadBudget

WAITERS = 12
POSITION = re.compile(r"position (\d+) in the queue")
RETURNS_MD = (
    b"# Returns\n\n## Refunds\n\nItems can be returned within 30 days of delivery for a full refund.\n"
)
QUESTION = "How many days do I have to return an item?"


class EchoBackend(Backend):
    """Echoes the question behind the TurnQueue the local model uses, and records each prompt;
    until ``gate`` is set the running reply holds the model (and everyone else waits)."""

    name = "local"
    model = "echo-1"

    def __init__(self) -> None:
        self.queue = TurnQueue()
        self.gate = threading.Event()
        self.prompts: list[list[Message]] = []

    @property
    def queue_depth(self) -> int:
        return self.queue.depth

    def stream(
        self,
        messages: Sequence[Message],
        params: GenerationParams,
        *,
        cancel: threading.Event | None = None,
        api_key: str | None = None,
    ) -> Iterator[Chunk]:
        try:
            yield from self.queue.wait_turn(cancel)
        except Cancelled:
            yield Finish("cancelled")
            return
        try:
            self.prompts.append(list(messages))
            while not self.gate.wait(0.05):
                if cancel is not None and cancel.is_set():
                    yield Finish("cancelled")
                    return
            yield f"echo: {messages[-1].content}"
            yield Finish("stop")
        finally:
            self.queue.release()

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return sum(len(m.content) // 4 + 4 for m in messages)


def threads_at_work() -> int:
    """Threads running the app's code right now (a request's thread); idle pool threads and the
    servers' loops are not. A waiting request that held a thread would be here, in the queue."""
    return sum(
        any("/chat/" in f.filename for f in traceback.extract_stack(frame))
        for frame in sys._current_frames().values()
    )


def page_chat_args(message: str) -> list[object]:
    """The page's chat event inputs: message, history, conversation id, synced count, system
    prompt, temperature, context length, max new tokens, top p, backend, API key, cache, knowledge."""
    return [message, None, None, 0, "", 0.7, 2048, 16, 0.95, "local", "", True, None]


@dataclass
class App:
    url: str
    backend: EchoBackend
    chat_ui: int  # the page's chat event (fn_index)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """The whole app over the echo backend, with a ``shop`` knowledge base uploaded through the API."""
    backend = EchoBackend()
    with serve(ChatEngine({"local": backend}), data_dir=str(tmp_path_factory.mktemp("waits"))) as url:
        uploaded = httpx.post(
            url + "api/knowledge/shop/documents", files={"file": ("returns.md", RETURNS_MD)}, timeout=30
        )
        assert uploaded.status_code in (200, 201), uploaded.text
        config = httpx.get(url + "config", timeout=30).json()
        chat_ui = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "chat_ui")
        yield App(url, backend, chat_ui)


@pytest.fixture(scope="module")
def gradio_client(app: App) -> Iterator[Client]:
    c = Client(app.url, verbose=False)
    yield c
    c.close()


@pytest.fixture
def client(app: App, gradio_client: Client) -> Client:
    app.backend.gate.set()  # the model answers at once
    return gradio_client


class PageChat:
    """One visitor's page chat over Gradio's queue routes: ``text`` gathers what it was sent."""

    def __init__(self, app: App, session: str, message: str) -> None:
        self.app, self.session, self.message = app, session, message
        self.text = ""
        self.event_id = ""

    async def run(self, leave_on: str = "") -> None:
        """Send the message and read what comes back to the end, or until ``leave_on`` shows (then
        the connection is dropped, as a closed tab drops it)."""
        body = {
            "data": page_chat_args(self.message),
            "fn_index": self.app.chat_ui,
            "session_hash": self.session,
        }
        async with httpx.AsyncClient(base_url=self.app.url, timeout=60) as http:
            joined = await http.post("gradio_api/queue/join", json=body)
            assert joined.status_code == 200, joined.text
            self.event_id = joined.json()["event_id"]
            params = {"session_hash": self.session}
            async with http.stream("GET", "gradio_api/queue/data", params=params) as stream:
                async for line in stream.aiter_lines():
                    if line.startswith("data:"):
                        message = json.loads(line[5:])
                        self.text += json.dumps(message, ensure_ascii=False) + "\n"
                        if message.get("msg") == "process_completed" or (leave_on and leave_on in self.text):
                            return

    async def stop(self) -> None:
        """What the page's Stop button sends."""
        body = {"session_hash": self.session, "fn_index": self.app.chat_ui, "event_id": self.event_id}
        async with httpx.AsyncClient(base_url=self.app.url, timeout=30) as http:
            assert (await http.post("gradio_api/cancel", json=body)).status_code == 200


async def wait_depth(backend: EchoBackend, depth: int) -> None:
    with anyio.fail_after(30):
        while backend.queue_depth != depth:
            await anyio.sleep(0.02)


async def wait_shown(chat: PageChat, text: str) -> None:
    """Until the page was sent ``text``: a request joins the queue a moment before its notice
    reaches the page."""
    with anyio.fail_after(30):
        while text not in chat.text:
            await anyio.sleep(0.02)


def test_waiting_page_requests_hold_no_thread(app: App) -> None:
    backend = app.backend
    backend.gate.clear()  # the first request holds the model until the test lets it answer
    chats = [PageChat(app, f"waiter-{n}", f"question {n}") for n in range(WAITERS + 1)]
    # the process's own long-lived threads in chat code (a batching model's scheduler, the store's
    # writer...) are at work whatever the requests do: counted before, and left out
    idle = min(threads_at_work() for _ in range(5))
    samples: list[int] = []  # threads at work while twelve requests wait

    async def main() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(chats[0].run)
            await wait_depth(backend, 1)
            for chat in chats[1:]:
                tasks.start_soon(chat.run)
            await wait_depth(backend, WAITERS + 1)
            for _ in range(50):  # twelve requests wait while the first one holds the model
                samples.append(threads_at_work() - idle)
                await anyio.sleep(0.02)
            backend.gate.set()

    anyio.run(main)
    # Between their looks at the queue the waiting requests hold no thread: mostly only the running
    # reply's thread is at work (a thread per waiter would show thirteen in nearly every sample).
    assert sum(busy <= 2 for busy in samples) >= len(samples) // 2, samples
    assert max(samples) < WAITERS, samples
    # Each waiter was shown its place in the model's queue, then got its own reply.
    first_positions = []
    for chat in chats[1:]:
        positions = [int(p) for p in POSITION.findall(chat.text)]
        assert positions, f"{chat.session} never showed a queue position"
        first_positions.append(positions[0])
    assert sorted(first_positions) == list(range(1, WAITERS + 1))
    for chat in chats:
        assert f"echo: {chat.message}" in chat.text, chat.text[-500:]
        assert chat.text.count("echo: question") == chat.text.count(f"echo: {chat.message}"), "another's"
    assert backend.queue_depth == 0


def test_stop_frees_a_waiting_and_a_running_page_request(app: App) -> None:
    backend = app.backend
    backend.gate.clear()
    running, waiting = PageChat(app, "stop-running", "long"), PageChat(app, "stop-waiting", "queued")

    async def main() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(running.run)
            await wait_depth(backend, 1)
            tasks.start_soon(waiting.run)
            await wait_depth(backend, 2)
            await wait_shown(waiting, "position 1 in the queue")
            await waiting.stop()  # it leaves the model's queue at once: no thread was waiting in it
            await wait_depth(backend, 1)
            await running.stop()  # the running reply stops and frees the model
            await wait_depth(backend, 0)

    anyio.run(main)
    assert "echo:" not in running.text + waiting.text


def test_a_closed_tab_leaves_the_models_queue(app: App) -> None:
    backend = app.backend
    backend.gate.clear()
    running, closed = PageChat(app, "tab-running", "long"), PageChat(app, "tab-closed", "queued")

    async def main() -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(running.run)
            await wait_depth(backend, 1)
            await closed.run(leave_on="position 1 in the queue")  # the tab closes while it waits
            await wait_depth(backend, 1)  # Gradio sees it at the next queue notice and closes the reply
            backend.gate.set()

    anyio.run(main)
    assert "echo: long" in running.text and "echo:" not in closed.text
    assert backend.queue_depth == 0


def test_a_pump_cancelled_mid_step_closes_its_generator_once_the_step_ends() -> None:
    """Gradio's Stop cancels the task natively, which abandons the thread inside a step: closing
    the generator then would fail ("generator already executing"); the pump waits for the step."""
    started, release, closed = threading.Event(), threading.Event(), threading.Event()

    def steps() -> Iterator[str]:
        try:
            started.set()
            release.wait(10)  # a token still being generated when Stop arrives
            yield "token"
            yield "never read"
        finally:
            closed.set()

    cancel = threading.Event()
    pump = EventPump(steps(), cancel, ThreadBudget(2))

    async def reply() -> None:
        try:
            async for _ in pump:
                pass
        finally:
            await pump.aclose()

    async def main() -> None:
        task = asyncio.create_task(reply())
        await anyio.to_thread.run_sync(started.wait)
        task.cancel()
        await asyncio.sleep(0.2)
        assert cancel.is_set() and not closed.is_set()  # the step still runs; close waits for it
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert closed.is_set()

    asyncio.run(main())


def test_the_chat_api_answers_from_a_knowledge_base(app: App, client: Client) -> None:
    endpoint = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/chat"]
    knowledge = next(p for p in endpoint["parameters"] if p["parameter_name"] == "knowledge")
    assert knowledge["parameter_has_default"] and knowledge["parameter_default"] == ""
    assert endpoint["parameters"][-1] is knowledge  # last: positional calls keep working

    reply = client.predict(message=QUESTION, knowledge="shop", max_new_tokens=16, api_name="/chat")
    asked = app.backend.prompts[-1][-1].content  # the newest message as the model received it
    assert BEGIN in asked and asked.endswith(QUESTION)
    assert "30 days" in asked and "returns.md" in asked  # the reference block, with its source
    assert reply == f"echo: {asked}"  # the reply text, as before

    # An existing client's call (positional, no knowledge) is answered without a reference block.
    plain = client.predict(QUESTION, None, "", 0.7, 2048, 16, 0.95, api_name="/chat")
    assert plain == f"echo: {QUESTION}" and BEGIN not in app.backend.prompts[-1][-1].content


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("What is the policy?", "There is no knowledge base or document 'school'."),
        ("政策是什么？", "没有名为“school”的知识库或文档。"),
    ],
)
def test_an_unknown_knowledge_base_gets_the_same_message_as_on_api_chat(
    app: App, client: Client, text: str, message: str
) -> None:
    rest = httpx.post(app.url + "api/chat", json={"user_input": text, "context": {"knowledge": "school"}})
    assert rest.status_code == 404 and message in rest.json()["error"]["message"]
    calls = len(app.backend.prompts)
    with pytest.raises(AppError, match=re.escape(message)):
        client.predict(message=text, knowledge="school", api_name="/chat")
    assert len(app.backend.prompts) == calls  # the model was never asked
