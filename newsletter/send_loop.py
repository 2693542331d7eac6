"""The send loop: one dispatching thread feeds a pool of workers, paced by the rate limiter, and records results
in groups.

The dispatcher (the caller's thread) claims deliveries in batches, takes the last look at each subscriber at most
LOOK_FRESH seconds before the message leaves, waits for a rate-limit slot, and hands the delivery to a worker,
which personalises the message and makes one attempt through the transport. Results come back on a queue; the
dispatcher decides what is tried again (through the limiter, like a first attempt) and records the rest in groups.

How many requests are in flight follows from Little's law: rate x round trip x 1.5, plus one (the round trip:
the least time of the last 200 answers), capped by
the transport's `max_in_flight` (n). A message is *uncertain* from the moment its request leaves until its result
is handled, unless the peer then said it did not take it; no more than n are uncertain at once, and results are
written at the latest when RECORD_GROUP wait. So a SIGKILL leaves at most n + RECORD_GROUP - 1 messages that may
have gone out without the send log knowing (`crash_bound`): a resume sends those again, and nothing else twice.

A peer that seems down (OUTAGE_REFUSALS refusals in a row, nothing taken for OUTAGE_SECONDS) stops the run: the
messages not yet taken wait for a later run, as after Ctrl-C, instead of each being tried and deferred.
"""

from __future__ import annotations

import functools
import heapq
import math
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import sqlalchemy as sa

from .errors import TransportError
from .messages import MessageError, MessageTemplate, Recipient
from .ratelimit import RateLimiter
from .reputation import Pause, ReputationGuard
from .send_processes import PER_PROCESS_RATE, LaneError, ProcessLanes
from .store import Delivery, DeliveryState, Result, SendLog, Store, heartbeat
from .transports.base import OutgoingMessage, SendResult, SendStatus, Transport

BATCH = 200  # deliveries claimed per transaction
RECORD_GROUP = 50  # results written per transaction at most
RECORD_DELAY = 0.1  # seconds the dispatcher waits for answers before it looks at its other work again
# Seconds a result waits at most before it is written. A fast send fills its group of RECORD_GROUP long before;
# at a low rate each group would otherwise be a transaction for one or two results.
RECORD_AGE = 0.5
LOOK_FRESH = 0.1  # seconds: the last look at a subscriber is at most this old when their message leaves
LOOK_AHEAD = 64  # subscribers looked at in one query at most (those due to leave within LOOK_FRESH)
HEARTBEAT = 0.5  # seconds between heartbeats (leases, the rate's share)
HEARTBEAT_ALONE = 5.0  # on SQLite, where no other sender can share the rate, only the leases (30 s) need them
GUARD_EVERY = 2.0  # seconds between the reputation guard's looks at the bounces and complaints applied
IN_FLIGHT_SPARE = 1.5  # requests in flight: the rate x the round trip x this, plus one
LATENCY_SAMPLES = 200  # answers the round trip is measured over
AHEAD_SECONDS = 0.04  # a message is handed to a worker at most this long before its rate-limit slot
AHEAD_MOST = 16  # and at most this many at once
AHEAD_WAIT = 0.002  # seconds the dispatcher waits when that many are ahead
HAND_EARLY = 0.002  # a message is handed over this close to its slot (the worker waits the rest), not woken again
MAX_THROTTLED = 12  # throttles of one message before it is deferred to a later run
MAX_RETRIES = 4  # RETRY answers of one message before it is deferred
BACKOFF = 0.2  # seconds, doubled per retry (full jitter), at most BACKOFF_CAP
BACKOFF_CAP = 10.0
# A peer that refuses this many requests in a row (RETRY: a 5xx, no connection), none taken for this long, is down:
# the run stops (the rest wait for a later run) instead of trying each message MAX_RETRIES times.
OUTAGE_REFUSALS = 100
OUTAGE_SECONDS = 5.0
DATABASE_PATIENCE = 60.0  # seconds the loop waits for a database that went away before it stops

_T = TypeVar("_T")


def crash_bound(max_in_flight: int) -> int:
    """The most messages that can have left without the send log knowing: what a resume after a crash may repeat."""
    return max_in_flight + RECORD_GROUP - 1


