"""The page's Gradio login, read and granted, and which Gradio events start a reply."""

from __future__ import annotations

import inspect
import secrets
from typing import Any

from starlette.types import Scope


class GradioSessions:
    """The page's Gradio login, read and (for Basic/bearer callers) granted.

    Gradio keeps logged-in sessions in its ``App.tokens``, keyed by the ``access-token-<id>``
    cookie. A caller the door let in by HTTP Basic or bearer token gets the door's own session
    cookie added to the request, so Gradio's routes see a logged-in user too.
    """

    def __init__(self, host_app: Any, user: str) -> None:
        self.host = host_app
        self._user = user
        self._app: Any = None
        self._token = secrets.token_urlsafe(32)
        # The page's functions that start a reply, named by the assembly (chat.server): the door
        # sits below the page and does not import it.
        self.replies: tuple[Any, ...] = ()

    def _gradio(self) -> Any:
        if self._app is None:
            from gradio.routes import App

            for route in getattr(self.host, "routes", []):
                if isinstance(getattr(route, "app", None), App):
                    self._app = route.app
                    break
        return self._app

    def logged_in(self, cookies: dict[str, str]) -> bool:
        app = self._gradio()
        return app is not None and any(token in app.tokens for token in _session_tokens(app, cookies))

    def end_own(self, cookies: dict[str, str]) -> None:
        """Forget the sessions in this request's own cookies; the user's other browsers, and the
        session the door grants to token callers, stay logged in."""
        app = self._gradio()
        for token in _session_tokens(app, cookies) if app is not None else []:
            if token != self._token:
                app.tokens.pop(token, None)

    def grant(self, scope: Scope) -> None:
        app = self._gradio()
        if app is None:
            return
        app.tokens[self._token] = self._user  # again each time: no login or logout elsewhere ends it
        cookie = f"access-token-{app.cookie_id}={self._token}".encode()
        headers = [(k, v) for k, v in scope["headers"] if k != b"cookie"]
        old = [v for k, v in scope["headers"] if k == b"cookie"]
        headers.append((b"cookie", b"; ".join([*old, cookie])))
        scope["headers"] = headers

    def chat_fn_ids(self) -> set[int]:
        """The Gradio events that start a reply: the page's chat (send, retry, edit) and ``/chat``."""
        app = self._gradio()
        if app is None:
            return set()
        replies = self.replies
        fns = app.get_blocks().fns
        # ChatInterface wraps the page's handler (functools.wraps): look through the wrapper.
        return {i for i, fn in fns.items() if getattr(_unwrap(fn.fn), "__func__", None) in replies}

    def fn_id(self, api_name: str | None, fn_index: Any) -> int | None:
        app = self._gradio()
        if app is None:
            return None
        fns = app.get_blocks().fns
        if isinstance(fn_index, int) and not isinstance(fn_index, bool):
            return fn_index if fn_index in fns else None
        if api_name:
            return next((i for i, fn in fns.items() if fn.api_name == api_name), None)
        return None


def _session_tokens(app: Any, cookies: dict[str, str]) -> list[str]:
    names = (f"access-token-{app.cookie_id}", f"access-token-unsecure-{app.cookie_id}")
    return [cookies[name] for name in names if cookies.get(name)]


def _unwrap(fn: Any) -> Any:
    return inspect.unwrap(fn) if callable(fn) else fn
