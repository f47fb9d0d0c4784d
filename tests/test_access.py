"""The door (``chat.service.door.access``): one access policy, one limiter, queue admission, every way in.

A security regression test for each finding of issue 9 the door covers, then one contract suite
over every entry point (Gradio's API, ``/api/chat`` JSON and SSE, ``/ws``, ``/v1`` streaming and
not). The whole app is served for real on loopback; a scripted backend answers, since the model
is not what these tests are about.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import anyio
import httpx
import pytest
from guard_fakes import ScriptedBackend
from playwright.sync_api import Browser, expect
from service_support import serve, service_engine, sse_events
from support import BOT, INPUT
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from chat import ChatEngine, Settings
from chat.backends.base import Finish
from chat.backends.local.queue import Cancelled, TurnQueue
from chat.messages import GenerationParams, Message
from chat.service.async_bridge import EventPump, ThreadBudget
from chat.service.door.identity import Identity
from chat.service.door.policy import Policy, Verdict

USER, PASSWORD, TOKEN = "admin", "pw-4b1d", "tok-93c2"
BASIC = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
BEARER = {"Authorization": f"Bearer {TOKEN}"}
GRADIO_ARGS = ["Say ok.", None, "", 0.7, 2048, 4, 0.95, ""]  # ..., top_p, knowledge (none)


def scripted() -> ChatEngine:
    return service_engine(ScriptedBackend(["Hello", " there."]))


def json_post(url: str, body: object, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(url, json=body, headers=headers or {}, timeout=30)


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "ws"


def ws_status(base: str, headers: dict[str, str], *, query: str = "") -> int:
    """200 when /ws accepted the handshake and answered a message, else the refusal's status."""
    try:
        with connect(ws_url(base) + query, additional_headers=headers, open_timeout=10) as ws:
            ws.send(json.dumps({"user_input": "Say ok."}))
            while (event := json.loads(ws.recv(timeout=30)))["type"] not in ("done", "error"):
                pass
            return 200 if event["type"] == "done" else event["status"]
    except InvalidStatus as exc:
        return exc.response.status_code


# --- 1. one access policy ------------------------------------------------------------------------

PROTECTED = [
    ("POST", "api/chat", {"user_input": "hi"}),
    ("POST", "v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
    ("GET", "v1/models", None),
    ("GET", "metrics", None),
    ("GET", "readyz", None),
    ("POST", "gradio_api/run/chat", {"data": GRADIO_ARGS}),
    ("POST", "gradio_api/call/chat", {"data": GRADIO_ARGS}),
    ("POST", "gradio_api/queue/join", {"data": GRADIO_ARGS, "fn_index": 0, "session_hash": "x"}),
    ("GET", "gradio_api/info", None),
    ("POST", "gradio_api/upload", None),
    ("GET", "gradio_api/file=/etc/hostname", None),
    ("GET", "api/docs", None),
]


@pytest.fixture(scope="module")
def login_app() -> Iterator[str]:
    with serve(scripted(), auth=f"{USER}:{PASSWORD}", trusted_proxies=("127.0.0.1",)) as url:
        yield url


@pytest.fixture(scope="module")
def token_app() -> Iterator[str]:
    with serve(scripted(), api_token=TOKEN, trusted_proxies=("127.0.0.1",)) as url:
        yield url


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED, ids=[p for _, p, _ in PROTECTED])
def test_a_login_protects_every_api_route(login_app: str, method: str, path: str, body: object) -> None:
    refused = httpx.request(method, login_app + path, json=body, timeout=30)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Basic")
    assert refused.json()["error"]["type"] == "unauthorized"
    opened = httpx.request(method, login_app + path, json=body, headers=BASIC, timeout=30)
    assert opened.status_code != 401


def test_a_login_protects_the_websocket(login_app: str) -> None:
    assert ws_status(login_app, {}) == 401
    assert ws_status(login_app, {}, query="?token=guess") == 401
    assert ws_status(login_app, BASIC) == 200


