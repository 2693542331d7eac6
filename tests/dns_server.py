"""A DNS server on 127.0.0.1 for tests, built on dnslib: it answers from a dict of records over UDP.

`with DnsServer({"example.com": [("TXT", "v=spf1 -all")]}) as server:` then ask `server.address` (127.0.0.1,
server.port). A name with records of other types answers NOERROR with no records; an unknown name NXDOMAIN; a
CNAME is followed for other types, as a recursive resolver does. `silent_nameserver()` binds a UDP port that
never answers, for timeouts.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

from dnslib import CNAME, QTYPE, RCODE, RR, TXT, A
from dnslib.server import BaseResolver, DNSServer

Records = dict[str, list[tuple[str, str]]]  # name → [(type, value)], e.g. ("TXT", "v=spf1 -all")
TXT_CHUNK = 255  # octets of one TXT character-string (RFC 1035 §3.3); longer values are split like zone files do


def _rdata(kind: str, value: str) -> Any:
    if kind == "TXT":
        data = value.encode()
        return TXT([data[i : i + TXT_CHUNK] for i in range(0, len(data), TXT_CHUNK)] or [b""])
    if kind == "CNAME":
        return CNAME(value)
    if kind == "A":
        return A(value)
    raise ValueError(f"record type {kind} is not supported here")


class ZoneResolver(BaseResolver):
    """Answers from `records`; names are compared without case and without the final dot."""

    def __init__(self, records: Records) -> None:
        self.records = {name.lower().rstrip("."): list(values) for name, values in records.items()}
        self.queries: list[tuple[str, str]] = []  # (name, type) of every question, in order

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        name = str(request.q.qname).lower().rstrip(".")
        kind = QTYPE[request.q.qtype]
        self.queries.append((name, kind))
        for _ in range(8):  # follow CNAMEs, a few at most
            values = self.records.get(name)
            if values is None:
                if not reply.rr:
                    reply.header.rcode = RCODE.NXDOMAIN
                return reply
            cname = next((value for k, value in values if k == "CNAME"), None)
            if cname is not None and kind != "CNAME":
                reply.add_answer(RR(name, QTYPE.CNAME, rdata=CNAME(cname), ttl=60))
                name = cname.lower().rstrip(".")
                continue
            for k, value in values:
                if k == kind:
                    reply.add_answer(RR(name, getattr(QTYPE, k), rdata=_rdata(k, value), ttl=60))
            return reply
        return reply


class _Quiet:
    """dnslib's logger interface, saying nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class DnsServer:
    """A dnslib UDP server on 127.0.0.1 on a port the OS picks, in a thread, for a `with` block."""

    def __init__(self, records: Records) -> None:
        self.resolver = ZoneResolver(records)
        self.server = DNSServer(self.resolver, address="127.0.0.1", port=0, logger=_Quiet())
        self.port = self.server.server.server_address[1]
        self.address = f"127.0.0.1:{self.port}"

    def __enter__(self) -> DnsServer:
        self.server.start_thread()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        self.server.server.server_close()


@contextlib.contextmanager
def silent_nameserver() -> Iterator[str]:
    """ADDR:PORT of a bound UDP socket that reads nothing and answers nothing."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"
