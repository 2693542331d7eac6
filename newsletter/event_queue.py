"""The SQS side of `newsletter events`: receivers in threads long-poll the queue, one applier commits their
messages' events in batches, and each batch's messages are deleted only after its commit.

A message is acknowledged (deleted) only once its events are committed, so a crash or a kill repeats at most the
messages not yet deleted, and a repeated event counts once (the store keys each event). Parsing and applying are
events.py's; this module only moves messages. It never parses a record itself.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .events import TRANSIENT_LIMIT, Event, NotificationError, UntrustedNotification, apply_events, parse_notification
from .store import Store

__all__ = ["APPLY_MOST", "MOST_RECEIVERS", "RECEIVERS", "VISIBILITY", "poll_queue"]

log = logging.getLogger(__name__)
# Threads long-polling at once: each gets at most 10 messages a round trip, so 16 make 3,200-8,000 messages/s
# at 20-50 ms (bench/events.py, to SQLite: 3,768/s at 30 ms and 2,883/s at 50 ms; 8 receivers 2,448 and 1,509/s).
# Idle, 16 long polls of 20 s are 0.8 requests/s, about 2 million a month.
RECEIVERS = 16
MOST_RECEIVERS = 32
APPLY_MOST = 50  # queue messages applied in one transaction
SQS_MOST = 10  # SQS's limit per ReceiveMessage and per DeleteMessageBatch
# Seconds a received message stays hidden from other readers (ReceiveMessage's VisibilityTimeout, whatever the
# queue's default): longer than a batch ever waits here. The buffer holds at most 2 answers per receiver (a
# fraction of a second of applying), and a batch commits in milliseconds; a message held past it only comes again,
# and counts once.
VISIBILITY = 60
POLL = 0.1  # seconds between the applier's looks at the stop event while it waits for messages
JOIN = 1.0  # seconds a stop waits for receivers in flight (a queue with messages answers within a round trip)
Messages = list[dict[str, Any]]


def poll_queue(
    store: Store,
    client: Any,
    queue_url: str,
    *,
    once: bool = False,
    wait_seconds: int = 20,
    transient_limit: int = TRANSIENT_LIMIT,
    topics: tuple[str, ...] = (),
    on_batch: Callable[[dict[str, int]], None] | None = None,
    receivers: int = RECEIVERS,
    stop: threading.Event | None = None,
    visibility: int = VISIBILITY,
) -> dict[str, int]:
    """Read the queue and apply what it says until `stop` is set (or, with `once`, the queue is empty); the totals.

    `receivers` threads each long-poll ReceiveMessage (10 messages, `wait_seconds`) on the one `client`, whose
    connection pool must hold 2 × `receivers` (the deletes run beside the receives). This thread applies what they
    got, up to APPLY_MOST messages a transaction, and after each commit hands the batch's deletes (10 a request) to
    as many threads. A message that cannot be read (`unreadable`), or that an SNS topic other than `topics` sent
    (`refused`), is left in the queue, for its redrive policy to move to a dead-letter queue; nothing of it is
    applied. At `stop`, the batch being applied is finished and deleted; messages received but not applied are
    made visible again at once, as are a failed transaction's. A receive, apply or delete that fails stops the
    reading and is raised here.
    """
    if not 1 <= receivers <= MOST_RECEIVERS:
        raise ValueError(f"receivers must be 1 to {MOST_RECEIVERS}, not {receivers}")
    reader = _Reader(client, queue_url, receivers, 1 if once else wait_seconds, once, stop, visibility)
    totals: Counter[str] = Counter()
    reader.start()
    try:
        with ThreadPoolExecutor(max_workers=receivers, thread_name_prefix="sqs-delete") as deleters:
            pending: list[Future[None]] = []
            while (messages := reader.next_batch()) is not None:
                batch: Counter[str] = Counter()
                events: list[Event] = []
                done: list[dict[str, str]] = []
                for message in messages:
                    try:
                        events.extend(parse_notification(message.get("Body", ""), topics))
                    except NotificationError as err:
                        log.warning("queue message %s left in the queue: %s", message.get("MessageId"), err)
                        batch["refused" if isinstance(err, UntrustedNotification) else "unreadable"] += 1
                        continue
                    done.append({"Id": str(len(done) % SQS_MOST), "ReceiptHandle": message["ReceiptHandle"]})
                if done:
                    try:
                        batch.update(apply_events(store, events, transient_limit))
                    except BaseException:  # rolled back: the batch is released with the rest, at close
                        reader.held = messages + reader.held
                        raise
                    for start in range(0, len(done), SQS_MOST):  # after the commit
                        pending.append(deleters.submit(_delete, client, queue_url, done[start : start + SQS_MOST]))
                    batch["messages"] += len(done)
                pending = _settled(pending, most=4 * receivers)
                totals.update(batch)
                if on_batch and batch:
                    on_batch(batch)
            _settled(pending, most=0)
    finally:
        reader.close()
    reader.raise_failure()
    return totals


def _settled(pending: list[Future[None]], most: int) -> list[Future[None]]:
    """The deletes still running, after waiting for the oldest while more than `most` are; a failed one raises."""
    for future in [f for f in pending if f.done()]:
        future.result()
    pending = [f for f in pending if not f.done()]
    while len(pending) > most:
        pending.pop(0).result()
    return pending


def _delete(client: Any, queue_url: str, entries: list[dict[str, str]]) -> None:
    """Delete applied messages (at most 10); one not deleted comes again and counts as a duplicate."""
    answer = client.delete_message_batch(QueueUrl=queue_url, Entries=entries)
    for failed in answer.get("Failed", []):
        log.warning("queue message not deleted (it will come again, as a duplicate): %s", failed.get("Message"))


class _Reader:
    """The receiver threads and the buffer between them and the applier. One condition guards the buffer, so no
    answer is put in it once the applier is done (close): each received message is applied or released."""

    def __init__(
        self,
        client: Any,
        queue_url: str,
        receivers: int,
        wait: int,
        once: bool,
        stop: threading.Event | None,
        visibility: int,
    ) -> None:
        self.client, self.queue_url, self.wait, self.once, self.visibility = client, queue_url, wait, once, visibility
        self.stop = stop or threading.Event()  # the caller's (a signal sets it)
        self.failed = threading.Event()  # a receive failed: the others stop too
        self.closed = False  # the applier is done: receivers put nothing more in the buffer
        self.changed = threading.Condition()
        self.buffer: collections.deque[Messages] = collections.deque()  # answers, at most `room`
        self.room = 2 * receivers
        self.held: Messages = []  # messages of a batch that failed: released at close
        self.failures: list[BaseException] = []
        self.running = receivers
        self.threads = [
            threading.Thread(target=self._receive, name=f"sqs-receive-{n}", daemon=True) for n in range(receivers)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def _receive(self) -> None:
        """One receiver: long polls until stopped (or, with `once`, until an answer comes empty)."""
        try:
            while not self._stopping():
                answer = self.client.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=SQS_MOST,
                    WaitTimeSeconds=self.wait,
                    VisibilityTimeout=self.visibility,
                )
                messages: Messages = answer.get("Messages", [])
                if not messages:
                    if self.once:
                        return
                    continue
                if not self._hand_over(messages):
                    self._release(messages)
        except Exception as err:  # a receive that failed: the applier raises it (unless it is done already)
            with self.changed:
                if not self.closed:
                    self.failures.append(err)
                    self.failed.set()
        finally:
            with self.changed:
                self.running -= 1
                self.changed.notify_all()

    def _hand_over(self, messages: Messages) -> bool:
        """Put an answer in the buffer when it has room; False if the reading stopped first."""
        with self.changed:
            while len(self.buffer) >= self.room and not self._stopping():
                self.changed.wait(POLL)
            if self._stopping():
                return False
            self.buffer.append(messages)
            self.changed.notify_all()
            return True

    def _stopping(self) -> bool:
        return self.closed or self.stop.is_set() or self.failed.is_set()

    def next_batch(self) -> Messages | None:
        """Up to APPLY_MOST messages: the first answer waited for, then whatever the receivers have already
        delivered (so batches grow when applying is the slower side); None at the end."""
        with self.changed:
            while not self.held and not self.buffer:
                if self._stopping() or self.running == 0:
                    return None
                self.changed.wait(POLL)  # a signal's stop is seen within POLL
            if self._stopping():
                return None
            batch, self.held = self.held, []
            while self.buffer and len(batch) + len(self.buffer[0]) <= APPLY_MOST:
                batch += self.buffer.popleft()
            self.changed.notify_all()  # room for the receivers
            return batch

    def close(self) -> None:
        """The applier is done: what was received and not applied is made visible again at once; a receiver still
        in a long poll releases what it gets when the poll returns (waited for up to JOIN seconds)."""
        with self.changed:
            self.closed = True
            left, self.held = self.held, []
            while self.buffer:
                left += self.buffer.popleft()
            self.changed.notify_all()
        self._release(left)
        deadline = time.monotonic() + JOIN
        for thread in self.threads:  # those between requests end at once; a long poll is not waited for
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _release(self, messages: Messages) -> None:
        """Received, never applied: visible to the next receive now instead of after the visibility timeout.
        Best effort: if this fails, they come again when the timeout ends."""
        for start in range(0, len(messages), SQS_MOST):
            entries = [
                {"Id": str(n), "ReceiptHandle": message["ReceiptHandle"], "VisibilityTimeout": 0}
                for n, message in enumerate(messages[start : start + SQS_MOST])
            ]
            try:
                self.client.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)
            except Exception as err:  # the visibility timeout brings them back anyway
                log.warning(
                    "%d queue messages not released (they come again in %d s): %s", len(entries), self.visibility, err
                )

    def raise_failure(self) -> None:
        with self.changed:
            failures = list(self.failures)
        if failures:
            raise failures[0]
