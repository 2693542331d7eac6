"""Kept-alive HTTP(S) connections to one host, shared by threads: at most `size` at once, the latest used first.

http.client's connections, as urllib3's pool keeps them, without urllib3's per-request layers (0.2–0.5 ms of CPU
a request here, a third of an SES request's; bench/ses_quota.py). A connection taken from the pool is checked
first: if the server closed it while it was idle, it is dropped and a new one opened, so a request is never
written into a connection that was already gone (which would make its answer look lost).
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit


class ConnectFailed(Exception):
    """A new connection could not be opened: nothing was written."""


class ConnectionPool:
    """Connections to the host of `url` (http or https; TLS verified with the system's certificates)."""

    def __init__(self, url: str, *, size: int, connect_timeout: float, read_timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url}")
        self.https = parts.scheme == "https"
        self.hostname = parts.hostname
        default = 443 if self.https else 80
        self.port = parts.port or default
        # the Host header: the port only when it is not the scheme's (as botocore signs it)
        bracketed = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        self.host = bracketed if self.port == default else f"{bracketed}:{self.port}"
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._tls = ssl.create_default_context() if self.https else None
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max(1, size))

    @contextmanager
    def connection(self) -> Iterator[http.client.HTTPConnection]:
        """A connection that is open, for one request and its answer; waits while `size` are in use.

        Raises ConnectFailed when a new one cannot be opened. It goes back to the pool after the block, unless
        the block raised (it is closed then) or closed it (an answer that said `Connection: close`)."""
        with self._slots:
            conn = self._take()
            try:
                yield conn
            except BaseException:
                conn.close()
                raise
            if conn.sock is not None:
                with self._lock:
                    self._idle.append(conn)

    def _take(self) -> http.client.HTTPConnection:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._open()
            if conn.sock is not None and not _dropped(conn.sock):
                return conn
            conn.close()

    def _open(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if self._tls is not None:
            conn = http.client.HTTPSConnection(
                self.hostname, self.port, timeout=self.connect_timeout, context=self._tls
            )
        else:
            conn = http.client.HTTPConnection(self.hostname, self.port, timeout=self.connect_timeout)
        try:
            conn.connect()
        except (OSError, http.client.HTTPException) as err:
            conn.close()
            if isinstance(err, TimeoutError):
                raise ConnectFailed(f"timed out after {self.connect_timeout:g} s") from None
            raise ConnectFailed(" ".join(str(err).split()) or type(err).__name__) from None
        assert conn.sock is not None
        conn.sock.settimeout(self.read_timeout)
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def close(self) -> None:
        """Close the idle connections (those in use close when their requests end)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _dropped(sock: socket.socket) -> bool:
    """True if an idle connection is readable: the server closed it (or sent what no request asked for)."""
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)
    except (OSError, ValueError):
        return True
