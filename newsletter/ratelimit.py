"""A rate limiter with an injected clock: at most `rate` messages in any one second, and a cap on the total.

Separate from sending.py so tests drive it with a fake clock and never wait.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class QuotaExhausted(Exception):
    """The cap on messages for this run (what is left of a 24-hour quota) is reached."""


class RateLimiter:
    """Spaces messages 1/rate seconds apart and, as a hard bound, lets no one-second window hold more than
    `rate` of them (a late message cannot make the next ones bunch up); `cap` ends the run after that many."""

    def __init__(
        self,
        rate: float | None,
        *,
        cap: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.per_second = max(1, int(rate)) if rate else 0
        self.cap = cap
        self.clock = clock
        self.sleep = sleep
        self.next_at = clock()
        self.recent: deque[float] = deque()  # when the last `per_second` messages left
        self.taken = 0

    def acquire(self) -> None:
        """Wait for the next slot; raise QuotaExhausted when the cap is used up."""
        if self.cap is not None and self.taken >= self.cap:
            raise QuotaExhausted(self.cap)
        if self.interval:
            wait_until = self.next_at
            if len(self.recent) >= self.per_second:
                wait_until = max(wait_until, self.recent[0] + 1.0)
            now = self.clock()
            if now < wait_until:
                self.sleep(wait_until - now)
                now = max(self.clock(), wait_until)
            self.next_at = now + self.interval
            self.recent.append(now)
            if len(self.recent) > self.per_second:
                self.recent.popleft()
        self.taken += 1
