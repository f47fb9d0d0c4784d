"""The door: who may come in, how often, and whether the model's queue has room, for every way in.

One ASGI middleware in front of the whole app (the service routes and the mounted Gradio app with
its own ``/gradio_api`` routes), so no route can forget a check:

1. **Identity.** The client is the socket's address; only a request from a ``--trusted-proxies``
   peer may name another one (the right-most untrusted ``X-Forwarded-For`` entry, else
   ``X-Real-IP``). Behind ``--share`` every visitor arrives from loopback, so there a browser is
   told apart by a random id in a signed, HttpOnly ``chat_visitor`` cookie the server issues;
   a client without one (or with a forged one) is keyed on its address, which all of them share.
2. **Access.** With a login (``--auth``) or a token (``CHAT_API_TOKEN``) configured, the page
   asks for Gradio's own login (with only a token, the token is the password, any user name), and
   every API route (``/api``, ``/v1``, ``/ws``, ``/readyz``, ``/metrics`` and Gradio's
   ``/gradio_api`` routes) needs the login as HTTP Basic, the bearer token, or the session cookie
   of a logged-in page. ``CHAT_METRICS_TOKEN`` opens ``/metrics`` alone. ``/healthz`` is always
   open. A refusal is one 401 whatever part was wrong; secrets are compared in constant time.
3. **Shape.** Another site's writes, and ``/ws`` from its pages, get 403 (``door.crossing``);
   ``/logout`` ends the caller's own session only; ``/api/chat`` and ``/v1/chat/completions``
   take JSON only (415); Gradio's bodies (any JSON outside ``/api``, ``/v1``) nested deeper than
   ``MAX_DEPTH`` get 400 unparsed; Gradio uploads over ``--max-upload-bytes`` get 413.
4. **Limits.** Each request that starts a reply (REST, OpenAI, Gradio's queue, ``/run`` and
   ``/call``; a ``/ws`` message through ``admit_message``) is checked against the primary model's
   queue (``--max-queue``) and counts once against ``CHAT_RATE_LIMIT``, as does each
   ``/v1/audio`` request; a full queue or a spent budget is 429 with ``Retry-After``.
"""

from __future__ import annotations

import json
import re
import secrets
from enum import Enum
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from chat.engine import ChatEngine
from chat.i18n import Lang, request_language, t
from chat.service.bodies import MAX_DEPTH, is_json, too_deeply_nested
from chat.service.door.asgi import on_failure, read_body, replay, with_cookie
from chat.service.door.crossing import SAFE_METHODS, Origins
from chat.service.door.gradio_sessions import GradioSessions
from chat.service.door.identity import (
    CLIENT_KEY,
    OPERATOR_KEY,
    OWNER_KEY,
    Identity,
    api_owner,
    peer_address,
)
from chat.service.door.policy import Policy, Verdict
from chat.service.door.ratelimit import ClientLimiter
from chat.service.errors import ApiError
from chat.service.tracking import RequestRecord, Tracker, request_id
from chat.settings import Settings

VISITOR_MINTS_PER_MINUTE = 60  # new visitor ids one address may get (behind --share: everyone)
QUEUE_RETRY_AFTER = 5  # seconds a client is told to wait when the model's queue is full
UPLOAD_SLACK = 64 * 1024  # multipart framing around an uploaded file
GRADIO_MAX_BODY = 32 * 1024 * 1024  # a Gradio event's body, read to find which event it runs

# POST routes that start a reply and take a JSON body
JSON_CHAT_ROUTES = ("/api/chat", "/v1/chat/completions")
# POST routes of speech to or from text (chat.service.audio_routes): one unit of the budget each
AUDIO_ROUTES = ("/v1/audio/transcriptions", "/v1/audio/speech")
_SERVICE = ("/api/", "/v1/")  # routes whose JSON chat.service.bodies reads, within MAX_DEPTH
# Gradio routes that can run an event: a chat event among them counts as one message
_GRADIO_RUN = re.compile(r"^/gradio_api/(?:queue/join|(?:run|api|call|call/v2)/(?P<name>[^/]+))/?$")
# /gradio_api routes the login page itself needs before anyone is logged in
_GRADIO_OPEN = re.compile(r"^/gradio_api/(?:login_check|user|token|app_id|theme\.css|startup-events)/?$")


class Kind(Enum):
    OPEN = "open"  # /healthz
    PAGE = "page"  # the Gradio page and its assets: Gradio's own login decides
    API = "api"  # everything that reaches the engine or its data
    METRICS = "metrics"


