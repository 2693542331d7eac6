"""The rate limiter on a fake clock: the sliding-window bound, lost time made up, AIMD, the cap, threads."""

from __future__ import annotations

import bisect
import random
import threading

import pytest

from newsletter.ratelimit import DECREASE, MARGIN, QUIET, RECOVERY, WINDOW, QuotaExhausted, RateLimiter


class FakeClock:
    """A clock that moves only when someone sleeps, by what they slept plus an optional oversleep."""

    def __init__(self, oversleep=lambda: 0.0) -> None:
        self.now = 0.0
        self.oversleep = oversleep

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds + self.oversleep()


def busiest(stamps: list[float], window: float = WINDOW) -> int:
    """The most starts in any half-open window of `window` seconds (what a strict peer counts)."""
    ordered = sorted(stamps)
    return max(bisect.bisect_left(ordered, start + window) - i for i, start in enumerate(ordered))


def _starts(limiter: RateLimiter, clock: FakeClock, count: int, *, work: float = 0.0) -> list[float]:
    stamps = []
    for _ in range(count):
        limiter.acquire()
        stamps.append(clock.now)
        clock.now += work
    return stamps


@pytest.mark.parametrize("rate", [0.5, 1, 14, 14.7, 100, 500])
def test_no_sliding_window_holds_more_than_the_rate(rate: float) -> None:
    chooser = random.Random(7)
    clock = FakeClock(lambda: chooser.choice([0.0, 0.0, 0.004, 0.03]))  # oversleeps, as under load
    limiter = RateLimiter(rate, clock=clock, sleep=clock.sleep)
    stamps = _starts(limiter, clock, int(max(rate, 1) * 6))
    assert busiest(stamps, WINDOW + MARGIN) <= max(1, int(rate))
    assert busiest(stamps) <= max(1, int(rate))


def test_oversleeps_are_made_up_within_the_window() -> None:
    """The old limiter lost every oversleep (50/s came out at 42-46/s under load); this one keeps the pace."""
    chooser = random.Random(3)
    clock = FakeClock(lambda: chooser.uniform(0, 0.006))  # up to 6 ms late on every wake-up
    limiter = RateLimiter(50, clock=clock, sleep=clock.sleep)
    stamps = _starts(limiter, clock, 500)
    achieved = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    assert achieved >= 50 * WINDOW / (WINDOW + MARGIN) * 0.99
    assert busiest(stamps) <= 50


def test_starts_are_spaced_not_bunched() -> None:
    clock = FakeClock()
    limiter = RateLimiter(20, clock=clock, sleep=clock.sleep)
    stamps = _starts(limiter, clock, 40)
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert min(gaps) >= 1 / 20 - 1e-9  # on time, the starts are evenly spaced: no burst, at the start neither
    assert max(gaps) <= 1 / 20 + MARGIN + 1e-9


def test_a_throttle_cuts_the_rate_once_per_window_and_clean_sending_recovers_it() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100, clock=clock, sleep=clock.sleep)
    limiter.throttled()
    limiter.throttled()  # the same overload, seen by another request in flight
    assert limiter.rate == pytest.approx(100 * DECREASE) and limiter.throttles == 2
    seconds = 0.0
    while limiter.rate < limiter.ceiling:
        limiter.acquire()
        limiter.succeeded()
        seconds = clock.now
    expected = QUIET + (1 - DECREASE) / RECOVERY  # a quiet spell, then RECOVERY x ceiling per second
    assert expected * 0.8 <= seconds <= expected * 1.3
    assert limiter.rate == 100


def test_the_rate_never_falls_below_one_per_second() -> None:
    clock = FakeClock()
    limiter = RateLimiter(5, clock=clock, sleep=clock.sleep)
    for _ in range(40):
        limiter.throttled()
        clock.now += 2 * WINDOW
    assert limiter.rate == 1.0