def test_the_page_login_opens_the_api_routes_for_the_page(login_app: str) -> None:
    with httpx.Client(base_url=login_app, timeout=30) as page:
        assert page.get("config").status_code == 401  # Gradio's own login still guards the page
        logged_in = page.post("login", data={"username": USER, "password": PASSWORD})
        assert logged_in.status_code == 200
        assert page.get("config").status_code == 200
        assert page.post("api/chat", json={"user_input": "hi"}).json()["reply"] == "Hello there."
        assert page.get("metrics").status_code == 200
    with connect(
        ws_url(login_app),
        additional_headers={"Cookie": "; ".join(f"{k}={v}" for k, v in page.cookies.items())},
    ) as ws:
        ws.send(json.dumps({"user_input": "hi"}))
        while json.loads(ws.recv(timeout=30))["type"] != "done":
            pass


def test_a_token_alone_protects_gradios_api_routes(token_app: str) -> None:
    from gradio_client import Client

    for path in ("gradio_api/run/chat", "gradio_api/call/chat"):
        assert json_post(token_app + path, {"data": GRADIO_ARGS}).status_code == 401
        assert json_post(token_app + path, {"data": GRADIO_ARGS}, BEARER).status_code == 200
    assert httpx.get(token_app + "config").status_code == 401  # the page asks for the token too
    client = Client(token_app, headers=BEARER, verbose=False, ssl_verify=False)
    try:
        assert client.predict(message="Say ok.", api_name="/chat") == "Hello there."
    finally:
        client.close()
    with httpx.Client(base_url=token_app, timeout=30) as page:  # the token is the page's password
        assert page.post("login", data={"username": "anyone", "password": TOKEN}).status_code == 200
        assert page.post("gradio_api/run/chat", json={"data": GRADIO_ARGS}).status_code == 200


def test_wrong_credentials_get_one_answer_whatever_was_wrong(login_app: str) -> None:
    def attempt(user: str, password: str) -> httpx.Response:
        raw = base64.b64encode(f"{user}:{password}".encode()).decode()
        return httpx.get(login_app + "v1/models", headers={"Authorization": f"Basic {raw}"})

    answers = [attempt("admin", "wrong"), attempt("root", PASSWORD), attempt("root", "wrong")]
    answers.append(httpx.get(login_app + "v1/models", headers={"Authorization": "Bearer nope"}))
    assert {a.status_code for a in answers} == {401}
    bodies = {json.dumps({**a.json()["error"], "request_id": ""}) for a in answers}
    assert len(bodies) == 1
    assert {a.headers["www-authenticate"] for a in answers} == {'Basic realm="chat", charset="UTF-8"'}


