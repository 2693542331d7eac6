"""The send's pacing: a hard sliding-window bound, smooth spacing that makes up lost time, and an adaptive rate.

Separate from the send loop so tests drive it with a fake clock and never wait. Thread-safe.

- **Hard bound.** No window of `WINDOW + MARGIN + spread` seconds holds more than floor(rate) starts (at least
  one), so a peer that enforces exactly `rate` per sliding second throttles nothing, even when the network delays
  one request a little more than the next (MARGIN), or this machine does (the spread: how much the lag from a
  granted start to the request leaving varied lately, as `observe_lag` is told; a loaded CPU, a worker process
  that personalises and signs before it sends).
- **Spacing.** Starts are spaced 1/rate apart on a schedule (GCRA): a start that came late (an oversleep, a busy
  CPU) lets the next ones come sooner, up to CATCH_UP seconds' worth, so lost time is made up within the window
  instead of being lost, and never beyond the hard bound.
- **Adaptive rate (AIMD).** `throttled()` cuts the rate (once per window: one overload throttles several requests
  in flight), `succeeded()` raises it back by a small step per second of clean sending, up to the ceiling
  (the account's rate, or this sender's share of it).
- **Cap.** `cap` first attempts at most (what is left of a 24-hour quota); retries do not count.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

WINDOW = 1.0  # seconds: the peer's sliding window (SES: one second)
MARGIN = 0.03  # seconds added to it: jitter between a start and its arrival must not squeeze two windows into one
CATCH_UP = 0.1  # seconds of lost time the schedule makes up
DECREASE = 0.8  # a throttle cuts the rate to this fraction
RECOVERY = 0.04  # of the ceiling, added back per second of clean sending
LOWEST = 1.0  # messages per second the rate never goes below
QUIET = 2.0  # seconds without a throttle before the rate is raised again
LAG_MEMORY = 5.0  # seconds of observed lags the spread is taken over
MOST_SPREAD = 0.5  # seconds: the spread the window widens by at most (beyond, throttles slow the rate down)
SETTLE = WINDOW + MARGIN + MOST_SPREAD  # seconds: the longest window the limiter ever counts its starts in


class QuotaExhausted(Exception):
    """The cap on messages for this run (what is left of a 24-hour quota) is reached."""


class RateLimiter:
    """At most `rate` starts per sliding second, smoothly spaced and adapting to throttles; None: no limit."""

    def __init__(
        self,
        rate: float | None,
        *,
        cap: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.ceiling = rate
        self.rate = rate
        self.cap = cap
        self.clock = clock
        self.sleep = sleep
        self.taken = 0  # first attempts granted
        self.throttles = 0  # throttled() calls
        self._lock = threading.Lock()
        self._schedule = clock() + CATCH_UP  # GCRA's theoretical time of the next start (no burst at the start)
        self._starts: deque[float] = deque()  # the starts of the last window
        self._last_cut = -math.inf
        self._ramp: tuple[float, float] | None = None  # (began, seconds)
        # the lags of the last LAG_MEMORY seconds, as (observed at, lag), kept for a sliding maximum and minimum
        self._highest: deque[tuple[float, float]] = deque()
        self._lowest: deque[tuple[float, float]] = deque()

    @property
    def span(self) -> float:
        """The length of the window the hard bound counts in."""
        return WINDOW + MARGIN + self.spread()

    def spread(self) -> float:
        """How much the lag from a granted start to the request leaving varied over the last LAG_MEMORY seconds."""
        horizon = self.clock() - LAG_MEMORY
        for lags in (self._highest, self._lowest):
            while lags and lags[0][0] < horizon:
                lags.popleft()
        if not self._highest:
            return 0.0
        return min(MOST_SPREAD, self._highest[0][1] - self._lowest[0][1])

    def observe_lag(self, seconds: float) -> None:
        """A request left `seconds` after its start was granted (the caller stamps both with this clock)."""
        with self._lock:
            stamp = self.clock()
            while self._highest and self._highest[-1][1] <= seconds:
                self._highest.pop()
            self._highest.append((stamp, seconds))
            while self._lowest and self._lowest[-1][1] >= seconds:
                self._lowest.pop()
            self._lowest.append((stamp, seconds))

    def permits(self) -> int:
        """How many starts one window may hold at the current rate."""
        rate = self._now_rate()
        return max(1, math.floor(rate)) if rate else 0

    def ramp(self, seconds: float) -> None:
        """Start at half the rate and reach it over `seconds`: new connections answer slowly at first, and a
        slow start followed by fast ones would crowd the peer's window with arrivals that left in two. Call it
        right before the first start: the schedule starts then too, so time spent waiting is no catch-up."""
        now = self.clock()
        self._ramp = (now, seconds)
        self._schedule = max(self._schedule, now + CATCH_UP)

    def _now_rate(self) -> float:
        """The rate, as the ramp allows it now."""
        if not self.rate or self._ramp is None:
            return self.rate or 0.0
        began, seconds = self._ramp
        done = (self.clock() - began) / seconds
        if done >= 1:
            self._ramp = None
            return self.rate
        return max(LOWEST, self.rate * (0.5 + 0.5 * done))

    def delay(self, *, first: bool = True) -> float:
        """Seconds until a start is allowed (0: now); raises QuotaExhausted when a first attempt is over the cap.

        delay() then take() is for one thread (the send loop's dispatcher); threads that share a limiter call
        acquire()."""
        with self._lock:
            return self._delay(first)

    def take(self, *, first: bool = True) -> None:
        """Record a start now (after delay() said 0: time only moves on, so the bound still holds)."""
        with self._lock:
            self._take(first)

    def acquire(self, *, first: bool = True) -> None:
        """Wait for a start slot and take it; raises QuotaExhausted when a first attempt is over the cap."""
        while True:
            with self._lock:
                wait = self._delay(first)
                if not wait:
                    self._take(first)
                    return
            self.sleep(wait)

    def _delay(self, first: bool) -> float:
        if first and self.cap is not None and self.taken >= self.cap:
            raise QuotaExhausted(self.cap)
        if not self.rate:
            return 0.0
        earliest = self._schedule - CATCH_UP
        permits = self.permits()
        if len(self._starts) >= permits:
            earliest = max(earliest, self._starts[-permits] + self.span)
        return max(0.0, earliest - self.clock())

    def _take(self, first: bool) -> None:
        if first:
            self.taken += 1
        if not self.rate:
            return
        now = self.clock()
        self._schedule = max(self._schedule, now - CATCH_UP) + 1.0 / self._now_rate()
        self._starts.append(now)
        while self._starts and self._starts[0] <= now - (WINDOW + MARGIN + MOST_SPREAD):
            self._starts.popleft()

    def throttled(self) -> None:
        """The peer said we sent too fast: cut the rate (once per window) and pause the schedule one interval."""
        with self._lock:
            self.throttles += 1
            if not self.rate:
                return
            now = self.clock()
            if now - self._last_cut < self.span:
                return
            self._last_cut = now
            self.rate = max(min(LOWEST, self.ceiling or LOWEST), self.rate * DECREASE)
            self._schedule = max(self._schedule, now) + 1.0 / self.rate

    def succeeded(self) -> None:
        """A message went through: raise a cut rate back by RECOVERY x ceiling per second of such successes,
        once QUIET seconds have passed without a cut (a real limit far below the ceiling is then found by cuts
        alone, instead of being overshot again every second)."""
        with self._lock:
            if self.clock() - self._last_cut < QUIET:
                return
            if self.rate and self.ceiling and self.rate < self.ceiling:
                self.rate = min(self.ceiling, self.rate + RECOVERY * self.ceiling / self.rate)

    def set_ceiling(self, ceiling: float) -> None:
        """A new ceiling (this sender's share of the account's rate changed); a rate at the old ceiling follows it."""
        with self._lock:
            if self.ceiling is None or self.rate is None:
                return
            at_ceiling = self.rate >= self.ceiling
            self.ceiling = ceiling
            if at_ceiling or self.rate > ceiling:
                self.rate = ceiling