def test_a_lower_ceiling_applies_at_once_and_a_higher_one_is_followed() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100, clock=clock, sleep=clock.sleep)
    limiter.set_ceiling(50)  # a second sender joined
    assert (limiter.ceiling, limiter.rate) == (50, 50)
    limiter.set_ceiling(100)  # it finished
    assert limiter.rate == 100


def test_the_cap_counts_first_attempts_only() -> None:
    limiter = RateLimiter(None, cap=3)
    for _ in range(3):
        limiter.acquire()
    limiter.acquire(first=False)  # a retry of a throttled message: not another message of the day's quota
    with pytest.raises(QuotaExhausted):
        limiter.acquire()


def test_threads_share_one_bound() -> None:
    """Four threads acquiring at once on the real clock still keep to the window."""
    limiter = RateLimiter(200)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(60):
            limiter.acquire()
            with lock:
                stamps.append(limiter.clock())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(stamps) == 240
    assert busiest(stamps) <= 200


def test_a_real_limit_far_below_the_ceiling_is_found() -> None:
    """SES reports 200/s but takes 10/s: the rate must come down to the real limit, not hover at twice it."""
    clock = FakeClock()
    limiter = RateLimiter(200, clock=clock, sleep=clock.sleep)
    accepted: list[float] = []
    for _ in range(1500):
        limiter.acquire()
        window = [t for t in accepted if t > clock.now - 1.0]
        if len(window) >= 10:
            limiter.throttled()
        else:
            accepted.append(clock.now)
            limiter.succeeded()
    assert limiter.rate <= 15


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_requests_that_leave_late_by_varying_amounts_still_arrive_within_the_rate(seed: int) -> None:
    """Under load a request leaves some time after its start was granted (a worker process personalises and
    signs it first), by more for some than for others: the window widens by how much the lag varied, so the
    arrivals a strict peer counts keep to the rate. (A fixed window let 205 into one second at a quota of 200.)"""
    chooser = random.Random(seed)
    clock = FakeClock()
    limiter = RateLimiter(100, clock=clock, sleep=clock.sleep)
    arrivals, worst = [], 0
    for n in range(1200):
        limiter.acquire()
        # bursts of lateness: a slow stretch (up to 80 ms), then prompt requests that catch up on it
        lag = chooser.uniform(0.05, 0.08) if (n // 40) % 2 else chooser.uniform(0.0, 0.005)
        arrivals.append(clock.now + lag)
        limiter.observe_lag(lag)  # told as the answer comes back
        if n >= 100:  # once the first lags are known
            worst = max(worst, busiest([a for a in arrivals if a >= arrivals[100]]))
    assert worst <= 100
    assert limiter.spread() == pytest.approx(0.08, abs=0.005)


def test_the_lag_spread_is_forgotten_after_a_while() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100, clock=clock, sleep=clock.sleep)
    limiter.observe_lag(0.0)
    limiter.observe_lag(0.2)
    assert limiter.span == pytest.approx(WINDOW + MARGIN + 0.2)
    clock.now += 10
    limiter.observe_lag(0.01)
    assert limiter.span == pytest.approx(WINDOW + MARGIN)


def test_a_ramp_begins_when_it_is_called_so_a_wait_before_it_is_no_head_start() -> None:
    """A second sender waits for the others to lower their shares before its first start; a ramp (and the
    schedule's catch-up) counted from before that wait would be over when it starts, and it would start at full
    rate on new connections."""
    clock = FakeClock()
    limiter = RateLimiter(100, clock=clock, sleep=clock.sleep)
    clock.now += 5.0  # the wait
    limiter.ramp(2.0)
    begin = clock.now
    stamps = _starts(limiter, clock, 60)
    first_second = [at for at in stamps if at < begin + 1.0]
    assert len(first_second) <= 0.75 * 100 + 1  # half the rate climbing towards it, not the full rate


def test_a_finished_sender_counts_for_the_longest_window_a_limiter_counts_in() -> None:
    from newsletter.ratelimit import SETTLE
    from newsletter.store.senders import TAIL

    assert TAIL.total_seconds() >= SETTLE
