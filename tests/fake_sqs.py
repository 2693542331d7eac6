"""A fake Amazon SQS endpoint on 127.0.0.1 for benches and tests: the JSON protocol botocore speaks
(`POST /`, `X-Amz-Target: AmazonSQS.<Operation>`, application/x-amz-json-1.0), for the calls `newsletter events`
and its tests make: GetQueueUrl, CreateQueue, GetQueueAttributes, SendMessage(Batch), ReceiveMessage (long
polling, up to 10 messages, a visibility timeout), DeleteMessage(Batch) and ChangeMessageVisibilityBatch.

Each API answer waits `latency` seconds (the round trip; SQS in its region takes 10–50 ms) and goes out in one write
on a TCP_NODELAY socket, keep-alive (tests/fake_http.py, shared with tests/fake_ses.py). A message received and
not deleted comes back when its visibility timeout ends, with a new receipt handle; a delete with an old handle
succeeds and deletes nothing, as in SQS. `visibility_cap` (a test's knob, not SQS's) shortens every visibility
timeout, so a test sees unacknowledged messages come back within seconds. `fail_deletes` makes every
DeleteMessage(Batch) answer 500 (a test's knob too).

In a test: `with FakeSqs(latency=0.02) as sqs: url = sqs.create_queue("q"); sqs.load(url, bodies); ...`.
As a process of its own for a bench, from the repository root: `python -m tests.fake_sqs --latency 0.03 --port 0`
prints its URL; POST a JSON list of bodies to <url>/_fake/load?queue=NAME (no latency) and GET <url>/_fake/stats
for the counters (`FakeSqsProcess` does both). Standard library only, so it runs with nothing installed.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import heapq
import itertools
import json
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.fake_http import Answer, FakeProcess, Request, Server, json_answer, serve

ACCOUNT = "123456789012"
DEFAULT_VISIBILITY = 30  # seconds: SQS's default VisibilityTimeout
MOST_MESSAGES = 10  # SQS's limit per ReceiveMessage and per batch request
MOST_WAIT = 20  # SQS's longest WaitTimeSeconds
# What botocore's query-compatible SQS error parsing reads (code;Sender|Receiver), by the JSON error's type.
QUERY_ERRORS = {
    "QueueDoesNotExist": "AWS.SimpleQueueService.NonExistentQueue;Sender",
    "InvalidParameterValue": "InvalidParameterValue;Sender",
    "TooManyEntriesInBatchRequest": "AWS.SimpleQueueService.TooManyEntriesInBatchRequest;Sender",
    "InternalError": "InternalError;Receiver",
}


class SqsError(Exception):
    """An error answer: its type (the JSON `__type` after '#') and message."""

    def __init__(self, kind: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.kind, self.message, self.status = kind, message, status


@dataclass
class _Message:
    id: str
    body: str
    sent_at: float
    receipt: str = ""  # the newest receipt handle ("" while visible)
    receives: int = 0


@dataclass
class _Queue:
    name: str
    visibility: int = DEFAULT_VISIBILITY
    visible: collections.deque[str] = field(default_factory=collections.deque)  # ids, oldest first
    messages: dict[str, _Message] = field(default_factory=dict)  # every message not deleted
    hidden: list[tuple[float, str, str]] = field(default_factory=list)  # heap of (visible again at, id, receipt)


@dataclass(frozen=True)
class Stats:
    """The counters at one moment."""

    received: int  # messages handed out by ReceiveMessage (a redelivery counts again)
    redelivered: int  # of those, ones handed out before
    deleted: int  # messages deleted (a delete with an old receipt handle deletes none)
    stale_deletes: int  # delete entries whose receipt handle was not the newest
    requests: collections.Counter[str]  # API calls by operation
    max_concurrent: int  # the most API requests between arrival and answer at once
    left: int  # messages not deleted (visible or in flight)

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "requests": dict(self.requests)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Stats:
        return cls(**{**data, "requests": collections.Counter(data["requests"])})


class FakeSqs:
    """The fake SQS server in threads of this process (a thread per connection); a context manager."""

    def __init__(self, *, latency: float = 0.0, visibility_cap: float | None = None, port: int = 0) -> None:
        self.latency = latency
        self.visibility_cap = visibility_cap
        self.fail_deletes = False
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a message became visible
        self._queues: dict[str, _Queue] = {}
        self._received = self._redelivered = self._deleted = self._stale = 0
        self._requests: collections.Counter[str] = collections.Counter()
        self._in_flight = self._max_concurrent = 0
        self._ids = itertools.count(1)
        self._closing = False
        self._http = Server(self._answer, port=port, name="fake-sqs")
        self.port = self._http.port
        self.endpoint_url = self._http.url

    def __enter__(self) -> FakeSqs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop accepting, end the long polls, and close every open connection."""
        with self._lock:
            self._closing = True
            self._changed.notify_all()
        self._http.close()

    # ---------------------------------------------------------------- for tests and benches, without latency

    def url_of(self, name: str) -> str:
        return f"{self.endpoint_url}/{ACCOUNT}/{name}"

    def create_queue(self, name: str, visibility: int = DEFAULT_VISIBILITY) -> str:
        with self._lock:
            self._queues.setdefault(name, _Queue(name, visibility))
        return self.url_of(name)

    def load(self, queue_url: str, bodies: list[str]) -> None:
        """Put `bodies` in the queue, in order, as SendMessage would."""
        with self._lock:
            queue = self._queue(queue_url)
            for body in bodies:
                self._add(queue, body)
            self._changed.notify_all()

    def snapshot(self) -> Stats:
        with self._lock:
            return Stats(
                self._received,
                self._redelivered,
                self._deleted,
                self._stale,
                collections.Counter(self._requests),
                self._max_concurrent,
                sum(len(queue.messages) for queue in self._queues.values()),
            )

    # ---------------------------------------------------------------- over HTTP

    def _answer(self, request: Request) -> Answer:
        """An API call's answer after the latency; the fake's own calls under /_fake/ at once, and not counted."""
        path, _, query = request.target.partition("?")
        if path.startswith("/_fake/"):
            return self._own(request.method, path, urllib.parse.parse_qs(query), request.body)
        operation = request.headers.get("x-amz-target", "").removeprefix("AmazonSQS.")
        started = time.monotonic()
        with self._lock:
            self._in_flight += 1
            self._max_concurrent = max(self._max_concurrent, self._in_flight)
        try:
            try:
                data = json.loads(request.body or b"{}")
                with self._lock:
                    answer: Any = self._call(operation, data)
                status, extra = 200, {}
            except SqsError as err:
                status, answer = err.status, {"__type": f"com.amazonaws.sqs#{err.kind}", "message": err.message}
                extra = {"x-amzn-query-error": QUERY_ERRORS.get(err.kind, f"{err.kind};Sender")}
            except (ValueError, KeyError, TypeError) as err:
                status, answer = 400, {"__type": "com.amazonaws.sqs#InvalidParameterValue", "message": repr(err)}
                extra = {"x-amzn-query-error": QUERY_ERRORS["InvalidParameterValue"]}
            rest = self.latency - (time.monotonic() - started if operation != "ReceiveMessage" else 0.0)
            if rest > 0:  # a long poll's wait is not the round trip: the latency comes on top
                time.sleep(rest)
            return _json(status, answer, extra)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _own(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> Answer:
        if path == "/_fake/stats" and method == "GET":
            return _json(200, self.snapshot().to_json(), {})
        if path == "/_fake/load" and method == "POST":
            name = query.get("queue", ["events"])[0]
            url = self.create_queue(name)
            self.load(url, [str(item) for item in json.loads(body)])
            return _json(200, {"QueueUrl": url}, {})
        return _json(404, {"message": f"no such call: {method} {path}"}, {})

    # ---------------------------------------------------------------- the API (under the lock)

    def _queue(self, url: Any) -> _Queue:
        name = urllib.parse.urlsplit(str(url)).path.rsplit("/", 1)[-1]
        if name not in self._queues:
            raise SqsError("QueueDoesNotExist", "The specified queue does not exist.")
        return self._queues[name]

    def _add(self, queue: _Queue, body: str) -> _Message:
        message = _Message(f"{next(self._ids):08x}-{uuid.uuid4()}", body, time.time())
        queue.messages[message.id] = message
        queue.visible.append(message.id)
        return message

    def _reveal(self, queue: _Queue, now: float) -> None:
        """Messages whose visibility timeout ended are visible again (at the back, as SQS gives no order)."""
        while queue.hidden and queue.hidden[0][0] <= now:
            _, message_id, receipt = heapq.heappop(queue.hidden)
            message = queue.messages.get(message_id)
            if message is not None and message.receipt == receipt:
                message.receipt = ""
                queue.visible.append(message_id)

    def _call(self, operation: str, data: dict[str, Any]) -> dict[str, Any]:
        self._requests[operation] += 1
        if operation == "GetQueueUrl":
            self._queue(data.get("QueueName"))
            return {"QueueUrl": self.url_of(str(data["QueueName"]))}
        if operation == "CreateQueue":
            name = str(data["QueueName"])
            visibility = int(data.get("Attributes", {}).get("VisibilityTimeout", DEFAULT_VISIBILITY))
            self._queues.setdefault(name, _Queue(name, visibility))
            return {"QueueUrl": self.url_of(name)}
        queue = self._queue(data.get("QueueUrl"))
        if operation == "GetQueueAttributes":
            self._reveal(queue, time.monotonic())
            visible = len(queue.visible)
            return {
                "Attributes": {
                    "ApproximateNumberOfMessages": str(visible),
                    "ApproximateNumberOfMessagesNotVisible": str(len(queue.messages) - visible),
                    "VisibilityTimeout": str(queue.visibility),
                }
            }
        if operation == "SendMessage":
            message = self._add(queue, str(data["MessageBody"]))
            self._changed.notify_all()
            return {"MessageId": message.id, "MD5OfMessageBody": _md5(message.body)}
        entries = data.get("Entries")
        if operation.endswith("Batch"):
            if not isinstance(entries, list) or not 1 <= len(entries) <= MOST_MESSAGES:
                raise SqsError("TooManyEntriesInBatchRequest", f"A batch holds 1 to {MOST_MESSAGES} entries.")
        if operation == "SendMessageBatch":
            done = []
            for entry in entries or []:
                message = self._add(queue, str(entry["MessageBody"]))
                done.append({"Id": entry["Id"], "MessageId": message.id, "MD5OfMessageBody": _md5(message.body)})
            self._changed.notify_all()
            return {"Successful": done, "Failed": []}
        if operation in {"DeleteMessage", "DeleteMessageBatch"}:
            if self.fail_deletes:
                raise SqsError("InternalError", "We encountered an internal error (injected).", 500)
            for entry in entries or [data]:
                self._delete(queue, str(entry["ReceiptHandle"]))
            ids = [{"Id": entry["Id"]} for entry in entries or []]
            return {"Successful": ids, "Failed": []} if operation.endswith("Batch") else {}
        if operation == "ChangeMessageVisibilityBatch":
            now = time.monotonic()
            for entry in entries or []:
                holder = self._holder(queue, str(entry["ReceiptHandle"]))
                if holder is not None:
                    heapq.heappush(queue.hidden, (now + self._visibility(entry["VisibilityTimeout"]), *_key(holder)))
            self._reveal(queue, now)
            self._changed.notify_all()
            return {"Successful": [{"Id": entry["Id"]} for entry in entries or []], "Failed": []}
        if operation == "ReceiveMessage":
            return self._receive(queue, data)
        raise SqsError("InvalidAction", f"The action {operation} is not valid for this endpoint.")

    def _visibility(self, seconds: Any) -> float:
        value = float(seconds)
        return min(value, self.visibility_cap) if self.visibility_cap is not None else value

    def _holder(self, queue: _Queue, receipt: str) -> _Message | None:
        """The message whose newest receipt handle is `receipt` (an old handle names none)."""
        message = queue.messages.get(receipt.split(":", 1)[0])
        if message is None or message.receipt != receipt:
            if message is not None:
                self._stale += 1
            return None
        return message

    def _delete(self, queue: _Queue, receipt: str) -> None:
        message = self._holder(queue, receipt)
        if message is not None:
            del queue.messages[message.id]
            self._deleted += 1

    def _receive(self, queue: _Queue, data: dict[str, Any]) -> dict[str, Any]:
        most = int(data.get("MaxNumberOfMessages", 1))
        wait = int(data.get("WaitTimeSeconds", 0))
        if not 1 <= most <= MOST_MESSAGES or not 0 <= wait <= MOST_WAIT:
            raise SqsError("InvalidParameterValue", "MaxNumberOfMessages is 1 to 10, WaitTimeSeconds 0 to 20.")
        hide = self._visibility(data.get("VisibilityTimeout", queue.visibility))
        deadline = time.monotonic() + wait
        while True:
            now = time.monotonic()
            self._reveal(queue, now)
            if queue.visible or now >= deadline or self._closing:
                break
            timeout = deadline - now
            if queue.hidden:  # wake when the next hidden message may be visible again
                timeout = min(timeout, max(0.0, queue.hidden[0][0] - now))
            self._changed.wait(timeout)
        answer: list[dict[str, Any]] = []
        while queue.visible and len(answer) < most:
            message = queue.messages.get(queue.visible.popleft())
            if message is None or message.receipt:
                continue  # deleted, or already handed out again
            message.receives += 1
            message.receipt = f"{message.id}:{uuid.uuid4().hex}"
            heapq.heappush(queue.hidden, (now + hide, *_key(message)))
            self._received += 1
            self._redelivered += message.receives > 1
            answer.append(
                {
                    "MessageId": message.id,
                    "ReceiptHandle": message.receipt,
                    "MD5OfBody": _md5(message.body),
                    "Body": message.body,
                    "Attributes": {"ApproximateReceiveCount": str(message.receives)},
                }
            )
        return {"Messages": answer} if answer else {}


def _key(message: _Message) -> tuple[str, str]:
    return message.id, message.receipt


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # SQS's own checksum of the body


def _json(status: int, data: Any, extra: dict[str, str]) -> Answer:
    return json_answer(status, data, "application/x-amz-json-1.0", **extra)


@dataclass
class FakeSqsProcess(FakeProcess):
    """The fake in a process of its own (its CPU is not the client's); a context manager."""

    latency: float = 0.0

    module = "tests.fake_sqs"
    what = "fake SQS"

    def options(self) -> list[str]:
        return ["--latency", str(self.latency)]

    def load(self, name: str, bodies: list[str]) -> str:
        """Put `bodies` in queue `name` (made if new); its URL."""
        path = f"/_fake/load?queue={urllib.parse.quote(name)}"
        return str(self.get(path, json.dumps(bodies).encode(), timeout=60)["QueueUrl"])

    def snapshot(self) -> Stats:
        return Stats.from_json(self.get("/_fake/stats"))


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake Amazon SQS endpoint on 127.0.0.1 (prints its URL).")
    parser.add_argument("--latency", type=float, default=0.03, help="seconds of each API answer's round trip")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    fake = FakeSqs(latency=args.latency, port=args.port)
    serve(fake)


if __name__ == "__main__":
    main()