def test_healthz_stays_open_and_says_nothing_else(login_app: str) -> None:
    response = httpx.get(login_app + "healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_a_metrics_token_opens_metrics_alone() -> None:
    with serve(scripted(), full=False, metrics_token="scrape-me") as url:
        assert httpx.get(url + "metrics").status_code == 401
        assert httpx.get(url + "metrics", headers={"Authorization": "Bearer scrape-me"}).status_code == 200
        assert json_post(url + "api/chat", {"user_input": "hi"}).status_code == 200  # no policy: open
        # An OpenAI client always sends some key: an open route ignores it.
        assert (
            json_post(url + "api/chat", {"user_input": "hi"}, {"Authorization": "Bearer any"}).status_code
            == 200
        )


def test_policy_compares_every_part() -> None:
    policy = Policy(Settings(auth=f"{USER}:{PASSWORD}", api_token=TOKEN))
    assert policy.verdict("") is Verdict.NONE
    assert policy.verdict(BASIC["Authorization"]) is Verdict.VALID
    assert policy.verdict(BEARER["Authorization"]) is Verdict.VALID
    assert policy.verdict("", TOKEN) is Verdict.VALID  # ?token= on /ws
    assert policy.verdict("Basic !!!notbase64") is Verdict.INVALID
    assert policy.verdict("Digest x") is Verdict.INVALID
    assert policy.page_login(USER, PASSWORD) and not policy.page_login(USER, TOKEN)
    token_only = Policy(Settings(api_token=TOKEN))
    assert token_only.page_login("anyone", TOKEN) and not token_only.page_login("anyone", "x")


# --- 2. one limiter, every way in ------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited() -> Iterator[str]:
    """CHAT_RATE_LIMIT=3; each test is its own client (X-Forwarded-For from a trusted loopback)."""
    with serve(scripted(), rate_limit=3, max_upload_bytes=2048, trusted_proxies=("127.0.0.1",)) as url:
        yield url


def client(n: int) -> dict[str, str]:
    return {"X-Forwarded-For": f"10.3.0.{n}"}


def test_rate_limit_stops_the_fourth_gradio_run(limited: str) -> None:
    run = limited + "gradio_api/run/chat"
    assert [json_post(run, {"data": GRADIO_ARGS}, client(1)).status_code for _ in range(4)] == [200] * 3 + [
        429
    ]
    refused = json_post(run, {"data": GRADIO_ARGS}, client(1))
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "per minute" in refused.json()["detail"]  # what Gradio's page shows


def test_rate_limit_counts_a_gradio_call_once(limited: str) -> None:
    for _ in range(3):  # POST /call then GET /call/{event_id}: one message
        posted = json_post(limited + "gradio_api/call/chat", {"data": GRADIO_ARGS}, client(2))
        assert posted.status_code == 200
        event = posted.json()["event_id"]
        result = httpx.get(limited + f"gradio_api/call/chat/{event}", headers=client(2), timeout=30)
        assert result.status_code == 200 and "Hello there." in result.text
    fourth = json_post(limited + "gradio_api/call/chat", {"data": GRADIO_ARGS}, client(2))
    assert fourth.status_code == 429 and "retry-after" in fourth.headers


def test_page_events_that_do_not_reply_are_not_counted(limited: str) -> None:
    config = httpx.get(limited + "config").json()
    # any other event of the page (opening the conversation list, switching persona...)
    other = next(
        d["id"]
        for d in config["dependencies"]
        if d.get("backend_fn") and d.get("api_name") not in ("chat", "chat_ui", "chat_ui_1")
    )
    body = {"data": [], "fn_index": other, "session_hash": "s1"}
    for _ in range(5):
        assert json_post(limited + "gradio_api/run/predict", body, client(3)).status_code != 429
    assert json_post(limited + "api/chat", {"user_input": "hi"}, client(3)).status_code == 200
    # the page's own chat event (found by its handler, not its name) does count
    chat_ui = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "chat_ui")
    join = {"data": GRADIO_ARGS, "fn_index": chat_ui, "session_hash": "s2"}
    statuses = [json_post(limited + "gradio_api/queue/join", join, client(3)).status_code for _ in range(3)]
    assert statuses[-1] == 429


def test_a_long_conversation_from_the_page_is_not_too_large(limited: str) -> None:
    # The page sends the whole history with each message; the door reads it to find the event.
    history = [{"role": r, "content": "x" * 40_000} for r in ("user", "assistant") * 25]  # 2 MB
    args = ["Say ok.", history, *GRADIO_ARGS[2:]]
    response = json_post(limited + "gradio_api/run/chat", {"data": args}, client(4))
    assert response.status_code != 413


def test_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    with serve(scripted(), full=False, rate_limit=1) as url:
        first = json_post(url + "api/chat", {"user_input": "hi"}, {"X-Forwarded-For": "10.9.0.1"})
        second = json_post(url + "api/chat", {"user_input": "hi"}, {"X-Forwarded-For": "10.9.0.2"})
        assert (first.status_code, second.status_code) == (200, 429)


def test_identity_believes_only_trusted_proxies() -> None:
    scope = {"client": ("127.0.0.1", 5000)}
    open_door = Identity(Settings(), b"k")
    assert open_door.address(scope, {"x-forwarded-for": "6.6.6.6"}) == "127.0.0.1"
    proxied = Identity(Settings(trusted_proxies=("127.0.0.0/8", "10.0.0.0/8")), b"k")
    # nginx appends the real peer; a client-made entry on the left is not believed
    assert proxied.address(scope, {"x-forwarded-for": "6.6.6.6, 203.0.113.7, 10.0.0.2"}) == "203.0.113.7"
    assert proxied.address(scope, {"x-real-ip": "203.0.113.9"}) == "203.0.113.9"
    assert proxied.address({"client": ("198.51.100.1", 1)}, {"x-real-ip": "1.2.3.4"}) == "198.51.100.1"