@dataclass
class Progress:
    """Counts of the run so far, for the progress bar and the summary."""

    total: int  # messages this run means to hand over
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    skipped: int = 0
    unknown: int = 0  # no answer, and not tried again (ambiguous_retries)
    throttled: int = 0  # throttled answers (each retried through the limiter, never counted as sent)
    retried: int = 0  # attempts made again after a RETRY or ambiguous answer
    ambiguous: int = 0  # attempts whose request left and whose answer never came
    peak_in_flight: int = 0
    attempts: int = 0  # requests made, each answered or not
    by_processes: int = 0  # of those, made by worker processes (see send_processes)
    started: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.deferred + self.skipped + self.unknown

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else 0.0


@dataclass
class _Attempt:
    """One delivery on its way, with what this run learned about it."""

    delivery: Delivery
    looked_at: float = -math.inf
    uncertain: bool = False  # a request left that the peer may have taken, and no result is recorded yet
    outgoing: tuple[OutgoingMessage, str] | None = None  # the personalised message and its Message-ID
    message_id: str | None = None
    throttles: int = 0
    retries: int = 0
    ambiguous: int = 0
    error: str = ""


@dataclass
class _Answer:
    attempt: _Attempt
    result: SendResult | None
    error: BaseException | None
    seconds: float
    granted_at: float  # when the rate limiter gave its start (time.monotonic())
    via_lanes: bool | None  # made by a worker process (True) or here (False); None: no request was made


class LoopStopped(Exception):
    """Why the loop had to stop early (a transport error, the quota, the database)."""


