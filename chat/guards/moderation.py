"""Optional external moderation: an OpenAI-compatible ``/moderations`` endpoint.

Off by default. When on, it fails closed: if the service cannot give an answer after a
bounded number of attempts, the text counts as not approved, so an outage never lets
unchecked content through. The API key is sent in a header and never logged or raised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

import httpx

log = logging.getLogger(__name__)


class ModerationUnavailable(Exception):
    """No verdict could be had (network, timeout, 5xx, 429, malformed answer, bad credentials)."""


class Moderation(Protocol):
    def flagged(self, text: str) -> bool:
        """True to refuse ``text``; raise ``ModerationUnavailable`` when there is no verdict."""


class ModerationClient:
    """POST ``{"input": text}`` to ``<base>/moderations``; any result with ``flagged`` refuses."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str = "",
        model: str = "",
        timeout: float = 10.0,
        attempts: int = 3,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        url = url.rstrip("/")
        self.url = url if url.endswith("/moderations") else url + "/moderations"
        self.model = model
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self._sleep = sleep
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout, headers=headers, transport=transport)

    def flagged(self, text: str) -> bool:
        body: dict[str, str] = {"input": text}
        if self.model:
            body["model"] = self.model
        problem = ""
        for attempt in range(1, self.attempts + 1):
            try:
                response = self._client.post(self.url, json=body)
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
            else:
                if response.status_code == 200:
                    return _verdict(response)
                problem = f"HTTP {response.status_code}"
                if response.status_code not in (408, 429) and response.status_code < 500:
                    break  # a client error will not get better by asking again
            log.warning("moderation attempt %d/%d failed: %s", attempt, self.attempts, problem)
            if attempt < self.attempts:
                self._sleep(self.backoff * 2 ** (attempt - 1))
        raise ModerationUnavailable(problem)

    def close(self) -> None:
        self._client.close()


def _verdict(response: httpx.Response) -> bool:
    try:
        results = response.json()["results"]
        if not isinstance(results, list) or not results:
            raise ValueError("no results")
        return any(bool(r["flagged"]) for r in results)
    except (ValueError, KeyError, TypeError):
        raise ModerationUnavailable("malformed moderation response") from None