def test_behind_share_a_visitor_is_keyed_on_a_signed_cookie() -> None:
    identity = Identity(Settings(share=True), b"secret")
    assert identity.keyed_on_visitor("127.0.0.1") and not identity.keyed_on_visitor("203.0.113.7")
    cookie = identity.new_visitor_cookie()
    assert "HttpOnly" in cookie
    name, value = cookie.split(";", 1)[0].split("=", 1)
    assert identity.visitor({name: value}) == value.split(".")[0]
    forged = value.split(".")[0] + "." + "0" * 32
    assert identity.visitor({name: forged}) is None
    assert Identity(Settings(share=True), b"other").visitor({name: value}) is None


def test_share_visitors_get_their_own_budget() -> None:
    with (
        serve(scripted(), rate_limit=1, share=True) as url,
        httpx.Client(base_url=url, timeout=30) as one,
        httpx.Client(base_url=url, timeout=30) as two,
    ):
        one.get("")  # the page hands out the visitor cookie
        two.get("")
        assert "chat_visitor" in one.cookies and one.cookies["chat_visitor"] != two.cookies["chat_visitor"]
        assert one.post("api/chat", json={"user_input": "hi"}).status_code == 200
        assert one.post("api/chat", json={"user_input": "hi"}).status_code == 429
        assert two.post("api/chat", json={"user_input": "hi"}).status_code == 200


# --- 3. queue admission -----------------------------------------------------------------------------


