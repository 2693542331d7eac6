"""A fake Amazon SES v2 endpoint on 127.0.0.1 for benches and tests: SendEmail (raw) and GetAccount over HTTP/1.1.

It answers after `latency` seconds (the round trip) and enforces MaxSendRate = `rate` as a strict sliding window
on arrival times: a SendEmail that arrives when `rate` were accepted in the last second gets 429
TooManyRequestsException "Maximum sending rate exceeded." and is not sent. It records what it accepted (time,
recipient, tags, the per-message tracking overrides, its MessageId, and the raw message when `keep_raw`), and can
lose an answer after accepting (the ambiguous case) or answer 500 for chosen requests. Each answer is one write on
a TCP_NODELAY socket, connections kept alive as boto3 expects (tests/fake_http.py, shared with the fake SQS).

In a test: `with FakeSes(rate=100, latency=0.05) as ses: ... ses.endpoint_url, ses.snapshot()`.
By hand, or as a separate process for a bench (`FakeSesProcess`), from the repository root:
`python -m tests.fake_ses --rate 14 --latency 0.05 --port 0` prints its URL; GET <url>/_fake/stats gives the
counters as JSON (`FakeSesProcess` reads them). Standard library only, so it runs with nothing installed.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import collections
import itertools
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from tests.fake_http import Answer, FakeProcess, Request, Server, json_answer, serve

WINDOW = 1.0  # seconds: SES's sliding window for MaxSendRate
THROTTLED_TEXT = "Maximum sending rate exceeded."
DAILY_TEXT = "Daily message quota exceeded."
Fault = Literal["drop", "reset", "error"]  # lose the answer (close) | reset the connection | answer 500
TRACKING = ("OpenTrackingEnabled", "ClickTrackingEnabled")  # sesv2's TrackingConfigurationOverrides
# The raw message's field: base64 holds no quote, so the string ends at the next one. Cut out before json.loads,
# which would otherwise spend most of the fake's CPU on one 150 KB string (the rest is parsed as JSON).
RAW_DATA = re.compile(rb'"Data"\s*:\s*"')


@dataclass(frozen=True)
class Accepted:
    """One SendEmail the fake took: when it arrived (time.monotonic(), one clock for every process here)."""

    at: float
    recipient: str
    tags: dict[str, str]
    raw: bytes | None  # the message as sent (None unless keep_raw)
    # ConfigurationOverrides.Tracking as sent ({"OpenTrackingEnabled": "DISABLED", …}; empty when none)
    tracking: dict[str, str] = field(default_factory=dict)
    message_id: str = ""  # the MessageId answered


@dataclass(frozen=True)
class Stats:
    """The counters at one moment: accepted arrivals (sorted), throttled arrivals, faults, the most in flight."""

    accepted: list[tuple[float, str]]  # (arrival, recipient), sorted by arrival
    throttled: list[float]  # arrivals answered 429, sorted
    errors: int  # answered 500 (chosen by the fault hook)
    dropped: int  # accepted, then the connection closed or reset without an answer
    max_concurrent: int  # the most requests between arrival and answer at once
    in_flight: int  # requests between arrival and answer now

    @property
    def sent(self) -> int:
        return len(self.accepted)

    def recipients(self) -> collections.Counter[str]:
        """How often each recipient was accepted."""
        return collections.Counter(recipient for _, recipient in self.accepted)

    def duplicates(self) -> dict[str, int]:
        """Recipients accepted more than once, with their counts."""
        return {recipient: n for recipient, n in self.recipients().items() if n > 1}

    def busiest_window(self, *, include_throttled: bool = False) -> int:
        """The most arrivals in any sliding window of WINDOW seconds: accepted only (never above the rate, by
        construction), or every SendEmail that arrived (what the client really started)."""
        times = [at for at, _ in self.accepted]
        if include_throttled:
            times = sorted(times + self.throttled)
        return max((bisect.bisect_left(times, start + WINDOW) - i for i, start in enumerate(times)), default=0)

    def span(self) -> float:
        """Seconds from the first accepted arrival to the last."""
        return self.accepted[-1][0] - self.accepted[0][0] if len(self.accepted) > 1 else 0.0

    def rate(self) -> float:
        """Accepted messages per second over the span (the intervals between the first and last arrival)."""
        span = self.span()
        return (len(self.accepted) - 1) / span if span > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "throttled": self.throttled,
            "errors": self.errors,
            "dropped": self.dropped,
            "max_concurrent": self.max_concurrent,
            "in_flight": self.in_flight,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Stats:
        return cls(
            sorted((float(at), str(who)) for at, who in data["accepted"]),
            sorted(float(at) for at in data["throttled"]),
            int(data["errors"]),
            int(data["dropped"]),
            int(data["max_concurrent"]),
            int(data["in_flight"]),
        )


class FakeSes:
    """The fake SES server in threads of this process (a thread per connection); a context manager.

    `fault(n, recipient)` is asked for the n-th SendEmail (1-based) and may return "drop" (accept it, then
    close the connection without answering), "reset" (accept it, then reset the connection) or "error"
    (answer 500 InternalFailure, not sent). It may be set or changed while the server runs.
    """

    def __init__(
        self,
        *,
        rate: float | None = None,
        latency: float = 0.0,
        max_24_hour_send: float | None = None,
        sent_last_24_hours: int = 0,
        keep_raw: bool = True,
        fault: Callable[[int, str], Fault | None] | None = None,
        port: int = 0,
    ) -> None:
        self.rate = rate
        self.latency = latency
        self.max_24_hour_send = max_24_hour_send
        self.sent_last_24_hours = sent_last_24_hours
        self.keep_raw = keep_raw
        self.fault = fault
        self.paused = False  # True: SendEmail answers SendingPausedException
        self._lock = threading.Lock()
        self._window: collections.deque[float] = collections.deque()  # accepted arrivals of the last WINDOW
        self._accepted: list[Accepted] = []
        self._throttled: list[float] = []
        self._errors = self._dropped = self._in_flight = self._max_concurrent = 0
        self._arrivals = itertools.count(1)
        # Each request's admission is what _admit said as its head came in: (arrival, admitted), where arrival is
        # the request's start (time.monotonic(), before its body) and admitted that the window had room.
        self._http = Server(self._handle, port=port, name="fake-ses", on_head=self._admit)
        self.port = self._http.port
        self.endpoint_url = self._http.url

    def __enter__(self) -> FakeSes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop accepting and close every open connection (their threads end)."""
        self._http.close()

    # ---------------------------------------------------------------- what it saw

    @property
    def connections_opened(self) -> int:
        """TCP connections accepted so far (keep-alive reuses them)."""
        return self._http.connections_opened

    @property
    def accepted(self) -> list[Accepted]:
        """What it took, in arrival order."""
        with self._lock:
            return sorted(self._accepted, key=lambda item: item.at)

    @property
    def sent(self) -> int:
        with self._lock:
            return len(self._accepted)

    @property
    def throttled(self) -> int:
        with self._lock:
            return len(self._throttled)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    @property
    def max_concurrent(self) -> int:
        with self._lock:
            return self._max_concurrent

    def snapshot(self) -> Stats:
        with self._lock:
            return Stats(
                sorted((item.at, item.recipient) for item in self._accepted),
                sorted(self._throttled),
                self._errors,
                self._dropped,
                self._max_concurrent,
                self._in_flight,
            )

    def busiest_window(self, *, include_throttled: bool = False) -> int:
        return self.snapshot().busiest_window(include_throttled=include_throttled)

    # ---------------------------------------------------------------- the API

    def _handle(self, request: Request) -> Answer:
        """The answer after the latency; the fake's own counters under /_fake/ at once, and not counted."""
        if request.path.startswith("/_fake/"):
            return self._answer(request)
        self._arrived()
        try:
            answer = self._answer(request)
            if self.latency:
                time.sleep(self.latency)
            return answer
        finally:
            self._left()

    def _answer(self, request: Request) -> Answer:
        if request.path == "/v2/email/outbound-emails" and request.method == "POST":
            return self._send_email(request)
        if request.path == "/v2/email/account" and request.method == "GET":
            return _json(200, self._account())
        if request.path == "/_fake/stats" and request.method == "GET":
            return _json(200, self.snapshot().to_json())
        return _json(404, {"message": f"no such operation: {request.method} {request.path}"}, "UnknownOperation")

    def _account(self) -> dict[str, Any]:
        with self._lock:
            sent = self.sent_last_24_hours + len(self._accepted)
        quota = {
            "Max24HourSend": -1.0 if self.max_24_hour_send is None else float(self.max_24_hour_send),
            "MaxSendRate": float(self.rate) if self.rate else 1_000_000.0,
            "SentLast24Hours": float(sent),
        }
        return {
            "DedicatedIpAutoWarmupEnabled": False,
            "EnforcementStatus": "HEALTHY",
            "ProductionAccessEnabled": True,
            "SendQuota": quota,
            "SendingEnabled": not self.paused,
        }

    def _admit(self, method: str, path: str) -> tuple[float, bool]:
        """A request's head came in: its arrival time and, for a SendEmail, whether the window has room.

        Stamped and decided under the lock, so arrivals are in order and the window is exact; a SendEmail let in
        holds its slot even if it is then refused (paused, daily quota, an injected 500)."""
        with self._lock:
            arrival = time.monotonic()
            if not (method == "POST" and path == "/v2/email/outbound-emails") or not self.rate:
                return arrival, True
            while self._window and self._window[0] <= arrival - WINDOW:
                self._window.popleft()
            if len(self._window) >= max(1, math.floor(self.rate)):
                return arrival, False
            self._window.append(arrival)
            return arrival, True

    def _send_email(self, request: Request) -> Answer:
        arrival, admitted = request.admission
        try:
            data, raw = _split_raw(request.body)
            recipient = str(data.get("Destination", {}).get("ToAddresses", [""])[0])
            if raw is None:
                raw = data["Content"]["Raw"]["Data"]
            tags = {str(tag["Name"]): str(tag["Value"]) for tag in data.get("EmailTags", [])}
            tracking = dict(data.get("ConfigurationOverrides", {}).get("Tracking", {}))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as err:
            return _json(400, {"message": f"bad SendEmail request: {err!r}"}, "BadRequestException")
        wrong = {k: v for k, v in tracking.items() if k not in TRACKING or v not in ("ENABLED", "DISABLED")}
        if wrong:  # what SES's request validation refuses
            return _json(400, {"message": f"bad ConfigurationOverrides.Tracking: {wrong}"}, "BadRequestException")
        with self._lock:
            number = next(self._arrivals)
            fault = self.fault(number, recipient) if self.fault else None
            if self.paused:
                return _json(400, {"message": "Sending is paused for this account."}, "SendingPausedException")
            daily = self.max_24_hour_send
            if daily is not None and self.sent_last_24_hours + len(self._accepted) >= daily:
                return _json(429, {"message": DAILY_TEXT}, "TooManyRequestsException")
            if not admitted:
                self._throttled.append(arrival)
                return _json(429, {"message": THROTTLED_TEXT}, "TooManyRequestsException")
            if fault == "error":
                self._errors += 1
                return _json(500, {"message": "Internal failure (injected)."}, "InternalFailure")
            content = _decoded(raw) if self.keep_raw else None
            message_id = f"0100018b{number:08x}-{uuid.uuid4()}-000000"
            self._accepted.append(Accepted(arrival, recipient, tags, content, tracking, message_id))
            if fault in ("drop", "reset"):
                self._dropped += 1
                return Answer(0, cut="drop" if fault == "drop" else "reset")
        return _json(200, {"MessageId": message_id})

    def _arrived(self) -> None:
        with self._lock:
            self._in_flight += 1
            self._max_concurrent = max(self._max_concurrent, self._in_flight)

    def _left(self) -> None:
        with self._lock:
            self._in_flight -= 1


