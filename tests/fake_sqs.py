"""A fake Amazon SQS endpoint on 127.0.0.1 for benches and tests: the JSON protocol botocore speaks
(`POST /`, `X-Amz-Target: AmazonSQS.<Operation>`, application/x-amz-json-1.0), for the calls `newsletter events`
and its tests make: GetQueueUrl, CreateQueue, GetQueueAttributes, SendMessage(Batch), ReceiveMessage (long
polling, up to 10 messages, a visibility timeout), DeleteMessage(Batch) and ChangeMessageVisibilityBatch.

Each API answer waits `latency` seconds (the round trip; SQS in its region takes 10–50 ms) and goes out in one write
on a TCP_NODELAY socket, keep-alive, like tests/fake_ses.py. A message received and not deleted comes back when
its visibility timeout ends, with a new receipt handle; a delete with an old handle succeeds and deletes nothing,
as in SQS. `visibility_cap` (a test's knob, not SQS's) shortens every visibility timeout, so a test sees
unacknowledged messages come back within seconds. `fail_deletes` makes every DeleteMessage(Batch) answer 500 (a
test's knob too).

In a test: `with FakeSqs(latency=0.02) as sqs: url = sqs.create_queue("q"); sqs.load(url, bodies); ...`.
As a process of its own for a bench: `python tests/fake_sqs.py --latency 0.03 --port 0` prints its URL; POST a
JSON list of bodies to <url>/_fake/load?queue=NAME (no latency) and GET <url>/_fake/stats for the counters
(`FakeSqsProcess` does both). Standard library only, so the file runs as a script.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import heapq
import itertools
import json
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCOUNT = "123456789012"
DEFAULT_VISIBILITY = 30  # seconds: SQS's default VisibilityTimeout
MOST_MESSAGES = 10  # SQS's limit per ReceiveMessage and per batch request
MOST_WAIT = 20  # SQS's longest WaitTimeSeconds
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}
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
        self._connections: set[socket.socket] = set()
        self._server = _Server(("127.0.0.1", port), self)
        self.port = self._server.server_address[1]
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-sqs", daemon=True)
        self._thread.start()

    def __enter__(self) -> FakeSqs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop accepting, end the long polls, and close every open connection."""
        with self._lock:
            self._closing = True
            self._changed.notify_all()
            connections = list(self._connections)
        self._server.shutdown()
        self._server.server_close()
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=10)

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
                message = self._holder(queue, str(entry["ReceiptHandle"]))
                if message is not None:
                    heapq.heappush(queue.hidden, (now + self._visibility(entry["VisibilityTimeout"]), *_key(message)))
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
        answer = []
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


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], fake: FakeSqs) -> None:
        self.fake = fake
        super().__init__(address, _Connection)


