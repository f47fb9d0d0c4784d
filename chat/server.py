"""The HTTP server: one FastAPI app holding the Gradio UI and the service routes, run by uvicorn.

``python app.py`` calls ``serve()``; tests call ``start()`` and ``stop()`` on a ``Server`` to get
the exact same app on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import uvicorn
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from gradio.routes import App

from chat.engine import ChatEngine
from chat.knowledge import open_knowledge
from chat.knowledge.seed import seed_knowledge
from chat.reply.personas import load_persona_list
from chat.reply.summaries import SUMMARIZER
from chat.service import register
from chat.service.asset_cache import AssetCache
from chat.service.mcp_server import mount_mcp_server
from chat.settings import Settings
from chat.store import open_store
from chat.store.keys import visitor_key
from chat.tools.registry import open_tools
from chat.ui import I18N, ChatHandlers, build_ui
from chat.ui.branding import Branding
from chat.ui.layout import page_options


def build_app(engine: ChatEngine, settings: Settings) -> FastAPI:
    """FastAPI with the service routes first and the Gradio UI mounted at ``/``.

    Opens the conversation store (None with ``CHAT_STORE=off``) on ``app.state.store`` and the
    knowledge bases on ``app.state.knowledge``; both are closed when the server shuts down.
    Raises ``ChatError`` when the database cannot be used."""
    app = FastAPI(title="Self-hosted Chat", docs_url="/api/docs", openapi_url="/api/openapi.json")
    app.state.engine = engine
    app.state.settings = settings
    app.state.store = store = open_store(settings)
    app.router.on_shutdown.append(SUMMARIZER.close)  # summaries stop before the store closes
    if store is not None:
        app.router.on_shutdown.append(store.close)
    app.state.knowledge = knowledge = open_knowledge(settings, store)
    app.router.on_shutdown.append(knowledge.close)
    if settings.knowledge_seed:  # sample knowledge bases, into those still empty
        seed_knowledge(knowledge, Path(settings.knowledge_seed))
    personas = load_persona_list()
    if settings.mcp_config:  # the operator's MCP servers: the tool loop on every way in that answers
        engine.tools = open_tools(settings, personas)
        app.router.on_shutdown.append(engine.tools.close)

    # Gradio's JavaScript, styles and fonts from memory after the first request; added before
    # the door (chat.service.door.access), so the door, wrapped around it, still sees every request.
    app.add_middleware(AssetCache)
    # /api, /ws, /v1, /metrics, /healthz, /readyz
    service = register(
        app, engine, settings, store, visitor_key=visitor_key(settings, store), knowledge=knowledge
    )
    # CORS for --allowed-origins alone, outside the door (a preflight carries no login). With it
    # here Gradio's own stands aside: that one approves any page when the app is not on
    # localhost, and any localhost page when it is. This server's own page needs no CORS.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.allowed_origins),
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
    )
    if settings.mcp_server:  # /gradio_api/mcp/, behind the same door
        mount_mcp_server(app, service, personas, one_gradio_app)

    max_context = min(b.context_window() or settings.n_ctx for b in engine.backends.values())
    branding = Branding.from_settings(settings)
    with one_gradio_app():
        demo = build_ui(
            service.observed("gradio"),  # the same engine, counted in /metrics and the request log
            personas=personas,
            max_context=max_context,
            feedback_log=Path(settings.feedback_log) if settings.feedback_log else None,
            feedback_log_max_bytes=settings.feedback_log_max_bytes,
            cache_default=settings.cache,
            store=store,
            branding=branding,
            knowledge=knowledge,
            voice=service.voice,  # the microphone and speaker buttons (chat.ui.voice)
        )
    service.door.sessions.replies = (ChatHandlers.ui, ChatHandlers.api)  # limited like /api/chat
    demo.queue(max_size=settings.max_queue)  # its app is the one Gradio's queue reads its paths from
    quiet_queue(demo)
    return gr.mount_gradio_app(
        app,
        demo,
        path="/",
        # The page's login (the token as password when only a token is set); the door
        # (chat.service.door.access) holds every API route, Gradio's own included, to the same policy.
        auth=service.door.policy.page_login if service.door.policy.closed else None,
        max_file_size=settings.max_upload_bytes,
        i18n=I18N,
        server_name=settings.host,
        server_port=settings.port,
        footer_links=["api"],  # Gradio's own "Settings" would stand beside the page's settings
        run_history=False,  # it would keep every call, the session API key included, in the browser
        **page_options(branding),
    )


# How often Gradio's queue looks for work while it has none. Gradio 5 polls every 1 ms off
# Windows: an idle app kept 8.6% of a core busy (its event loop ran the poll 830 times a second,
# measured with nothing connected). At 10 ms a queued request starts at most 10 ms later, next to
# replies that take seconds.
QUEUE_POLL_SECONDS = 0.01


_GRADIO_APP_LOCK = threading.Lock()


@contextlib.contextmanager
def one_gradio_app() -> Iterator[None]:
    """Build Blocks without the FastAPI apps Gradio makes and throws away. Gradio builds a whole
    app (about 85 routes) each time a Blocks is created or closed, four times for our page, and
    again when it is queued; ``queue()``'s is the one kept (its queue reads the root path there).
    build_app: 0.78 s of CPU before, 0.34 s (bench/bench_startup.py). Inside, ``Blocks.app`` is None."""
    with _GRADIO_APP_LOCK:
        real = vars(App)["create_app"]  # the staticmethod itself, put back as it was
        App.create_app = staticmethod(lambda *args, **kwargs: None)
        try:
            yield
        finally:
            App.create_app = real


def quiet_queue(demo: gr.Blocks) -> None:
    """Gradio has no setting for the poll, so its attribute is set (left alone if renamed)."""
    queue = getattr(demo, "_queue", None)
    if queue is not None and getattr(queue, "sleep_when_free", None) is not None:
        queue.sleep_when_free = max(queue.sleep_when_free, QUEUE_POLL_SECONDS)


@dataclass
class Server:
    """A uvicorn server in a background thread, with an optional public share link."""

    app: FastAPI
    host: str
    port: int
    share_url: str | None = None

    def start(self, timeout: float = 30.0) -> None:
        # proxy_headers off: the door decides whose X-Forwarded-For to believe (--trusted-proxies).
        config = uvicorn.Config(
            self.app, host=self.host, port=self.port, log_level="warning", ws="auto", proxy_headers=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="uvicorn", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"could not serve on {self.host}:{self.port} (is the port in use?)")
            time.sleep(0.02)

    @property
    def local_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}/"

    def open_share_link(self) -> str:
        """Ask Gradio's share service for a public tunnel to this server (needs the internet)."""
        from gradio import networking

        self.share_url = networking.setup_tunnel(
            local_host="127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host,
            local_port=self.port,
            share_token=secrets.token_urlsafe(32),
            share_server_address=None,
            share_server_tls_certificate=None,
        )
        return self.share_url

    def _end_gradio_streams(self) -> None:
        """End Gradio's session heartbeats: they never end on their own, so an open tab or API
        client would hold a graceful shutdown for its whole grace period. Gradio's own server sets
        this event when it closes; a mounted app is left to us. The event belongs to uvicorn's
        loop, so it is set there."""
        servers = getattr(self._server, "servers", None)
        if not servers:
            return
        loop = servers[0].get_loop()
        for route in self.app.routes:
            event = getattr(getattr(route, "app", None), "stop_event", None)
            if isinstance(event, asyncio.Event):
                loop.call_soon_threadsafe(event.set)

    def wait(self) -> None:
        while self._thread.is_alive():
            self._thread.join(0.5)

    def stop(self) -> bool:
        """Stop serving; False when connections still open after 2 s had to be cut."""
        self._end_gradio_streams()
        self._server.should_exit = True
        self._thread.join(2)
        if self._thread.is_alive():  # a reply still streaming holds it
            self._server.force_exit = True
            self._thread.join(10)
        return not self._server.force_exit
