"""The SES transport over HTTP to moto's server: raw messages as SES stored them, rejections, throttling, a paused
account. Throttling and pausing come from a small proxy in front of moto, since moto never throttles."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config

from newsletter.errors import TransportError
from newsletter.transports.base import OutgoingMessage, SendStatus
from newsletter.transports.ses import SesTransport

RAW = (
    b"From: weekly@papers.example.com\r\nTo: kim@example.com\r\nSubject: =?utf-8?b?7JWI64WV?=\r\n"
    b"Message-ID: <m1@papers.example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n7JWI64WV\r\n"
)


class FaultProxy:
    """Forwards to moto; `fault(n)` may answer request n (SendEmail calls only) with (status, error code, text)."""

    def __init__(self, target: str, fault: Callable[[int], tuple[int, str, str] | None]) -> None:
        self.target = urlsplit(target)
        self.fault = fault
        self.sends = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return None

            def do_GET(self) -> None:  # noqa: N802
                self._forward()

            def do_POST(self) -> None:  # noqa: N802
                self._forward()

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.endswith("/outbound-emails"):
                    proxy.sends += 1
                    injected = proxy.fault(proxy.sends)
                    if injected:
                        status, code, text = injected
                        payload = json.dumps({"message": text}).encode()
                        self.send_response(status)
                        self.send_header("x-amzn-ErrorType", code)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(payload)))
                        self.end_headers()
                        self.wfile.write(payload)
                        return
                connection = http.client.HTTPConnection(proxy.target.hostname, proxy.target.port, timeout=10)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                connection.request(self.command, self.path, body, headers)
                answer = connection.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in {"transfer-encoding", "connection", "content-length"}:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _transport(endpoint: str, sleeps: list[float] | None = None) -> SesTransport:
    config = Config(retries={"total_max_attempts": 1, "mode": "standard"})
    client = boto3.client("sesv2", region_name="us-east-1", endpoint_url=endpoint, config=config)
    v1 = boto3.client("ses", region_name="us-east-1", endpoint_url=endpoint, config=config)
    record = sleeps.append if sleeps is not None else (lambda _: None)
    return SesTransport(client, v1_client=v1, attempts=5, sleep=record)


def _message(to: str = "kim@example.com", sender: str = "weekly@papers.example.com") -> OutgoingMessage:
    return OutgoingMessage(sender, to, RAW.replace(b"kim@example.com", to.encode()), "2023-09-25-top-ml-papers", "ko")


def test_raw_message_reaches_ses_as_sent(ses) -> None:
    endpoint, sent = ses
    result = _transport(endpoint).send(_message())
    assert result.status == SendStatus.SENT and result.message_id
    (stored,) = [m for m in sent if getattr(m, "raw_data", None)]
    message = BytesParser(policy=policy.default).parsebytes(stored.raw_data.encode())
    assert message["Subject"] == "안녕" and message.get_content().strip() == "안녕"
    assert stored.destinations == ["kim@example.com"] or "kim@example.com" in str(stored.destinations)


def test_unverified_sender_is_a_permanent_failure(ses) -> None:
    endpoint, _ = ses
    result = _transport(endpoint).send(_message(sender="someone@unverified.example.org"))
    assert result.status == SendStatus.FAILED
    assert result.error.startswith("SES MessageRejected:")


def test_quota_comes_from_the_account(ses) -> None:
    endpoint, _ = ses
    quota = _transport(endpoint).quota()
    assert (quota.max_send_rate, quota.max_24_hour_send) == (1.0, 200.0)
    assert quota.remaining == 200.0


def test_throttling_is_retried_with_backoff_and_never_counted_twice(ses) -> None:
    endpoint, sent = ses
    throttle = {1, 2, 4}  # the first two attempts, then one more later
    proxy = FaultProxy(
        endpoint,
        lambda n: (429, "TooManyRequestsException", "Maximum sending rate exceeded.") if n in throttle else None,
    )
    sleeps: list[float] = []
    try:
        transport = _transport(proxy.url, sleeps)
        results = [transport.send(_message(f"user{n}@example.com")) for n in range(3)]
    finally:
        proxy.close()
    assert [r.status for r in results] == [SendStatus.SENT] * 3
    assert len([m for m in sent if getattr(m, "raw_data", None)]) == 3  # each accepted exactly once
    assert proxy.sends == 6 and transport.retries == 3 and len(sleeps) == 3
    assert all(0 <= delay <= 20 for delay in sleeps)


def test_endless_throttling_defers_the_message(ses) -> None:
    endpoint, _ = ses
    proxy = FaultProxy(endpoint, lambda n: (429, "TooManyRequestsException", "Maximum sending rate exceeded."))
    try:
        result = _transport(proxy.url).send(_message())
    finally:
        proxy.close()
    assert result.status == SendStatus.DEFERRED
    assert result.error == "SES TooManyRequestsException: Maximum sending rate exceeded. (after 5 attempts)"


@pytest.mark.parametrize(
    ("code", "text", "expected"),
    [
        (
            "SendingPausedException",
            "Sending is paused for this account.",
            "ses: sending is paused for this account or configuration set (SES SendingPausedException: Sending is paused "
            "for this account.) (fix it in the SES console, then run the same command to resume)",
        ),
        (
            "LimitExceededException",
            "Daily message quota exceeded.",
            "ses: the daily sending quota is used up (SES LimitExceededException: Daily message quota exceeded.) "
            "(run the same command tomorrow to resume)",
        ),
    ],
)
def test_a_paused_account_or_spent_quota_stops_the_send(ses, code: str, text: str, expected: str) -> None:
    endpoint, _ = ses
    proxy = FaultProxy(endpoint, lambda n: (400, code, text))
    try:
        with pytest.raises(TransportError) as caught:
            _transport(proxy.url).send(_message())
    finally:
        proxy.close()
    assert str(caught.value) == expected