def classify(path: str) -> Kind:
    if path in ("/healthz", "/healthz/"):
        return Kind.OPEN
    if path in ("/metrics", "/metrics/"):
        return Kind.METRICS
    if path.startswith("/gradio_api/"):
        return Kind.PAGE if _GRADIO_OPEN.match(path) else Kind.API
    if path in ("/ws", "/readyz", "/readyz/") or path.startswith(("/api/", "/v1/")) or path == "/api":
        return Kind.API
    return Kind.PAGE


def entry_of(path: str) -> str | None:
    """The metrics entry point a refused request belongs to (None: not a chat route)."""
    if path.startswith("/api/"):
        return "rest"
    if path.startswith("/v1/"):
        return "openai"
    if path == "/ws":
        return "ws"
    if path.startswith("/gradio_api/"):
        return "gradio"
    return None


class Admission:
    """Room in the primary model's queue: ``--max-queue`` requests may wait behind the running
    ones (one, or one per slot of a batching model)."""

    def __init__(self, engine: ChatEngine, max_queue: int) -> None:
        self.engine = engine
        self.max_queue = max_queue

    def full(self) -> bool:
        backend = self.engine.backends.get(self.engine.default_backend)
        if backend is None or backend.queue_depth is None:
            return False
        batch = backend.batch_stats()
        running = batch.slots if batch is not None else 1
        return backend.queue_depth > self.max_queue + running - 1