class QueuedBackend(ScriptedBackend):
    """A scripted reply behind the TurnQueue the local model uses; ``gate`` holds the running one."""

    def __init__(self) -> None:
        super().__init__(["ok"])
        self.queue = TurnQueue(poll=0.5)  # a blocking look would hold a thread this long
        self.gate = threading.Event()

    @property
    def queue_depth(self) -> int:
        return self.queue.depth

    def stream(self, messages: Sequence[Message], params: GenerationParams, *, cancel=None, api_key=None):  # noqa: ANN001, ANN201
        try:
            yield from self.queue.wait_turn(cancel)
        except Cancelled:
            yield Finish("cancelled")
            return
        try:
            while not self.gate.wait(0.05):
                if cancel is not None and cancel.is_set():
                    yield Finish("cancelled")
                    return
            yield "ok"
            yield Finish("stop")
        finally:
            self.queue.release()


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_full_queue_answers_429_with_retry_after() -> None:
    backend = QueuedBackend()
    with serve(service_engine(backend), max_queue=1) as url:
        results: list[int] = []
        callers = [
            threading.Thread(
                target=lambda: results.append(json_post(url + "api/chat", {"user_input": "hi"}).status_code)
            )
            for _ in range(2)
        ]
        try:
            callers[0].start()
            wait_for(lambda: backend.queue_depth == 1)  # running
            callers[1].start()
            wait_for(lambda: backend.queue_depth == 2)  # one waiting: the queue is full
            for path, body in [
                ("api/chat", {"user_input": "hi"}),
                ("v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
                ("gradio_api/run/chat", {"data": GRADIO_ARGS}),
            ]:
                full = json_post(url + path, body)
                assert full.status_code == 429, path
                assert int(full.headers["retry-after"]) >= 1
                assert "queue is full" in full.json()["error"]["message"]
            assert ws_status(url, {}) == 429
        finally:
            backend.gate.set()
            for caller in callers:
                caller.join(30)
        assert results == [200, 200]


def test_a_queued_request_holds_no_thread() -> None:
    backend = QueuedBackend()
    engine = service_engine(backend)
    budget = ThreadBudget(threads=4)
    samples: list[int] = []

    async def main() -> None:
        holder = EventPump(
            iter(engine.stream([Message("user", "a")], GenerationParams())), threading.Event(), budget
        )
        waiters = [
            EventPump(
                iter(engine.stream([Message("user", "b")], GenerationParams())), threading.Event(), budget
            )
            for _ in range(3)
        ]

        async def drain(pump: EventPump) -> None:
            async for _ in pump:
                pass
            await pump.aclose()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(drain, holder)
            while backend.queue_depth < 1:
                await anyio.sleep(0.01)
            for pump in waiters:
                tasks.start_soon(drain, pump)
            while backend.queue_depth < 4:
                await anyio.sleep(0.01)
            for _ in range(40):  # three requests wait; the holder's thread waits on the gate
                samples.append(budget.limiter.borrowed_tokens)
                await anyio.sleep(0.01)
            backend.gate.set()

    anyio.run(main)
    # Mostly only the running request's thread is out; the three queued ones hold none between looks.
    assert sum(s <= 1 for s in samples) >= len(samples) // 2


# --- 4. origins and content types -------------------------------------------------------------------


@pytest.fixture(scope="module")
def origins_app() -> Iterator[str]:
    with serve(scripted(), full=False, allowed_origins=("https://shop.example",)) as url:
        yield url


def test_websocket_from_a_foreign_origin_is_refused(origins_app: str) -> None:
    host = origins_app.removeprefix("http://").rstrip("/")
    assert ws_status(origins_app, {"Origin": "https://evil.example"}) == 403
    assert ws_status(origins_app, {"Origin": f"http://{host}"}) == 200  # the app's own page
    assert ws_status(origins_app, {"Origin": "https://shop.example"}) == 200  # configured
    assert ws_status(origins_app, {}) == 200  # not a browser


@pytest.mark.parametrize("path", ["api/chat", "v1/chat/completions"])
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_json_route_refuses_other_content_types(
    origins_app: str, path: str, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    body = json.dumps({"user_input": "hi", "messages": [{"role": "user", "content": "hi"}]})
    response = httpx.post(origins_app + path, content=body, headers=headers)
    assert response.status_code == 415
    assert response.json()["error"]["type"] == "unsupported_media_type"
    assert "application/json" in response.json()["error"]["message"]


def test_an_oversized_upload_gets_a_clear_413(limited: str) -> None:
    upload = limited + "gradio_api/upload"  # --max-upload-bytes 2048
    # A declared length over the limit is refused before a byte is read (the door) ...
    huge = httpx.post(upload, files={"files": ("chat.json", b"[" + b" " * 200_000 + b"]")})
    assert huge.status_code == 413
    assert "larger than the upload limit of 2048 bytes" in huge.json()["detail"]
    # ... and a file just over it is cut off while it streams (Gradio's max_file_size).
    big = httpx.post(upload, files={"files": ("chat.json", b"[" + b" " * 8192 + b"]")})
    assert big.status_code == 413
    assert "maximum allowed size of 2048 bytes" in big.text
    assert httpx.post(upload, files={"files": ("chat.json", b"[]")}).status_code == 200


def test_door_messages_follow_accept_language(origins_app: str) -> None:
    response = httpx.post(
        origins_app + "api/chat",
        content=b"hi",
        headers={"Content-Type": "text/plain", "Accept-Language": "zh-CN"},
    )
    assert "请以 JSON 发送请求体" in response.json()["error"]["message"]


# --- 5. the contract: every way in ------------------------------------------------------------------


def visitor(n: int, auth: dict[str, str] | None) -> dict[str, str]:
    return {**(auth or {}), "X-Forwarded-For": f"10.7.0.{n}"}


def via_gradio(base: str, headers: dict[str, str]) -> int:
    posted = json_post(base + "gradio_api/call/chat", {"data": GRADIO_ARGS}, headers)
    if posted.status_code != 200:
        return posted.status_code
    result = httpx.get(
        base + f"gradio_api/call/chat/{posted.json()['event_id']}", headers=headers, timeout=30
    )
    assert "Hello there." in result.text
    return result.status_code


def via_rest(base: str, headers: dict[str, str]) -> int:
    response = json_post(base + "api/chat", {"user_input": "Say ok."}, headers)
    assert response.status_code != 200 or response.json()["reply"] == "Hello there."
    return response.status_code


def via_sse(base: str, headers: dict[str, str]) -> int:
    with httpx.stream(
        "POST", base + "api/chat", json={"user_input": "Say ok.", "stream": True}, headers=headers
    ) as r:
        if r.status_code == 200:
            assert [name for name, _ in sse_events(r.iter_lines())][-1] == "done"
        return r.status_code


def via_ws(base: str, headers: dict[str, str]) -> int:
    return ws_status(base, headers)


def via_openai(stream: bool) -> Callable[[str, dict[str, str]], int]:
    def call(base: str, headers: dict[str, str]) -> int:
        body = {"model": "local", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
        with httpx.stream("POST", base + "v1/chat/completions", json=body, headers=headers, timeout=30) as r:
            text = r.read().decode()
        assert r.status_code != 200 or "Hello" in text
        return r.status_code

    return call


ENTRIES = {
    "gradio": via_gradio,
    "rest-json": via_rest,
    "rest-sse": via_sse,
    "ws": via_ws,
    "openai": via_openai(False),
    "openai-stream": via_openai(True),
}


@pytest.fixture(scope="module")
def contract_app() -> Iterator[str]:
    with serve(
        scripted(), auth=f"{USER}:{PASSWORD}", api_token=TOKEN, rate_limit=2, trusted_proxies=("127.0.0.1",)
    ) as url:
        yield url


@pytest.mark.parametrize("entry", list(ENTRIES))
def test_every_way_in_needs_the_login_or_the_token_and_shares_one_limit(
    contract_app: str, entry: str
) -> None:
    call = ENTRIES[entry]
    n = list(ENTRIES).index(entry)
    assert call(contract_app, visitor(100 + n, None)) == 401
    assert call(contract_app, visitor(110 + n, {"Authorization": "Bearer wrong"})) == 401
    me = 120 + n
    assert call(contract_app, visitor(me, BASIC)) == 200
    assert call(contract_app, visitor(me, BEARER)) == 200
    assert call(contract_app, visitor(me, BEARER)) == 429
    # The budget is the client's across every way in: another entry is refused too.
    other = ENTRIES["rest-json"] if entry != "rest-json" else ENTRIES["openai"]
    assert other(contract_app, visitor(me, BEARER)) == 429


def test_page_login_attempts_count_against_the_limit(contract_app: str) -> None:
    guess = {"username": USER, "password": "guess"}
    tries = [httpx.post(contract_app + "login", data=guess, headers=visitor(90, None)) for _ in range(3)]
    assert [t.status_code for t in tries] == [400, 400, 429]  # wrong passwords count; a login does not


def test_basic_callers_cannot_read_or_end_the_doors_session(login_app: str) -> None:
    assert httpx.get(login_app + "gradio_api/token", headers=BASIC).json()["token"] is None
    httpx.get(login_app + "logout", headers=BASIC)
    assert json_post(login_app + "gradio_api/run/chat", {"data": GRADIO_ARGS}, BASIC).status_code == 200


# --- 6. the page, in a real browser, behind the door ----------------------------------------------


@pytest.mark.browser
def test_the_page_logs_in_chats_and_shows_the_limit(browser: Browser) -> None:
    """The page's own calls (queue, heartbeat, data) pass the door on its session; a login does
    not count against the limit, and a spent budget shows the door's sentence on the page. (The
    token-only page uses the same login with the token as password: test_policy_compares_every_part.)"""
    with serve(scripted(), rate_limit=2, auth=f"{USER}:{PASSWORD}") as url:
        context = browser.new_context()
        try:
            page = context.new_page()
            page.goto(url, wait_until="domcontentloaded")
            page.locator("input[type='text']").first.fill(USER)
            page.locator("input[type='password']").first.fill(PASSWORD)
            page.keyboard.press("Enter")
            for n in (1, 2):
                page.locator(INPUT).fill(f"Say ok {n}.")
                page.locator(INPUT).press("Enter")
                expect(page.locator(BOT).nth(n - 1)).to_contain_text("Hello there.", timeout=30_000)
                expect(page.locator(INPUT)).to_be_enabled(timeout=30_000)
            page.locator(INPUT).fill("Say ok 3.")
            page.locator(INPUT).press("Enter")
            expect(page.get_by_text("too many requests").first).to_be_visible(timeout=30_000)
        finally:
            context.close()
