"""waitress with two guards against slow clients: at most `per_address_limit` open connections per client
address, and a deadline for each request, its headers and its body, however steadily they trickle.

waitress itself closes only connections that send nothing for `channel_timeout`; a client sending one byte a
second is never idle, so a thousand such sockets from one machine filled its connection limit and every other
request waited. Here one address holds at most PER_ADDRESS_LIMIT connections (further ones are closed at
accept), and a connection whose request (headers and body) is not complete `request_timeout` seconds after its
first byte (or its accept) is closed, checked every `cleanup_interval` seconds: a trickling body holds a
connection no longer than trickling headers do. The trusted proxy's address has no per-address limit (every
request comes from it): the proxy limits its clients (nginx's limit_conn, README).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import MultiSocketServer, TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

from .log_throttle import LogThrottle
from .server import PER_ADDRESS_LIMIT, REQUEST_TIMEOUT

log = logging.getLogger("newsletter.server")
REFUSAL_LOG_SECONDS = 60.0  # at most one "refused" line a minute, however many are refused


class GuardedChannel(HTTPChannel):
    """An HTTP connection that knows since when it has been waiting for the current request to arrive whole."""

    server: GuardedServer

    def __init__(self, server: GuardedServer, sock: Any, addr: Any, adj: Adjustments, map: Any = None) -> None:
        self.client = str(addr[0]) if addr else ""
        # the first request is due from the accept on; later ones from their first byte
        self.request_since: float | None = time.time()
        super().__init__(server, sock, addr, adj, map=map)

    def received(self, data: bytes) -> bool:
        if self.request_since is None and data:
            self.request_since = time.time()  # the first byte of the next request on this connection
        result: bool = super().received(data)
        if self.request is None:
            self.request_since = None  # no request under way: the last one arrived whole (waitress took it)
        return result

    def add_channel(self, map: Any = None) -> None:
        super().add_channel(map)
        self.server.per_address[self.client] += 1

    def del_channel(self, map: Any = None) -> None:
        opened = self._fileno in self.server.active_channels
        super().del_channel(map)
        if opened:
            count = self.server.per_address
            count[self.client] -= 1
            if count[self.client] <= 0:
                del count[self.client]


class GuardedServer(TcpWSGIServer):
    """TcpWSGIServer with GuardedChannel connections, a per-address limit and the request deadline."""

    channel_class = GuardedChannel

    def __init__(self, *args: Any, per_address_limit: int, request_timeout: float, **kwargs: Any) -> None:
        self.per_address: Counter[str] = Counter()
        self.per_address_limit = per_address_limit
        self.request_timeout = request_timeout
        self.exempt = {kwargs["adj"].trusted_proxy} if kwargs["adj"].trusted_proxy else set()
        self.refused = 0
        self.refusal_log = LogThrottle()
        super().__init__(*args, **kwargs)

    def handle_accept(self) -> None:
        try:
            accepted = self.accept()
        except OSError:
            return
        if accepted is None:
            return
        conn, addr = accepted
        client = str(addr[0])
        if client not in self.exempt and "*" not in self.exempt and self.per_address[client] >= self.per_address_limit:
            conn.close()  # this address holds its share already
            self._log_refusal(client)
            return
        try:
            self.set_socket_options(conn)
        except OSError:
            conn.close()
            return
        self.channel_class(self, conn, self.fix_addr(addr), self.adj, map=self._map)

    def _log_refusal(self, client: str) -> None:
        self.refused += 1
        if self.refusal_log.allow(REFUSAL_LOG_SECONDS) is not None:
            log.warning(
                "refused a connection from %s: it holds %s already (%s refused in all)",
                client,
                self.per_address_limit,
                self.refused,
            )

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # idle connections
        cutoff = now - self.request_timeout
        for channel in list(self.active_channels.values()):
            since = getattr(channel, "request_since", None)
            if since is not None and since < cutoff and not channel.requests:
                channel.will_close = True  # its request took too long, however steadily it came


def create_server(
    app: Any,
    *,
    per_address_limit: int = PER_ADDRESS_LIMIT,
    request_timeout: float = REQUEST_TIMEOUT,
    **options: Any,
) -> GuardedServer | MultiSocketServer:
    """Like waitress.create_server (TCP only): one GuardedServer per address `host` resolves to.

    Raises ValueError for a host waitress cannot resolve and OSError for an address it cannot bind.
    """
    adj = Adjustments(**options)
    socket_map: dict[int, Any] = {}
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    servers: list[GuardedServer] = []
    try:
        for sockinfo in adj.listen:
            servers.append(
                GuardedServer(
                    app,
                    socket_map,
                    dispatcher=dispatcher,
                    adj=adj,
                    sockinfo=sockinfo,
                    per_address_limit=per_address_limit,
                    request_timeout=request_timeout,
                )
            )
    except BaseException:
        for dispatched in list(socket_map.values()):  # the servers, their triggers, a socket left unbound
            dispatched.close()
        dispatcher.shutdown()
        raise
    if len(servers) == 1:
        return servers[0]
    listening = [(server.effective_host, server.effective_port) for server in servers]
    return MultiSocketServer(socket_map, adj, listening, dispatcher, servers[-1].log_info)
