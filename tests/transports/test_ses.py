"""The SES transport over HTTP to moto's server: raw messages as SES stored them, and what each answer (or its
absence) means for one attempt. Throttling, 5xx, lost answers and pauses come from a small proxy in front of
moto, since moto never fails that way."""

from __future__ import annotations

import collections
import http.client
import json
import socket
import threading
from collections.abc import Callable
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config

from newsletter.config import load_settings
from newsletter.errors import TransportError
from newsletter.transports.base import OutgoingMessage, SendStatus
from newsletter.transports.ses import SesTransport
from tests.conftest import ThreadedHttpServer, free_port

RAW = (
    b"From: weekly@papers.example.com\r\nTo: kim@example.com\r\nSubject: =?utf-8?b?7JWI64WV?=\r\n"
    b"Message-ID: <m1@papers.example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n7JWI64WV\r\n"
)
THROTTLED = (429, "TooManyRequestsException", "Maximum sending rate exceeded.")
HANG_UP = "hang up"  # forward SendEmail to moto (it takes the message), then close the socket without an answer
HOLD = "hold"  # forward it, then keep the answer back until the proxy closes (the client's read times out)
CLOSE_IDLE = "close idle"  # answer as moto did (keep-alive), then close the idle connection, as a server may
Fault = tuple[int, str, str] | str | None


class FaultProxy:
    """Forwards to moto; `fault(n)` may answer SendEmail call n with (status, error code, text), or HANG_UP or HOLD."""

    def __init__(self, target: str, fault: Callable[[int], Fault]) -> None:
        self.target = urlsplit(target)
        self.fault = fault
        self.sends = 0
        self.released = threading.Event()
        self.closed_idle = threading.Event()  # set once a CLOSE_IDLE connection is closed
        self._count = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as SES does

            def log_message(self, *args: object) -> None:
                return None

            def do_GET(self) -> None:  # noqa: N802
                self._forward()

            def do_POST(self) -> None:  # noqa: N802
                self._forward()

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                injected: Fault = None
                if self.path.endswith("/outbound-emails"):
                    with proxy._count:
                        proxy.sends += 1
                        n = proxy.sends
                    injected = proxy.fault(n)
                if isinstance(injected, tuple):
                    status, code, text = injected
                    self._answer(status, [("x-amzn-ErrorType", code)], json.dumps({"message": text}).encode())
                    return
                status, headers, data = self._ask_moto(body)
                if injected == HANG_UP:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if injected == HOLD:
                    proxy.released.wait(30)
                    self.close_connection = True
                    return
                self._answer(status, headers, data)
                if injected == CLOSE_IDLE:
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    proxy.closed_idle.set()

            def _ask_moto(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                connection = http.client.HTTPConnection(proxy.target.hostname, proxy.target.port, timeout=10)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                connection.request(self.command, self.path, body, headers)
                answer = connection.getresponse()
                data = answer.read()
                connection.close()
                kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in {"transfer-encoding", "connection"}]
                return answer.status, [(k, v) for k, v in kept if k.lower() != "content-length"], data

            def _answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                if not any(k.lower() == "content-type" for k, _ in headers):
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.http = ThreadedHttpServer(Handler)
        self.url = self.http.url

    def close(self) -> None:
        self.released.set()
        self.http.close()


def _transport(endpoint: str, *, read_timeout: float = 10, max_in_flight: int = 64) -> SesTransport:
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        read_timeout=read_timeout,
        connect_timeout=2,
        max_pool_connections=max_in_flight,
    )
    client = boto3.client("sesv2", region_name="us-east-1", endpoint_url=endpoint, config=config)
    v1 = boto3.client("ses", region_name="us-east-1", endpoint_url=endpoint, config=config)
    return SesTransport(client, v1_client=v1, max_in_flight=max_in_flight)


def _message(to: str = "kim@example.com", sender: str = "weekly@papers.example.com") -> OutgoingMessage:
    return OutgoingMessage(
        sender, to, (RAW.replace(b"kim@example.com", to.encode()),), "2023-09-25-top-ml-papers", "ko"
    )


def _stored(sent: list) -> list:
    return [m for m in sent if getattr(m, "raw_data", None)]


def _to(stored) -> str:
    return BytesParser(policy=policy.default).parsebytes(stored.raw_data.encode())["To"].addresses[0].addr_spec


def _through_proxy(endpoint: str, fault: Callable[[int], Fault], **options: float):
    """(the transport's result for one message, SendEmail calls the proxy saw)."""
    proxy = FaultProxy(endpoint, fault)
    try:
        result = _transport(proxy.url, **options).send(_message())
    finally:
        proxy.close()
    return result, proxy.sends