class _Connection(socketserver.BaseRequestHandler):
    """One keep-alive connection: read a request, answer it after the latency in one write; repeat."""

    server: _Server

    def handle(self) -> None:
        fake = self.server.fake
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with fake._lock:
            fake._connections.add(sock)
        buffer = bytearray()
        try:
            while (request := _read_request(sock, buffer)) is not None:
                method, target, headers, body = request
                status, answer, extra = self._answer(fake, method, target, headers, body)
                closing = headers.get("connection", "").lower() == "close"
                sock.sendall(_encode(status, answer, extra, closing))  # ONE write: head and body together
                if closing:
                    return
        except OSError:
            return  # the client went away
        finally:
            with fake._lock:
                fake._connections.discard(sock)

    def _answer(
        self, fake: FakeSqs, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        path, _, query = target.partition("?")
        if path.startswith("/_fake/"):  # the fake's own calls: no latency, not counted
            return self._own(fake, method, path, urllib.parse.parse_qs(query), body)
        operation = headers.get("x-amz-target", "").removeprefix("AmazonSQS.")
        started = time.monotonic()
        with fake._lock:
            fake._in_flight += 1
            fake._max_concurrent = max(fake._max_concurrent, fake._in_flight)
        try:
            try:
                data = json.loads(body or b"{}")
                with fake._lock:
                    answer: Any = fake._call(operation, data)
                status, extra = 200, {}
            except SqsError as err:
                status, answer = err.status, {"__type": f"com.amazonaws.sqs#{err.kind}", "message": err.message}
                extra = {"x-amzn-query-error": QUERY_ERRORS.get(err.kind, f"{err.kind};Sender")}
            except (ValueError, KeyError, TypeError) as err:
                status, answer = 400, {"__type": "com.amazonaws.sqs#InvalidParameterValue", "message": repr(err)}
                extra = {"x-amzn-query-error": QUERY_ERRORS["InvalidParameterValue"]}
            rest = fake.latency - (time.monotonic() - started if operation != "ReceiveMessage" else 0.0)
            if rest > 0:  # a long poll's wait is not the round trip: the latency comes on top
                time.sleep(rest)
            return status, answer, extra
        finally:
            with fake._lock:
                fake._in_flight -= 1

    def _own(
        self, fake: FakeSqs, method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        if path == "/_fake/stats" and method == "GET":
            return 200, fake.snapshot().to_json(), {}
        if path == "/_fake/load" and method == "POST":
            name = query.get("queue", ["events"])[0]
            url = fake.create_queue(name)
            fake.load(url, [str(item) for item in json.loads(body)])
            return 200, {"QueueUrl": url}, {}
        return 404, {"message": f"no such call: {method} {path}"}, {}


def _read_request(sock: socket.socket, buffer: bytearray) -> tuple[str, str, dict[str, str], bytes] | None:
    """The next request on the connection (method, target, lower-cased headers, body); None when the client closed
    the connection."""
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buffer += chunk
    head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    method, target, _version = head[0].split(" ", 2)
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    del buffer[: end + 4]
    if headers.get("expect", "").lower() == "100-continue":
        sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    length = int(headers.get("content-length", "0"))
    while len(buffer) < length:
        chunk = sock.recv(max(65536, length - len(buffer)))
        if not chunk:
            return None
        buffer += chunk
    body = bytes(buffer[:length])
    del buffer[:length]
    return method, target, headers, body


def _encode(status: int, answer: Any, extra: dict[str, str], closing: bool) -> bytes:
    body = json.dumps(answer).encode()
    lines = [
        f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}",
        "Content-Type: application/x-amz-json-1.0",
        f"Content-Length: {len(body)}",
        f"x-amzn-RequestId: {uuid.uuid4()}",
        "Connection: close" if closing else "Connection: keep-alive",
        *(f"{name}: {value}" for name, value in extra.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class FakeSqsProcess:
    """The fake in a process of its own (its CPU is not the client's); a context manager."""

    latency: float = 0.0
    endpoint_url: str = field(init=False, default="")
    process: subprocess.Popen[str] | None = field(init=False, default=None)

    def __enter__(self) -> FakeSqsProcess:
        command = [sys.executable, str(Path(__file__).resolve()), "--port", "0", "--latency", str(self.latency)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()  # the server prints its URL once it listens
        if not line.startswith("http://"):
            self.process.kill()
            raise RuntimeError(f"fake SQS did not start: {line!r}")
        self.endpoint_url = line
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def load(self, name: str, bodies: list[str]) -> str:
        """Put `bodies` in queue `name` (made if new); its URL."""
        request = urllib.request.Request(
            f"{self.endpoint_url}/_fake/load?queue={urllib.parse.quote(name)}", data=json.dumps(bodies).encode()
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            return str(json.load(answer)["QueueUrl"])

    def snapshot(self) -> Stats:
        with urllib.request.urlopen(f"{self.endpoint_url}/_fake/stats", timeout=30) as answer:
            return Stats.from_json(json.load(answer))


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake Amazon SQS endpoint on 127.0.0.1 (prints its URL).")
    parser.add_argument("--latency", type=float, default=0.03, help="seconds of each API answer's round trip")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    fake = FakeSqs(latency=args.latency, port=args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(fake.endpoint_url, flush=True)
    stop.wait()
    fake.close()


if __name__ == "__main__":
    main()