class Door:
    """The access policy, limiter and queue admission one app applies to every request."""

    def __init__(
        self,
        settings: Settings,
        engine: ChatEngine,
        tracker: Tracker,
        host_app: Any = None,
        *,
        visitor_key: bytes | None = None,  # signs visitor cookies; default: new for this process
    ) -> None:
        self.settings = settings
        self.policy = Policy(settings)
        self.identity = Identity(settings, visitor_key or secrets.token_bytes(32))
        limit, shared = settings.rate_limit, settings.redis_url
        self.limiter = ClientLimiter(limit, redis_url=shared) if limit > 0 else None
        self._mints = ClientLimiter(VISITOR_MINTS_PER_MINUTE) if settings.share else None
        self.admission = Admission(engine, settings.max_queue)
        self.origins = Origins(settings.allowed_origins)
        self.tracker = tracker
        user = self.policy.login[0] if self.policy.login else "api"
        self.sessions = GradioSessions(host_app, user)
        self._chat_fns: set[int] | None = None

    # -- what ws.py calls for each /ws message -------------------------------------------------

    def admit_message(self, client: str, lang: Lang = "en") -> None:
        """Room in the queue and one unit of the client's budget for one reply; else ``ApiError`` 429."""
        refusal = self._admit(client, lang)
        if refusal is not None:
            raise refusal

    def _admit(self, client: str, lang: Lang) -> ApiError | None:
        if self.admission.full():
            message = t("api.queue_full", lang, seconds=QUEUE_RETRY_AFTER)
            return ApiError(429, "queue_full", message, headers={"Retry-After": str(QUEUE_RETRY_AFTER)})
        return self._spend(client, lang)

    def _spend(self, client: str, lang: Lang) -> ApiError | None:
        """One unit of the client's ``CHAT_RATE_LIMIT`` budget; a spent budget is a 429."""
        if self.limiter is not None:
            wait = self.limiter.hit(client)
            if wait is not None:
                return self._rate_refusal(wait, lang)
        return None

    def _rate_refusal(self, wait: int, lang: Lang) -> ApiError:
        assert self.limiter is not None
        message = t("api.rate_limited", lang, limit=self.limiter.per_minute, seconds=wait)
        return ApiError(429, "rate_limited", message, headers={"Retry-After": str(wait)})

    def attach(self, host_app: Any) -> None:
        """The FastAPI app the door stands in front of (Gradio is found in it once mounted)."""
        self.sessions.host = host_app

    async def serve(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        cookies = cookie_parser(headers.get("cookie", ""))  # as Gradio reads them
        path = scope["path"]
        lang = request_language("", headers.get("accept-language", ""))
        address = self.identity.address(scope, headers)
        client, mint = address, False
        if self.identity.keyed_on_visitor(address):
            visitor = self.identity.visitor(cookies)
            if visitor is not None:
                client = f"visitor:{visitor}"
            elif self._is_page_load(scope, path) and self._mints is not None:
                # Only a page load gets a new id, and only so many a minute: a script that drops
                # its cookies stays keyed on the address it shares with every cookie-less caller.
                mint = self._mints.hit(address) is None
        scope.setdefault("state", {})[CLIENT_KEY] = client
        # With a login or token configured, whoever passes the door is the operator's; without
        # one, only a client on this machine is (an open Space must not let visitors delete docs),
        # and never one a proxy forwarded: behind it, every visitor may arrive from loopback.
        local = self.identity.is_local(address) and not self.identity.forwarded(scope, headers)
        scope["state"][OPERATOR_KEY] = self.policy.closed or local
        refusal, body = await self._check(scope, headers, cookies, path, client, lang, receive)
        if refusal is not None:
            await self._refuse(scope, receive, send, refusal, headers, path, client)
            return
        if body is not None:
            receive = replay(body, receive)
        state = scope["state"]
        visitor = self.identity.visitor(cookies)
        wants_owner = state.get(OWNER_KEY) is None and (
            classify(path) is Kind.API or self._is_page_load(scope, path)
        )
        # A caller without a cookie gets one, except where the cookie keys the rate limit (behind
        # --share, from the tunnel): there only a page load mints, within its budget (see above).
        if mint or (wants_owner and visitor is None and not self.identity.keyed_on_visitor(address)):
            visitor, cookie = self.identity.mint()
            send = with_cookie(send, cookie)
        if wants_owner:  # without a cookie the id lasts this request only
            state[OWNER_KEY] = f"anon:{visitor or secrets.token_urlsafe(16)}"
        if path.rstrip("/") == "/login" and self.limiter is not None:
            send = on_failure(send, lambda: self.limiter.hit(client) if self.limiter else None)
        await app(scope, receive, send)

    @staticmethod
    def _is_page_load(scope: Scope, path: str) -> bool:
        return scope["type"] == "http" and scope.get("method") == "GET" and path in ("/", "")

    async def _check(
        self,
        scope: Scope,
        headers: dict[str, str],
        cookies: dict[str, str],
        path: str,
        client: str,
        lang: Lang,
        receive: Receive,
    ) -> tuple[ApiError | None, bytes | None]:
        kind = classify(path)
        if kind is Kind.OPEN:
            return None, None
        websocket = scope["type"] == "websocket"
        method = scope.get("method", "")
        proxied = self.identity.is_trusted(peer_address(scope))
        if not websocket and method not in SAFE_METHODS and self.origins.cross_site(headers, proxied=proxied):
            return ApiError(403, "cross_site", t("api.cross_site", lang)), None
        if path.rstrip("/") == "/logout":
            return self._logout(scope, headers, cookies, lang, proxied=proxied), None
        query = parse_qs(scope.get("query_string", b"").decode("latin-1")) if websocket else {}
        verdict = self.policy.verdict(
            headers.get("authorization", ""), (query.get("token") or [""])[0], metrics=kind is Kind.METRICS
        )
        if verdict is Verdict.VALID and path.rstrip("/") != "/gradio_api/token":  # it echoes the session
            self.sessions.grant(scope)
        scope["state"][OWNER_KEY] = self._owner(verdict, headers.get("authorization", ""), query, cookies)
        needed = kind is Kind.API and self.policy.closed
        needed |= kind is Kind.METRICS and (self.policy.closed or bool(self.policy.metrics_token))
        if verdict is Verdict.INVALID and kind is not Kind.PAGE:
            return self._unauthorized(client, lang), None
        if needed and verdict is Verdict.NONE and not self.sessions.logged_in(cookies):
            return self._unauthorized(client, lang), None
        if websocket:
            if not self.origins.allowed_origin(headers, proxied=proxied):
                return ApiError(403, "forbidden_origin", t("api.origin", lang)), None
            return None, None
        if method in SAFE_METHODS:
            return None, None
        return await self._check_body(path, headers, client, lang, receive)

    async def _check_body(
        self, path: str, headers: dict[str, str], client: str, lang: Lang, receive: Receive
    ) -> tuple[ApiError | None, bytes | None]:
        """A write's shape and limits; the body when it was read (the route gets it replayed)."""
        route, content_type = path.rstrip("/"), headers.get("content-type", "")
        if route == "/login" and self.limiter is not None:  # Gradio's login form
            wait = self.limiter.wait(client)  # a spent budget cannot guess passwords either
            return (self._rate_refusal(wait, lang) if wait is not None else None), None
        if route in JSON_CHAT_ROUTES and not is_json(content_type):
            return ApiError(415, "unsupported_media_type", t("api.json_only", lang)), None
        if route in AUDIO_ROUTES:
            return self._spend(client, lang), None
        if route == "/gradio_api/upload":
            return self._check_upload(headers, lang), None
        body = None
        # The service's routes parse their JSON within the same bound (chat.service.bodies); any
        # other route may recurse into it, and Gradio reads a body as JSON whatever its type.
        if route.startswith("/gradio_api/") or (is_json(content_type) and not route.startswith(_SERVICE)):
            # The page sends the whole conversation with each message: far more than an API body.
            limit = max(self.settings.max_body_bytes, GRADIO_MAX_BODY)
            body = await read_body(receive, limit)
            if body is None:
                return ApiError(413, "payload_too_large", t("api.too_large", lang, limit=limit)), None
            if too_deeply_nested(body):  # json.loads would recurse once per level
                return ApiError(400, "invalid_json", t("api.too_deep", lang, limit=MAX_DEPTH)), body
        if route in JSON_CHAT_ROUTES:
            return self._admit(client, lang), body
        match = _GRADIO_RUN.match(path)
        if match is not None and self._is_gradio_chat(match.group("name"), body or b""):
            return self._admit(client, lang), body
        return None, body

    def _logout(
        self, scope: Scope, headers: dict[str, str], cookies: dict[str, str], lang: Lang, *, proxied: bool
    ) -> ApiError | None:
        """Gradio's ``/logout`` ends every session of the user: here it ends the caller's own, and
        only for the app's own page or the address bar; a token or a login header has no session."""
        if headers.get("authorization") or not self.origins.own_page(headers, proxied=proxied):
            return ApiError(403, "forbidden", t("api.logout", lang))
        self.sessions.end_own(cookies)
        scope["query_string"] = b"all_session=false"  # Gradio clears the cookies, ends nothing else
        return None

    def _owner(
        self, verdict: Verdict, authorization: str, query: dict[str, list[str]], cookies: dict[str, str]
    ) -> str | None:
        """``user:<login>`` or ``api:<token hash>``; None for an anonymous caller (``serve`` then
        gives it ``anon:<visitor id>``). The login and the token are one owner each."""
        if verdict is Verdict.VALID:
            scheme, _, value = authorization.strip().partition(" ")
            if scheme.lower() == "basic" and self.policy.login is not None:
                return f"user:{self.policy.login[0]}"
            return api_owner(value.strip() or (query.get("token") or [""])[0])
        if verdict is Verdict.NONE and self.policy.closed and self.sessions.logged_in(cookies):
            return f"user:{self.policy.login[0]}" if self.policy.login else api_owner(self.policy.token)
        return None

    def _unauthorized(self, client: str, lang: Lang) -> ApiError:
        # Every failure counts against the client's budget: guessing the password is throttled.
        if self.limiter is not None:
            wait = self.limiter.hit(client)
            if wait is not None:
                return self._rate_refusal(wait, lang)
        message = t("api.unauthorized_any", lang)
        return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": self.policy.challenge})

    def _check_upload(self, headers: dict[str, str], lang: Lang) -> ApiError | None:
        limit = self.settings.max_upload_bytes
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = 0
        if length > limit + UPLOAD_SLACK:
            return ApiError(413, "payload_too_large", t("api.upload_too_large", lang, limit=limit))
        return None  # without a length, Gradio's own max_file_size cuts the stream off

    def _is_gradio_chat(self, name: str | None, body: bytes) -> bool:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            data = {}
        fn_index = data.get("fn_index") if isinstance(data, dict) else None
        fn_id = self.sessions.fn_id(name, fn_index)
        if fn_id is None:
            return False  # Gradio answers an unknown event with an error; nothing runs
        if self._chat_fns is None:
            self._chat_fns = self.sessions.chat_fn_ids()
        return fn_id in self._chat_fns

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        refusal: ApiError,
        headers: dict[str, str],
        path: str,
        client: str,
    ) -> None:
        entry = entry_of(path)
        record = RequestRecord(entry or "rest", id=request_id(headers.get("x-request-id")), client=client)
        if entry is not None:
            self.tracker.reject(record, refusal.kind, refusal.status)
        body = refusal.body(record.id)
        if path.startswith("/gradio_api/"):
            body["detail"] = refusal.message  # what Gradio's front end shows
        payload = json.dumps(body, ensure_ascii=False).encode()
        raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        raw += [(b"x-request-id", record.id.encode())]
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in refusal.headers.items()]
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            if "websocket.http.response" in scope.get("extensions", {}):
                await send(
                    {"type": "websocket.http.response.start", "status": refusal.status, "headers": raw}
                )
                await send({"type": "websocket.http.response.body", "body": payload})
            else:
                await send({"type": "websocket.close", "code": 1008, "reason": refusal.kind})
            return
        await send({"type": "http.response.start", "status": refusal.status, "headers": raw})
        await send({"type": "http.response.body", "body": payload})


class DoorMiddleware:
    """``app.add_middleware(DoorMiddleware, door=door)``: the door before every route."""

    def __init__(self, app: ASGIApp, door: Door) -> None:
        self.app = app
        self.door = door

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            await self.door.serve(self.app, scope, receive, send)
        else:
            await self.app(scope, receive, send)
