"""Which browser pages may act on the app: its own, and ``--allowed-origins``.

A browser says where a request comes from: ``Origin`` on every write and WebSocket handshake,
``Sec-Fetch-Site`` on every request of a current browser. A write another site's page sent is
refused whether the app is open or not: an open app takes the operator's writes from loopback,
so any page the operator visits could send them with a script (a no-cors upload needs no
preflight). A client that is not a browser sends neither header and meets the door's other
checks alone. ``/logout`` is held to more: only the app's own page, or the address bar, may end
a session, and only its own (``GradioSessions.end_own``).
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Origins:
    """This server's origin (as the request names it) and ``--allowed-origins``."""

    def __init__(self, allowed: Sequence[str]) -> None:
        self.allowed = frozenset(origin.rstrip("/") for origin in allowed)

    def allowed_origin(self, headers: dict[str, str], *, proxied: bool) -> bool:
        """Whether the request's ``Origin`` (when it has one) is this server or an allowed one;
        behind a trusted proxy (``proxied``) this server is the host the proxy was asked for."""
        origin = headers.get("origin", "")
        if not origin:
            return True  # not a browser's write: browsers send Origin with every one
        if origin.rstrip("/") in self.allowed:
            return True
        host = headers.get("host", "")
        if proxied and headers.get("x-forwarded-host"):
            host = headers["x-forwarded-host"].split(",")[0].strip()
        return bool(host) and urlsplit(origin).netloc.lower() == host.lower()

    def cross_site(self, headers: dict[str, str], *, proxied: bool) -> bool:
        """A request a browser marks as another site's: a foreign ``Origin`` (``null`` included),
        or none and ``Sec-Fetch-Site: cross-site``."""
        if headers.get("origin"):
            return not self.allowed_origin(headers, proxied=proxied)
        return headers.get("sec-fetch-site", "").strip().lower() == "cross-site"

    def own_page(self, headers: dict[str, str], *, proxied: bool) -> bool:
        """A request from the app's own page or typed in the address bar (what ``/logout``
        needs): not another site's, and not a sibling site's either."""
        fetched_from = headers.get("sec-fetch-site", "").strip().lower()
        return fetched_from in ("", "same-origin", "none") and not self.cross_site(headers, proxied=proxied)