def _split_raw(body: bytes | bytearray) -> tuple[Any, memoryview | None]:
    """The request's JSON, and its raw message's base64 as it stands in the body, JSON-escaped, taken out unparsed
    and uncopied (None: not found that way, then it is in the JSON as usual)."""
    found = RAW_DATA.search(body)
    end = body.find(b'"', found.end()) if found else -1
    if found is None or end < 0:
        return json.loads(body), None
    data = json.loads(body[: found.end()] + body[end:])
    try:
        cut_from_raw = data["Content"]["Raw"]["Data"] == ""
    except (KeyError, TypeError):
        cut_from_raw = False
    if not cut_from_raw:  # the first "Data" was another field's (a Simple message's subject, say)
        return json.loads(body), None
    return data, memoryview(body)[found.end() : end]


def _decoded(raw: str | memoryview) -> bytes:
    """The raw message: from the JSON's string, or from the body's escaped span (base64 holds only a "/" to
    escape)."""
    if isinstance(raw, str):
        return base64.b64decode(raw)
    return base64.b64decode(bytes(raw).replace(b"\\/", b"/"))


def _json(status: int, body: dict[str, Any], error_type: str | None = None) -> Answer:
    extra = {"x-amzn-ErrorType": error_type} if error_type else {}
    return json_answer(status, body, "application/json", **extra)


@dataclass
class FakeSesProcess(FakeProcess):
    """The fake in a process of its own (its CPU is not the client's); a context manager. Counters via HTTP."""

    rate: float | None = None
    latency: float = 0.0
    max_24_hour_send: float | None = None

    module = "tests.fake_ses"
    what = "fake SES"

    def options(self) -> list[str]:
        options = ["--latency", str(self.latency)]
        if self.rate:
            options += ["--rate", str(self.rate)]
        if self.max_24_hour_send is not None:
            options += ["--max-24-hour-send", str(self.max_24_hour_send)]
        return options

    def snapshot(self) -> Stats:
        return Stats.from_json(self.get("/_fake/stats"))


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake Amazon SES v2 endpoint on 127.0.0.1 (prints its URL).")
    parser.add_argument("--rate", type=float, default=None, help="MaxSendRate, enforced per sliding second")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds before each answer")
    parser.add_argument("--max-24-hour-send", type=float, default=None)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    fake = FakeSes(
        rate=args.rate, latency=args.latency, max_24_hour_send=args.max_24_hour_send, keep_raw=False, port=args.port
    )
    serve(fake)


if __name__ == "__main__":
    main()
