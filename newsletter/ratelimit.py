"""A token bucket with an injected clock: at most `rate` messages in any one second, and a cap on the total.

Separate from sending.py so tests drive it with a fake clock and never wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class QuotaExhausted(Exception):
    """The cap on messages for this run (what is left of a 24-hour quota) is reached."""


class RateLimiter:
    """Spaces messages 1/rate seconds apart (a bucket of one token), so no one-second window holds more
    than `rate` of them; `cap` ends the run after that many messages."""

    def __init__(
        self,
        rate: float | None,
        *,
        cap: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.cap = cap
        self.clock = clock
        self.sleep = sleep
        self.next_at = clock()
        self.taken = 0

    def acquire(self) -> None:
        """Wait for the next slot; raise QuotaExhausted when the cap is used up."""
        if self.cap is not None and self.taken >= self.cap:
            raise QuotaExhausted(self.cap)
        now = self.clock()
        if now < self.next_at:
            self.sleep(self.next_at - now)
            now = self.next_at
        self.next_at = max(now, self.next_at) + self.interval
        self.taken += 1