def test_raw_message_reaches_ses_as_sent(ses) -> None:
    endpoint, sent = ses
    result = _transport(endpoint).send(_message())
    assert result.status == SendStatus.SENT and result.message_id
    (stored,) = _stored(sent)
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


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (THROTTLED, SendStatus.THROTTLED),
        ((400, "Throttling", "Maximum sending rate exceeded."), SendStatus.THROTTLED),  # as SES v1 says it
        ((400, "LimitExceededException", "Maximum sending rate exceeded."), SendStatus.THROTTLED),
        ((500, "InternalFailure", "The request processing has failed because of an unknown error."), SendStatus.RETRY),
        ((503, "ServiceUnavailable", "Service is unavailable."), SendStatus.RETRY),
        ((502, "BadGateway", "<html>bad gateway</html>"), SendStatus.RETRY),
        ((400, "MessageRejected", "Email address is not verified."), SendStatus.FAILED),
        ((400, "BadRequestException", "Invalid tag value."), SendStatus.FAILED),
    ],
    ids=lambda value: value[1] if isinstance(value, tuple) else str(value),
)
def test_each_answer_is_one_attempt_with_its_status(ses, answer: tuple[int, str, str], status: SendStatus) -> None:
    endpoint, sent = ses
    result, sends = _through_proxy(endpoint, lambda n: answer)
    assert (result.status, sends, len(_stored(sent))) == (status, 1, 0)  # never tried again here, never sent
    assert result.error == f"SES {answer[1]}: {answer[2]}"


def test_a_lost_answer_is_ambiguous_and_not_tried_again(ses) -> None:
    """SES took the message and the connection closed before its answer: it may have been taken."""
    endpoint, sent = ses
    result, sends = _through_proxy(endpoint, lambda n: HANG_UP)
    assert result.status == SendStatus.AMBIGUOUS and sends == 1
    assert len(_stored(sent)) == 1  # taken once, and no second copy from a retry here
    assert result.error == (
        "SES gave no answer (the connection was closed or reset before the answer: Remote end closed connection "
        "without response); it may have taken the message"
    )


def test_a_kept_alive_connection_the_server_closed_is_not_used_again(ses) -> None:
    """SES (or a load balancer) closes connections that were idle: the next message goes on a new one and is
    sent, not written into the closed one and taken for an answer lost."""
    endpoint, sent = ses
    proxy = FaultProxy(endpoint, lambda n: CLOSE_IDLE if n == 1 else None)
    try:
        transport = _transport(proxy.url)
        first = transport.send(_message("one@example.com"))
        assert proxy.closed_idle.wait(10), "the proxy did not close the connection"
        second = transport.send(_message("two@example.com"))
    finally:
        proxy.close()
    assert (first.status, second.status) == (SendStatus.SENT, SendStatus.SENT), second.error
    assert proxy.sends == 2 and sorted(_to(m) for m in _stored(sent)) == ["one@example.com", "two@example.com"]


def test_a_read_timeout_is_ambiguous(ses) -> None:
    endpoint, sent = ses
    result, sends = _through_proxy(endpoint, lambda n: HOLD, read_timeout=0.5)
    assert result.status == SendStatus.AMBIGUOUS and sends == 1 and len(_stored(sent)) == 1
    assert result.error == "SES gave no answer (no answer within 0.5 s); it may have taken the message"


def test_a_connection_that_never_opened_is_retry_but_the_quota_read_stops_with_one_line(
    aws_test_credentials: None,
) -> None:
    port = free_port()  # nothing listens there
    transport = _transport(f"http://127.0.0.1:{port}")
    result = transport.send(_message())
    assert result.status == SendStatus.RETRY
    assert (
        result.error
        == f"SES connection not opened: http://127.0.0.1:{port}/v2/email/outbound-emails: Failed to establish a new "
        "connection: [Errno 111] Connection refused"
    )
    with pytest.raises(TransportError) as caught:
        transport.quota()
    assert str(caught.value) == (
        f'ses: cannot read the sending quota: Could not connect to the endpoint URL: "http://127.0.0.1:{port}/v2/email/account" '
        "(check the network, the region and NEWSLETTER_SES_ENDPOINT_URL)"
    )


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
        (
            "Throttling",
            "Daily message quota exceeded.",
            "ses: the daily sending quota is used up (SES Throttling: Daily message quota exceeded.) "
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


def test_many_threads_share_one_client_and_each_message_arrives_once(ses) -> None:
    """The send loop calls send from max_in_flight threads at once; every third answer is a 429 here."""
    endpoint, sent = ses
    proxy = FaultProxy(endpoint, lambda n: THROTTLED if n % 3 == 0 else None)
    transport = _transport(proxy.url, max_in_flight=8)
    results: dict[str, list] = {}
    start = threading.Barrier(8)

    def send_some(worker: int) -> None:
        start.wait()
        for i in range(10):
            address = f"w{worker}.m{i}@example.com"
            results[address] = [transport.send(_message(address))]

    threads = [threading.Thread(target=send_some, args=(w,)) for w in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        proxy.close()
    statuses = [r[0].status for r in results.values()]
    assert len(statuses) == 80 and set(statuses) == {SendStatus.SENT, SendStatus.THROTTLED}
    assert statuses.count(SendStatus.THROTTLED) == 80 // 3 and proxy.sends == 80
    taken = collections.Counter(_to(m) for m in _stored(sent))
    assert taken == {a: 1 for a, r in results.items() if r[0].status == SendStatus.SENT}  # once each, none throttled


def test_the_settings_client_keeps_a_connection_per_message_in_flight(
    publication: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("NEWSLETTER_SES_MAX_IN_FLIGHT", "200")
    transport = SesTransport.from_settings(load_settings(publication))
    config = transport.client.meta.config
    assert transport.max_in_flight == 200 and config.max_pool_connections >= 200
    assert config.retries["total_max_attempts"] == 1  # botocore retries nothing behind the send loop's back
    assert config.tcp_keepalive is True and config.read_timeout == 30