@dataclass
class SendLoop:
    """One sender's run over an issue's send log."""

    store: Store
    log: SendLog
    transport: Transport
    messages: dict[str, MessageTemplate]
    recipient: Callable[[Delivery], Recipient]
    sender_address: str
    issue: str
    default_lang: str
    limiter: RateLimiter
    account_rate: float | None  # the rate all senders share (their ceilings add up to it)
    cap: int | None  # first attempts this run may make (what is left of the 24-hour quota)
    ambiguous_retries: int
    progress: Progress
    stop: threading.Event | None = None
    on_progress: Callable[[Progress], None] | None = None
    latency: float = 0.05  # seconds per request, observed (an initial guess until the first answers)
    processes: int = 1  # worker processes that may make the attempts (1: this process's threads; send_processes)
    guard: ReputationGuard | None = None
    paused: Pause | None = field(default=None, init=False)  # why the guard paused the run
    _guard_done: threading.Event = field(default_factory=threading.Event)
    lanes: ProcessLanes | None = field(default=None, init=False)
    _answers: queue.SimpleQueue[_Answer] = field(default_factory=queue.SimpleQueue)
    _work_queue: queue.SimpleQueue[_Attempt | None] = field(default_factory=queue.SimpleQueue)
    _claimed: deque[_Attempt] = field(default_factory=deque)
    _retries: list[tuple[float, int, _Attempt]] = field(default_factory=list)
    _results: list[Result] = field(default_factory=list)
    _oldest_result: float = 0.0
    _in_flight: int = 0
    _uncertain: int = 0  # attempts that are uncertain (see the module's docstring)
    _exhausted: bool = False  # the send log has nothing more to claim
    _heartbeat_at: float = 0.0
    _sequence: int = 0
    # The last answers' times: their least is the round trip (the others add this machine's own queueing, which
    # more requests in flight would only lengthen).
    _latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    _first_attempts: int = 0
    _refused_in_a_row: int = 0  # RETRY answers since the last other answer (see OUTAGE_REFUSALS)
    _last_taken: float = field(default_factory=time.monotonic)  # when the peer last took a message (or the start)
    # Messages handed to workers that have not yet taken their slot (see _ahead_limit).
    _ahead: int = 0
    _ahead_lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def run(self) -> str | None:
        """Send until nothing is left, a stop is asked for, or something stops the run; returns why it stopped."""
        if self.processes > 1:
            lanes = max(1, self.transport.max_in_flight)
            self.lanes = ProcessLanes(lanes, self.processes, self.transport, self.prepare)
            self.lanes.start()  # forks: before any thread of this loop starts
        stopped: str | None = None
        try:
            if self.guard is not None:
                self._database(self.guard.start)
                threading.Thread(target=self._watch, args=(self.guard,), name="send-guard", daemon=True).start()
            stopped = self._dispatch()
        except LoopStopped as err:
            stopped = str(err)
        finally:
            self._guard_done.set()
            try:
                self._finish(stopped is None)
            finally:
                for _ in self._workers:
                    self._work_queue.put(None)
                if self.lanes is not None:
                    self.lanes.close()
                self.log.close()
        return stopped

    # ------------------------------------------------------------------ dispatching

    def _dispatch(self) -> str | None:
        while True:
            self._collect(0.0)
            self._flush_if_due()
            self._heartbeat_if_due()
            if self.stop is not None and self.stop.is_set():
                return "stopped on request"
            if self.paused is not None:  # set by the guard's thread
                return self.paused.reason
            if self._in_flight >= self._in_flight_target() or self._uncertain >= self.transport.max_in_flight:
                self._collect(RECORD_DELAY)
                continue
            attempt, first = self._next()
            if attempt is None:
                if not self._in_flight and not self._retries:
                    return None
                due = self._retries[0][0] - time.monotonic() if self._retries else RECORD_DELAY
                self._collect(min(RECORD_DELAY, max(0.0, due)))
                continue
            if first and self.cap is not None and self._first_attempts >= self.cap:
                self._put_back(attempt, first)
                return "the 24-hour sending quota is used up"
            wait = self.limiter.delay()
            if wait > HAND_EARLY or self._ahead >= self._ahead_limit():
                self._put_back(attempt, first)
                # ahead is full: the next hand-over is due one slot after the last one handed over is taken
                pause = max(AHEAD_WAIT, 1 / self.limiter.rate) if self.limiter.rate else AHEAD_WAIT
                self._idle(min(wait if wait > HAND_EARLY else pause, RECORD_DELAY))
                continue
            if not self._looked_at_lately(attempt):
                continue  # the subscriber left: recorded as skipped, the slot is still free
            with self._ahead_lock:
                self._ahead += 1
            self._first_attempts += first
            self._set_uncertain(attempt, True)
            self._in_flight += 1
            self.progress.peak_in_flight = max(self.progress.peak_in_flight, self._in_flight)
            if self._in_flight > len(self._workers):  # every worker may be busy: one more (never above the cap)
                self._start_worker()
            self._work_queue.put(attempt)

    def _ahead_limit(self) -> int:
        """How many messages may wait in workers for their slot: those whose slots come within AHEAD_SECONDS,
        so the dispatcher never runs ahead of the limiter and a look is at most that much older than its slot."""
        if not self.limiter.rate:
            return AHEAD_MOST
        return max(1, min(AHEAD_MOST, math.floor(self.limiter.rate * AHEAD_SECONDS)))

    def _in_flight_target(self) -> int:
        """Little's law: enough requests in flight to keep the rate, with half to spare, within the cap."""
        cap = max(1, self.transport.max_in_flight)
        if not self.limiter.rate:
            return cap
        round_trip = min(self._latencies) if self._latencies else self.latency
        return max(1, min(cap, math.ceil(self.limiter.rate * round_trip * IN_FLIGHT_SPARE) + 1))

    def _next(self) -> tuple[_Attempt | None, bool]:
        """A retry whose time has come, else the next claimed delivery (claiming a batch when none is left)."""
        if self._retries and self._retries[0][0] <= time.monotonic():
            return heapq.heappop(self._retries)[2], False
        if not self._claimed and not self._exhausted:
            batch = self._database(lambda: self.log.claim(BATCH))
            self._claimed.extend(_Attempt(delivery) for delivery in batch)
            self._exhausted = not batch
        if self._claimed:
            return self._claimed.popleft(), True
        return None, True

    def _put_back(self, attempt: _Attempt, first: bool) -> None:
        if first:
            self._claimed.appendleft(attempt)
        else:
            self._retry_at(attempt, time.monotonic())

    def _retry_at(self, attempt: _Attempt, when: float) -> None:
        self._sequence += 1
        heapq.heappush(self._retries, (when, self._sequence, attempt))

    def _looked_at_lately(self, attempt: _Attempt) -> bool:
        """The last look: if the subscriber was not looked at within LOOK_FRESH, look again, with the next
        claimed ones in the same query; False (and the delivery skipped) if they left."""
        now = time.monotonic()
        if now - attempt.looked_at <= LOOK_FRESH:
            return True
        ahead = LOOK_AHEAD if not self.limiter.rate else min(LOOK_AHEAD, math.ceil(self.limiter.rate * LOOK_FRESH))
        group = [attempt] + [a for a in list(self._claimed)[:ahead] if now - a.looked_at > LOOK_FRESH]
        departed = self._database(lambda: self.log.gone({a.delivery.subscriber_id for a in group}))
        gone = [a for a in group if a.delivery.subscriber_id in departed]
        for looked in group:
            looked.looked_at = now
        for left in gone:
            if left is not attempt:
                self._claimed.remove(left)
            self._record(left, DeliveryState.SKIPPED, error="subscriber left before sending")
            self.progress.skipped += 1
            self._report()
        return attempt not in gone

    # ------------------------------------------------------------------ the workers

    def _start_worker(self) -> None:
        """Start worker n (lane n): as many as have been in flight at once, up to the transport's max_in_flight, so
        a slow send keeps a few threads busy (their caches warm) instead of handing each message to the next of
        128."""
        lane = len(self._workers)
        worker = threading.Thread(target=self._work, args=(lane,), name=f"send-{lane}", daemon=True)
        self._workers.append(worker)
        worker.start()

    def _work(self, lane: int) -> None:
        """A worker thread: attempts until it is handed None."""
        while (attempt := self._work_queue.get()) is not None:
            self._attempt_once(attempt, lane)

    def prepare(self, delivery: Delivery) -> tuple[OutgoingMessage, str]:
        """The message for `delivery`, and its Message-ID."""
        lang = delivery.lang if delivery.lang in self.messages else self.default_lang
        pieces, message_id = self.messages[lang].pieces_for(self.recipient(delivery))
        outgoing = OutgoingMessage(
            self.sender_address, delivery.email, pieces, self.issue, delivery.lang, tracking=delivery.tracking
        )
        return outgoing, message_id

    def _through_lanes(self) -> bool:
        """Whether the next attempt goes to a worker process: while this sender's share of the rate (the limiter's
        ceiling, lowered as other senders join) is more than one process keeps."""
        return self.lanes is not None and (self.limiter.ceiling or 0) > PER_PROCESS_RATE

    def _attempt_once(self, attempt: _Attempt, lane: int) -> None:
        """Personalise (once), take the rate-limit slot, and make one attempt at once, here or in a worker
        process's lane; the answer goes back to the dispatcher. The slot is taken as late as can be, right before
        the request, because the peer counts arrivals."""
        started = time.monotonic()
        result: SendResult | None = None
        error: BaseException | None = None
        via_lanes = self._through_lanes()
        made: bool | None = None
        try:
            try:
                if not via_lanes:
                    attempt.outgoing = attempt.outgoing or self.prepare(attempt.delivery)
                self.limiter.acquire()
            finally:
                with self._ahead_lock:
                    self._ahead -= 1
            started = time.monotonic()
            made = via_lanes
            if via_lanes:
                assert self.lanes is not None
                result, attempt.message_id = self.lanes.attempt(lane, attempt.delivery)
            else:
                assert attempt.outgoing is not None
                result = self.transport.send(attempt.outgoing[0])
                attempt.message_id = attempt.outgoing[1]
        except BaseException as err:  # noqa: BLE001 - handed to the dispatcher, which decides
            result, error = None, err
        self._answers.put(_Answer(attempt, result, error, time.monotonic() - started, started, made))

    def _idle(self, seconds: float) -> None:
        """Wait for the next slot. While fewer requests are in flight than wanted, nothing an answer brings is
        needed before then: sleep, and handle the answers that came when it ends (one wake-up instead of one per
        answer: at a low rate the loop's CPU is mostly its wake-ups). Otherwise wait for an answer."""
        if self._in_flight < self._in_flight_target() and self._uncertain < self.transport.max_in_flight:
            time.sleep(seconds)
            self._collect(0.0)
        else:
            self._collect(seconds)

    # ------------------------------------------------------------------ answers

    def _collect(self, timeout: float) -> None:
        """Handle the answers that came (waiting up to `timeout` for the first)."""
        try:
            answer = self._answers.get(timeout=timeout) if timeout > 0 else self._answers.get_nowait()
        except queue.Empty:
            return
        while True:
            self._in_flight -= 1
            self._handle(answer)
            try:
                answer = self._answers.get_nowait()
            except queue.Empty:
                return

    def _handle(self, answer: _Answer) -> None:
        attempt, result = answer.attempt, answer.result
        if answer.via_lanes is not None:
            self.progress.attempts += 1
            self.progress.by_processes += answer.via_lanes
        if answer.error is not None:
            if isinstance(answer.error, MessageError):
                self._record(attempt, DeliveryState.FAILED, error=str(answer.error))
                self.progress.failed += 1
                return self._report()
            if isinstance(answer.error, LaneError):  # a worker process died: the request may have left
                attempt.ambiguous += 1
                self._retry_at(attempt, math.inf)  # given back by _finish
                raise LoopStopped(str(answer.error))
            if isinstance(answer.error, TransportError):  # it did not leave
                self._set_uncertain(attempt, attempt.ambiguous > 0)
                self._retry_at(attempt, math.inf)  # given back by _finish
                raise LoopStopped(str(answer.error))
            raise answer.error
        assert result is not None
        self._latencies.append(answer.seconds)
        if result.left_at is not None:  # how long after its start the request really left (see ratelimit)
            self.limiter.observe_lag(result.left_at - answer.granted_at)
        status = result.status
        if status != SendStatus.RETRY:
            self._refused_in_a_row = 0
        if status == SendStatus.SENT:
            self._last_taken = time.monotonic()
            self.limiter.succeeded()
            self._record(attempt, DeliveryState.SENT, message_id=result.message_id or attempt.message_id)
            self.progress.sent += 1
        elif status == SendStatus.FAILED:
            self._record(attempt, DeliveryState.FAILED, error=result.error)
            self.progress.failed += 1
        elif status == SendStatus.DEFERRED:
            self._record(attempt, DeliveryState.DEFERRED, error=result.error)
            self.progress.deferred += 1
        elif status == SendStatus.THROTTLED:
            self.limiter.throttled()
            self.progress.throttled += 1
            attempt.throttles += 1
            attempt.error = result.error or "throttled"
            self._set_uncertain(attempt, attempt.ambiguous > 0)  # not taken this time
            if attempt.throttles > MAX_THROTTLED:
                return self._defer(attempt, f"{attempt.error} ({attempt.throttles} times)")
            self._retry_at(attempt, time.monotonic())  # the limiter, slowed down, paces it
            return None
        elif status == SendStatus.RETRY:
            attempt.retries += 1
            attempt.error = result.error or "not taken"
            self._set_uncertain(attempt, attempt.ambiguous > 0)  # not taken this time
            self._refused_in_a_row += 1
            quiet = time.monotonic() - self._last_taken
            if self._refused_in_a_row >= OUTAGE_REFUSALS and quiet >= OUTAGE_SECONDS:
                self._retry_at(attempt, math.inf)  # given back by _finish
                raise LoopStopped(
                    f"the peer refused the last {self._refused_in_a_row:,} requests and took none for {quiet:.0f} s "
                    f"({attempt.error}): it seems down, so the rest wait for a later run"
                )
            if attempt.retries > MAX_RETRIES:
                return self._defer(attempt, f"{attempt.error} (after {attempt.retries} attempts)")
            self.progress.retried += 1
            backoff = random.uniform(0, min(BACKOFF_CAP, BACKOFF * 2**attempt.retries))  # full jitter
            self._retry_at(attempt, time.monotonic() + backoff)
            return None
        else:  # AMBIGUOUS: it may have been taken
            self.progress.ambiguous += 1
            attempt.ambiguous += 1
            attempt.error = result.error or "no answer"
            if attempt.ambiguous > self.ambiguous_retries:
                self._record(
                    attempt,
                    DeliveryState.UNKNOWN,
                    error=f"{attempt.error}; the peer may have taken it, so it is not sent again",
                )
                self.progress.unknown += 1
            else:
                self.progress.retried += 1
                self._retry_at(attempt, time.monotonic() + BACKOFF)
                return None
        self._report()
        return None

    def _set_uncertain(self, attempt: _Attempt, uncertain: bool) -> None:
        if attempt.uncertain != uncertain:
            attempt.uncertain = uncertain
            self._uncertain += 1 if uncertain else -1

    def _defer(self, attempt: _Attempt, error: str) -> None:
        self._record(attempt, DeliveryState.DEFERRED, error=error)
        self.progress.deferred += 1
        self._report()

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress)

    # ------------------------------------------------------------------ the send log

    def _record(
        self, attempt: _Attempt, state: DeliveryState, *, message_id: str | None = None, error: str | None = None
    ) -> None:
        self._results.append(Result(attempt.delivery.id, state, message_id, error, attempt.ambiguous))
        if len(self._results) == 1:
            self._oldest_result = time.monotonic()
        self._set_uncertain(attempt, False)  # its result waits in the group now
        if len(self._results) >= RECORD_GROUP:
            self._flush()

    def _flush_if_due(self) -> None:
        if self._results and time.monotonic() - self._oldest_result >= RECORD_AGE:
            self._flush()

    def _flush(self) -> None:
        results, self._results = self._results, []
        self._database(lambda: self.log.record(results))

    @functools.cached_property
    def _heartbeat_every(self) -> float:
        return HEARTBEAT_ALONE if self.store.engine.dialect.name == "sqlite" else HEARTBEAT

    def _heartbeat_if_due(self) -> None:
        now = time.monotonic()
        if now - self._heartbeat_at < self._heartbeat_every:
            return
        self._heartbeat_at = now
        sharing = self._database(lambda: heartbeat(self.store, self.log.sender_id, self.issue))
        if self.account_rate:
            self.limiter.set_ceiling(self.account_rate / max(1, sharing))

    def _watch(self, guard: ReputationGuard) -> None:
        """The reputation guard's thread: one indexed query every GUARD_EVERY seconds, off the dispatcher's path (a
        count over a million sent rows takes tens of milliseconds, which would hold up the pacing)."""
        while not self._guard_done.wait(GUARD_EVERY):
            try:
                pause = guard.check()
            except sa.exc.SQLAlchemyError:  # the database away: the dispatcher's own steps wait for it and say so
                continue
            if pause is not None:
                self.paused = pause
                return

    def _database(self, step: Callable[[], _T]) -> _T:
        """Run a store step; while the database is away (a restart), wait and try again, up to DATABASE_PATIENCE."""
        deadline = time.monotonic() + DATABASE_PATIENCE
        delay = 0.25
        while True:
            try:
                return step()
            except (sa.exc.OperationalError, sa.exc.InterfaceError) as err:
                if time.monotonic() + delay > deadline:
                    detail = str(getattr(err, "orig", err)).strip().splitlines()[0]
                    raise LoopStopped(f"the database went away and did not come back: {detail}") from None
                time.sleep(delay)  # waiting for the server to come back: nothing else can happen meanwhile
                delay = min(2.0, delay * 2)

    def _finish(self, completed: bool) -> None:
        """Wait for the requests in flight, write every result, and give back what never left."""
        while self._in_flight:
            try:
                answer = self._answers.get(timeout=1.0)
            except queue.Empty:
                continue
            self._in_flight -= 1
            try:
                self._handle(answer)
            except LoopStopped:
                continue
        leftovers = [attempt for _, _, attempt in self._retries] + list(self._claimed)
        self._retries.clear()
        self._claimed.clear()
        for attempt in leftovers:  # never taken by the peer as far as we know: pending again
            self._results.append(
                Result(attempt.delivery.id, DeliveryState.PENDING, None, attempt.error or None, attempt.ambiguous)
            )
        try:
            self._flush()
        except LoopStopped:
            if completed:
                raise
