"""Log lines a flood cannot multiply: at most one of a kind each period, the next one saying how many were held."""

from __future__ import annotations

import math
import threading
import time


class LogThrottle:
    """Whether a log line of one kind may go out now (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = -math.inf
        self._held = 0

    def allow(self, period: float) -> int | None:
        """None when a line went out less than `period` seconds ago (this one is held and counted); else the
        number of lines held since the last one, and this one may go out."""
        with self._lock:
            now = time.monotonic()
            if now - self._last < period:
                self._held += 1
                return None
            held, self._held, self._last = self._held, 0, now
            return held
