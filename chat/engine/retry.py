"""When to try a failed backend call again: exponential backoff with jitter, bounded.

Retries happen only before the first token reaches the user (the engine enforces that).
``Retry-After`` from a 429/503 wins over the computed backoff, up to ``max_retry_after``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from chat.errors import BackendError


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Example: ``RetryPolicy(max_attempts=4, base_delay=0.5, max_delay=8, total_timeout=60)``."""

    max_attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0
    jitter: float = 0.25  # each delay is shortened by up to this fraction, at random
    max_retry_after: float = 60.0  # a server asking for a longer wait is not retried
    total_timeout: float = 120.0  # the whole request, every attempt and backend included

    def delay(self, attempt: int, error: BaseException) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up."""
        if not isinstance(error, BackendError) or not error.retryable:
            return None
        if attempt >= self.max_attempts:
            return None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return retry_after if 0 <= retry_after <= self.max_retry_after else None
        backoff = min(self.base_delay * 2 ** (attempt - 1), self.max_delay)
        return backoff * (1 - self.jitter * random.random())


NO_RETRY = RetryPolicy(max_attempts=1)
