"""The HTTP/1.1 server under the fakes of tests/ (fake_ses.py, fake_sqs.py): on 127.0.0.1, a thread per connection,
connections kept alive, and each answer sent in ONE write on a TCP_NODELAY socket (an answer in two writes stalls
40 ms on Nagle and delayed ACK). The fake gives the answer to each request; the server reads and writes.

Also how a fake runs in a process of its own: `FakeProcess` starts `python -m tests.<fake> --port 0 ...` from the
repository root (so `tests.fake_http` imports there as it does under pytest and from bench/), and `serve` is the
fake's side: it prints the URL once it listens and serves until SIGTERM or SIGINT. Standard library only.
"""

from __future__ import annotations

import gc
import http
import json
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, Self

ROOT = Path(__file__).resolve().parent.parent  # the repository: where `python -m tests.<fake>` finds tests/
FREEZE_EVERY = 1.0  # seconds between gc.freeze() calls in a fake's own process (see serve)
RESET_LINGER = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # SO_LINGER on, 0 s: closing sends a reset


@dataclass
class Request:
    method: str
    target: str  # as sent: the path and any query
    headers: dict[str, str]  # names lower-cased
    body: bytes | bytearray
    admission: Any = None  # what the server's `on_head` said when the request's head came in (None without one)

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)  # besides Content-Length and Connection
    cut: Literal["drop", "reset"] | None = None  # no answer: close the connection | reset it


def json_answer(status: int, data: Any, content_type: str, **headers: str) -> Answer:
    """`data` as JSON, with a fresh x-amzn-RequestId as AWS gives."""
    head = {"Content-Type": content_type, "x-amzn-RequestId": str(uuid.uuid4()), **headers}
    return Answer(status, json.dumps(data).encode(), head)


class Server:
    """Serves `answer(request)` on 127.0.0.1:`port` (0: any free port) in threads, from construction to close().

    `on_head(method, path)`, when given, is called as soon as a request's head is in (before its body) and what it
    returns travels with the request as `admission` (a fake stamps the arrival and admits it there)."""

    def __init__(
        self,
        answer: Callable[[Request], Answer],
        *,
        port: int = 0,
        name: str = "fake-http",
        on_head: Callable[[str, str], Any] | None = None,
    ) -> None:
        self.answer = answer
        self.on_head = on_head
        self.connections_opened = 0  # TCP connections accepted so far (keep-alive reuses them)
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._server = _TcpServer(("127.0.0.1", port), self)
        self.port: int = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop accepting and close every open connection (their threads end)."""
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=10)

    def _serve(self, sock: socket.socket) -> None:
        """One keep-alive connection: read a request, answer it in one write; repeat until either side closes."""
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._connections.add(sock)
            self.connections_opened += 1
        buffer = bytearray()
        try:
            while (request := self._read(sock, buffer)) is not None:
                answer = self.answer(request)
                if answer.cut == "reset":
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET_LINGER)
                    return
                if answer.cut == "drop":
                    sock.shutdown(socket.SHUT_RDWR)
                    return
                closing = request.headers.get("connection", "").lower() == "close"
                sock.sendall(_encode(answer, closing))  # ONE write: status line, headers and body together
                if closing:
                    return
        except OSError:
            return  # the client went away
        finally:
            with self._lock:
                self._connections.discard(sock)

    def _read(self, sock: socket.socket, buffer: bytearray) -> Request | None:
        """The next request on the connection, or None when the client closed it."""
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            buffer += chunk
        head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
        method, target, _version = head[0].split(" ", 2)
        admission = self.on_head(method, target.split("?", 1)[0]) if self.on_head else None
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        del buffer[: end + 4]
        if headers.get("expect", "").lower() == "100-continue":
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        length = int(headers.get("content-length", "0"))
        body = bytearray(length)  # filled in place: a 150 KB SendEmail is not copied chunk by chunk
        have = min(length, len(buffer))
        body[:have] = buffer[:have]
        del buffer[:have]
        view = memoryview(body)
        while have < length:
            got = sock.recv_into(view[have:])
            if not got:
                return None
            have += got
        return Request(method, target, headers, bytes(body) if length < 4096 else body, admission)


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], owner: Server) -> None:
        self.owner = owner
        super().__init__(address, _Connection)


class _Connection(socketserver.BaseRequestHandler):
    server: _TcpServer

    def handle(self) -> None:
        self.server.owner._serve(self.request)


def _encode(answer: Answer, closing: bool) -> bytes:
    try:
        reason = http.HTTPStatus(answer.status).phrase
    except ValueError:
        reason = "Error"
    lines = [
        f"HTTP/1.1 {answer.status} {reason}",
        *(f"{name}: {value}" for name, value in answer.headers.items()),
        f"Content-Length: {len(answer.body)}",
        "Connection: close" if closing else "Connection: keep-alive",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + answer.body


class _Fake(Protocol):
    endpoint_url: str

    def close(self) -> None: ...


def serve(fake: _Fake) -> None:
    """A fake's own process: print its URL (FakeProcess waits for that line), serve until SIGTERM or SIGINT.

    Every FREEZE_EVERY seconds what has survived so far goes out of the cyclic collector's sight (`gc.freeze`). A
    fake keeps a record of every request, and a full collection over 60,000 of them held the fake SES for 90 ms:
    it then stamped the requests that had queued meanwhile all at once, and a sliding second later its strict
    window counted that bunch with the steady arrivals and throttled 13-49 requests the senders had started
    within the rate (bench/two_senders.py at 60,000 subscribers)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(fake.endpoint_url, flush=True)
    while not stop.wait(FREEZE_EVERY):
        gc.freeze()
    fake.close()


@dataclass
class FakeProcess:
    """A fake in a process of its own (its CPU is not the client's); a context manager. Subclasses name the module
    (`tests.fake_ses`) and the command line's options; the counters come over HTTP (`get`)."""

    endpoint_url: str = field(init=False, default="")
    process: subprocess.Popen[str] | None = field(init=False, default=None)

    module: ClassVar[str] = ""  # what `python -m` runs
    what: ClassVar[str] = "fake"  # its name in errors

    def options(self) -> list[str]:
        return []

    def __enter__(self) -> Self:
        command = [sys.executable, "-m", self.module, "--port", "0", *self.options()]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()  # the server prints its URL once it listens
        if not line.startswith("http://"):
            self.process.kill()
            self.process.wait(timeout=10)
            raise RuntimeError(f"{self.what} did not start: {line!r}")
        self.endpoint_url = line
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def get(self, path: str, data: bytes | None = None, timeout: float = 30) -> Any:
        """The JSON answer of GET `path` (POST when `data` is given) on the fake."""
        request = urllib.request.Request(f"{self.endpoint_url}{path}", data=data)
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return json.load(answer)
