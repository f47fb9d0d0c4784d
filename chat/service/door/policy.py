"""Who may come in: the login, the API token and the metrics token, compared in constant time."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from enum import Enum

from chat.settings import Settings


def _same(given: str, expected: str) -> bool:
    """Constant-time equality that does not leak the length either."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )


class Verdict(Enum):
    NONE = "none"  # no credentials sent
    VALID = "valid"
    INVALID = "invalid"


class Policy:
    """Who may come in: the login, the API token and the metrics token."""

    def __init__(self, settings: Settings) -> None:
        self.login = settings.auth_pair
        self.token = settings.api_token
        self.metrics_token = settings.metrics_token

    @property
    def closed(self) -> bool:
        return bool(self.login or self.token)

    def page_login(self, username: str, password: str) -> bool:
        """Gradio's login form: the ``--auth`` login, or with only a token, that token as password."""
        if self.login is not None:
            user, expected = self.login
            return _same(username, user) & _same(password, expected)
        return bool(self.token) and _same(password, self.token)

    def verdict(self, authorization: str, query_token: str = "", *, metrics: bool = False) -> Verdict:
        """Judge the ``Authorization`` header (or a ``?token=`` where headers cannot be set)."""
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if not scheme and query_token:
            scheme, value = "bearer", query_token
        if not scheme:
            return Verdict.NONE
        # Credentials for a lock that is not configured are no credentials: an OpenAI client always
        # sends some key, and an open app must not refuse it.
        if scheme.lower() == "bearer":
            keys = [k for k in (self.token, self.metrics_token if metrics else "") if k]
            if not keys:
                return Verdict.NONE
            ok = False
            for key in keys:
                ok |= _same(value, key)
            return Verdict.VALID if ok else Verdict.INVALID
        if scheme.lower() == "basic":
            if self.login is None:
                return Verdict.NONE
            try:
                user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return Verdict.INVALID
            ok = _same(user, self.login[0]) & _same(password, self.login[1]) & bool(sep)
            return Verdict.VALID if ok else Verdict.INVALID
        return Verdict.INVALID if self.closed else Verdict.NONE

    @property
    def challenge(self) -> str:
        return 'Basic realm="chat", charset="UTF-8"' if self.login is not None else "Bearer"
