"""Who a request comes from: its client address (believing only trusted proxies), the anonymous
visitor id in a signed cookie, and the owner whose conversations it may see."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets

from starlette.requests import HTTPConnection
from starlette.types import Scope

from chat.settings import Settings

CLIENT_KEY = "chat_client"  # scope["state"][CLIENT_KEY]: the client's identity for limits and logs
OWNER_KEY = "chat_owner"  # scope["state"][OWNER_KEY]: whose conversations the request may see
VISITOR_COOKIE = "chat_visitor"
OPERATOR_KEY = "chat_operator"  # scope["state"][OPERATOR_KEY]: may manage the operator's data
# headers a proxy adds: a request with any of them came through one, listed or not
FORWARDING_HEADERS = ("x-forwarded-for", "x-real-ip", "forwarded", "x-forwarded-host")


def api_owner(token: str) -> str:
    """The owner a bearer token stands for: a prefix of its hash, never the token itself."""
    return "api:" + hashlib.sha256(token.encode()).hexdigest()[:16]


def is_operator(conn: HTTPConnection) -> bool:
    """Whether this request may change what every user relies on (the knowledge bases), as the
    door decided: anyone who passed a configured login or token, else only a client on the
    server's own machine (never through ``--share``, where every visitor arrives from loopback,
    nor through a proxy, which may stand on the same machine)."""
    return bool(conn.scope.get("state", {}).get(OPERATOR_KEY))


def owner_of(conn: HTTPConnection) -> str:
    """Whose conversations this request may see, as the door decided: ``user:<login>``,
    ``api:<token hash>`` or ``anon:<visitor id>`` (the signed ``chat_visitor`` cookie)."""
    owner = conn.scope.get("state", {}).get(OWNER_KEY)
    if not owner:  # only a route the door did not stand before (a unit test's bare app)
        raise RuntimeError("the request did not pass the door: it has no owner")
    return owner


class Identity:
    """The client behind a request: the socket's address, a trusted proxy's word, or a visitor id."""

    def __init__(self, settings: Settings, secret: bytes) -> None:
        self.trusted = [ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies]
        self.share = settings.share
        self._secret = secret

    def is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.trusted)

    def address(self, scope: Scope, headers: dict[str, str]) -> str:
        peer = peer_address(scope)
        if not self.is_trusted(peer):
            return peer
        hops = [h.strip() for h in headers.get("x-forwarded-for", "").split(",") if h.strip()]
        for hop in reversed(hops):  # the right-most entry no trusted proxy added is the client
            if not self.is_trusted(hop):
                return _valid_ip(hop) or peer
        real = _valid_ip(headers.get("x-real-ip", "").strip())
        return real or (hops[0] if hops and _valid_ip(hops[0]) else peer)

    def visitor(self, cookies: dict[str, str]) -> str | None:
        """The id in a valid ``chat_visitor`` cookie (None when missing or forged)."""
        value, _, mac = cookies.get(VISITOR_COOKIE, "").partition(".")
        if value and mac and hmac.compare_digest(mac, self._sign(value)):
            return value
        return None

    def new_visitor_cookie(self) -> str:
        return self.mint()[1]

    def mint(self) -> tuple[str, str]:
        """A new visitor id and the ``Set-Cookie`` value that hands it to the browser."""
        value = secrets.token_urlsafe(16)
        cookie = (
            f"{VISITOR_COOKIE}={value}.{self._sign(value)}; Path=/; Max-Age=2592000; HttpOnly; SameSite=Lax"
        )
        return value, cookie

    def _sign(self, value: str) -> str:
        return hmac.new(self._secret, value.encode(), hashlib.sha256).hexdigest()[:32]

    def forwarded(self, scope: Scope, headers: dict[str, str]) -> bool:
        """A request that came through a proxy: from a ``--trusted-proxies`` peer, or carrying a
        proxy's headers (an unlisted proxy on this machine would make every visitor local)."""
        return self.is_trusted(peer_address(scope)) or any(h in headers for h in FORWARDING_HEADERS)

    def is_local(self, address: str) -> bool:
        """A client on this machine (not a proxied or shared-link visitor)."""
        return not self.share and _loopback(address)

    def keyed_on_visitor(self, address: str) -> bool:
        """Behind ``--share`` the tunnel arrives from loopback: there the address tells no one apart."""
        return self.share and _loopback(address)


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _valid_ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def peer_address(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"
