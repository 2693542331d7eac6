"""The SMTP transport against real aiosmtpd servers on 127.0.0.1: what arrives, 5xx/4xx/throttling answers, where a
dropped connection or a timeout leaves a message (before the end of DATA: tried once more in place; after it:
AMBIGUOUS), and a pool of reused connections shared by many threads."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from newsletter.config import SmtpSettings, load_settings
from newsletter.errors import TransportError
from newsletter.transports.base import OutgoingMessage, SendStatus
from newsletter.transports.smtp import SmtpTransport
from tests.conftest import RecordingHandler, free_port, wait_until

RAW = b"From: a@papers.example.com\r\nTo: {to}\r\nSubject: hi\r\nMessage-ID: <m1@papers.example.com>\r\n\r\nbody\r\n"


def _message(to: str) -> OutgoingMessage:
    return OutgoingMessage("weekly@papers.example.com", to, (RAW.replace(b"{to}", to.encode()),), "issue", "ko")


def _settings(port: int, *, timeout: float = 5, connections: int = 4) -> SmtpSettings:
    return SmtpSettings(host="127.0.0.1", port=port, security="none", timeout=timeout, connections=connections)


class CountingHandler(RecordingHandler):
    """RecordingHandler that counts connections (each says EHLO once), the most open at once, and QUITs; and
    misbehaves for chosen recipients, as real servers and networks do:

    - `drop-once…`: the connection is cut at RCPT the first time, `drop…` every time (before DATA);
    - `lost…`: the message is taken, then the connection is cut before the reply to the end of DATA;
    - `slow-rcpt…`: RCPT answers after `slowness` s; `slow…`: the end of DATA is answered after `slowness` s;
    - `throttle…`: 454 Throttling failure; `daily…`: 454 Throttling failure: Daily message quota exceeded;
      `busy…`: 454 without throttling words; `closing…`: 421 at RCPT (the client closes the connection).
    """

    def __init__(self, *, slowness: float = 0.0, hold_first: int = 0) -> None:
        super().__init__()
        self.slowness = slowness
        self.connects = 0
        self.quits = 0
        self.most_open = 0
        self.live: set[int] = set()
        self.dropped_once: set[str] = set()
        self.hold_first = hold_first  # hold the first messages' DATA until this many are in DATA at once
        self._in_data = 0
        self._all_in: asyncio.Event | None = None

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802 - aiosmtpd's name
        if id(server) not in self.live:
            self.connects += 1
            self.live.add(id(server))
            self.most_open = max(self.most_open, len(self.live))
        session.host_name = hostname
        return responses

    async def handle_QUIT(self, server, session, envelope):  # noqa: N802
        self.quits += 1
        return "221 Bye"

    def lost(self, server) -> None:
        self.live.discard(id(server))

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address.startswith("drop-once") and address not in self.dropped_once:
            self.dropped_once.add(address)
            server.transport.close()
            return "250 OK"  # never reaches the client
        if address.startswith("drop") and not address.startswith("drop-once"):
            server.transport.close()
            return "250 OK"
        if address.startswith("slow-rcpt"):
            await asyncio.sleep(self.slowness)
        if address.startswith("throttle"):
            return "454 4.7.0 Throttling failure: Maximum sending rate exceeded."
        if address.startswith("daily"):
            return "454 Throttling failure: Daily message quota exceeded."
        if address.startswith("busy"):
            return "454 4.7.0 Temporary service failure"
        if address.startswith("closing"):
            return "421 4.3.2 Service shutting down"  # and the client must close
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        answer = await super().handle_DATA(server, session, envelope)
        if self.hold_first and len(self.envelopes) <= self.hold_first:
            if self._all_in is None:
                self._all_in = asyncio.Event()
            self._in_data += 1
            if self._in_data == self.hold_first:
                self._all_in.set()
            try:
                await asyncio.wait_for(self._all_in.wait(), 10)
            except TimeoutError:
                return "451 4.3.0 never were so many connections at once"
        recipient = envelope.rcpt_tos[0]
        if recipient.startswith("lost"):
            server.transport.close()  # taken, and the reply never leaves
        if recipient.startswith("slow"):
            await asyncio.sleep(self.slowness)
        return answer


@contextlib.contextmanager
def serving(handler: CountingHandler) -> Iterator[tuple[int, Controller]]:
    """An aiosmtpd server on 127.0.0.1 that tells `handler` when a connection is gone; yields (port, controller)."""

    class Counting(SMTP):
        def connection_lost(self, error):
            handler.lost(self)
            super().connection_lost(error)

    class CountingController(Controller):
        def factory(self):
            return Counting(self.handler, **self.SMTP_kwargs)

    controller = CountingController(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port, controller
    finally:
        controller.stop()


@pytest.fixture
def server() -> Iterator[tuple[CountingHandler, int]]:
    handler = CountingHandler(slowness=1.5)
    with serving(handler) as (port, _):
        yield handler, port


def _arrived(handler: RecordingHandler) -> list[str]:
    return sorted(r for e in handler.envelopes for r in e.rcpt_tos)


def test_messages_arrive_and_refusals_map_to_failed_or_deferred(smtp_server) -> None:
    handler, port = smtp_server
    transport = SmtpTransport(_settings(port))
    ok = transport.send(_message("kim@example.com"))
    rejected = transport.send(_message("reject@example.com"))
    deferred = transport.send(_message("defer@example.com"))
    transport.close()
    assert ok.status == SendStatus.SENT and ok.message_id == "<m1@papers.example.com>"
    assert rejected.status == SendStatus.FAILED and rejected.error.startswith("SMTP 550 5.1.1")
    assert deferred.status == SendStatus.DEFERRED and deferred.error.startswith("SMTP 451")
    (envelope,) = handler.envelopes
    assert envelope.mail_from == "weekly@papers.example.com" and envelope.rcpt_tos == ["kim@example.com"]
    assert BytesParser(policy=policy.default).parsebytes(envelope.original_content)["Subject"] == "hi"


def test_a_line_starting_with_a_dot_arrives_whole(smtp_server) -> None:
    handler, port = smtp_server
    raw = b"From: a@papers.example.com\r\nTo: kim@example.com\r\nSubject: dots\r\n\r\n.\r\n..two\r\n.three"
    transport = SmtpTransport(_settings(port))
    result = transport.send(OutgoingMessage("weekly@papers.example.com", "kim@example.com", (raw,), "issue", "ko"))
    transport.close()
    assert result.status == SendStatus.SENT
    assert handler.envelopes[0].original_content == raw + b"\r\n"


def test_throttling_words_are_throttled_and_the_connection_is_kept(server) -> None:
    handler, port = server
    transport = SmtpTransport(_settings(port))
    throttled = transport.send(_message("throttle@example.com"))
    busy = transport.send(_message("busy@example.com"))
    rejected = transport.send(_message("reject@example.com"))
    ok = transport.send(_message("kim@example.com"))
    transport.close()
    assert throttled.status == SendStatus.THROTTLED
    assert throttled.error == "SMTP 454 4.7.0 Throttling failure: Maximum sending rate exceeded."
    assert (busy.status, rejected.status, ok.status) == (SendStatus.DEFERRED, SendStatus.FAILED, SendStatus.SENT)
    assert _arrived(handler) == ["kim@example.com"] and handler.connects == 1  # RSET after each refusal


def test_a_spent_daily_quota_stops_the_send_with_one_line(server) -> None:
    handler, port = server
    transport = SmtpTransport(_settings(port))
    with pytest.raises(TransportError) as caught:
        transport.send(_message("daily@example.com"))
    transport.close()
    assert str(caught.value) == (
        f"smtp 127.0.0.1:{port}: the daily sending quota is used up (SMTP 454 Throttling failure: Daily message "
        "quota exceeded.) (run the same command tomorrow to resume)"
    )


def test_a_dropped_connection_is_reopened(smtp_server) -> None:
    handler, port = smtp_server
    handler.drop_after = 2
    transport = SmtpTransport(_settings(port))
    results = [transport.send(_message(f"user{n}@example.com")) for n in range(5)]
    transport.close()
    assert [r.status for r in results] == [SendStatus.SENT] * 5
    assert len(handler.envelopes) == 5


def test_a_drop_before_the_end_of_data_is_tried_once_more_in_place(server) -> None:
    handler, port = server
    transport = SmtpTransport(_settings(port))
    once = transport.send(_message("drop-once@example.com"))
    twice = transport.send(_message("drop@example.com"))
    closing = transport.send(_message("closing@example.com"))
    transport.close()
    assert once.status == SendStatus.SENT
    assert twice.status == SendStatus.RETRY
    assert twice.error.startswith("SMTP connection lost before the end of DATA, twice: Connection unexpectedly closed")
    assert closing.status == SendStatus.RETRY and closing.error.endswith("SMTP 421 4.3.2 Service shutting down")
    assert _arrived(handler) == ["drop-once@example.com"]
    assert handler.connects == 5  # the first; one more for each try in place; a new one after the second drop


def test_a_drop_after_the_end_of_data_is_ambiguous_and_not_tried_again(server) -> None:
    handler, port = server
    transport = SmtpTransport(_settings(port))
    lost = transport.send(_message("lost@example.com"))
    after = transport.send(_message("kim@example.com"))
    transport.close()
    assert lost.status == SendStatus.AMBIGUOUS
    assert lost.error.startswith("SMTP connection lost after the end of DATA, the message may have been taken:")
    assert after.status == SendStatus.SENT
    assert _arrived(handler) == ["kim@example.com", "lost@example.com"]  # the lost one once: taken, not repeated


def test_the_end_of_data_is_awaited_longer_than_the_other_steps(server) -> None:
    """RFC 5321 §4.5.3.2.6: 10 minutes for the reply to the final dot; `timeout` (here 0.5 s) for the rest."""
    handler, port = server  # each slow answer takes 1.5 s
    transport = SmtpTransport(_settings(port, timeout=0.5))
    slow_data = transport.send(_message("slow@example.com"))
    slow_rcpt = transport.send(_message("slow-rcpt@example.com"))
    transport.close()
    assert slow_data.status == SendStatus.SENT
    assert slow_rcpt.status == SendStatus.RETRY and "timed out" in slow_rcpt.error
    assert _arrived(handler) == ["slow@example.com"]


def test_no_server_stops_the_send_with_one_line() -> None:
    port = free_port()
    transport = SmtpTransport(_settings(port, timeout=2))
    with pytest.raises(TransportError) as caught:
        transport.send(_message("kim@example.com"))
    assert str(caught.value).startswith(f"smtp 127.0.0.1:{port}: cannot connect:")
    assert str(caught.value).endswith("(check host, port and security)")


def test_a_server_gone_after_the_start_is_retry() -> None:
    handler = CountingHandler()
    with serving(handler) as (port, _):
        transport = SmtpTransport(_settings(port, timeout=2))
        first = transport.send(_message("kim@example.com"))
    gone = transport.send(_message("alice@example.com"))  # the pooled connection is dead, and no new one opens
    transport.close()
    assert first.status == SendStatus.SENT
    assert gone.status == SendStatus.RETRY and "cannot connect" in gone.error


def test_many_threads_share_a_pool_of_four_reused_connections() -> None:
    handler = CountingHandler(hold_first=4)  # the first four messages wait until four are in DATA at once
    threads, each = 16, 10
    with serving(handler) as (port, _):
        transport = SmtpTransport(_settings(port, connections=4))
        assert transport.max_in_flight == 4 and transport.quota() is None
        results: dict[str, SendStatus] = {}
        start = threading.Barrier(threads)

        def send_some(worker: int) -> None:
            start.wait()
            for i in range(each):
                address = f"w{worker}.m{i}@example.com"
                results[address] = transport.send(_message(address)).status

        workers = [threading.Thread(target=send_some, args=(w,)) for w in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        assert set(results.values()) == {SendStatus.SENT} and len(results) == threads * each
        assert _arrived(handler) == sorted(results)  # each exactly once
        assert handler.most_open == 4 and handler.connects == 4 == transport.connects  # reused, never more
        transport.close()
        wait_until(lambda: not handler.live, what="the pooled connections to close")
        assert handler.quits == 4


def test_the_pool_size_comes_from_the_settings(publication: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert SmtpTransport.from_settings(load_settings(publication)).max_in_flight == 4
    monkeypatch.setenv("NEWSLETTER_SMTP_CONNECTIONS", "7")
    assert SmtpTransport.from_settings(load_settings(publication)).max_in_flight == 7


def _tls_contexts(tmp_path):
    """(server context, client context) for a certificate made here for 127.0.0.1."""
    import ssl

    from cryptography.hazmat.primitives import serialization

    from tests.conftest import make_certificate

    key, cert = make_certificate("127.0.0.1", ip_address="127.0.0.1")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cafile=str(cert_path))
    return server, client


def test_starttls_with_login(tmp_path) -> None:
    """STARTTLS, then AUTH: right credentials send, wrong ones stop the send with one line."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    from newsletter.errors import TransportError
    from tests.conftest import RecordingHandler, free_port

    server_tls, client_tls = _tls_contexts(tmp_path)

    def authenticate(server, session, envelope, mechanism, data):
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"editor", b"s3cret")
        return AuthResult(success=ok, handled=False)  # aiosmtpd answers 235 or 535 itself

    handler = RecordingHandler()
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_tls,
        require_starttls=True,
        authenticator=authenticate,
        auth_required=True,
        auth_exclude_mechanism=["LOGIN"],
    )
    controller.start()
    try:
        config = SmtpSettings(host="127.0.0.1", port=port, security="starttls", timeout=5)
        good = SmtpTransport(config, "editor", "s3cret", ssl_context=client_tls)
        assert good.send(_message("kim@example.com")).status == SendStatus.SENT
        good.close()
        bad = SmtpTransport(config, "editor", "wrong", ssl_context=client_tls)
        try:
            bad.send(_message("kim@example.com"))
        except TransportError as err:
            assert str(err).startswith(f"smtp 127.0.0.1:{port}: authentication failed for 'editor' (SMTP 535")
            assert str(err).endswith("(check NEWSLETTER_SMTP_USER and NEWSLETTER_SMTP_PASSWORD)")
        else:
            raise AssertionError("no error")
    finally:
        controller.stop()
    assert len(handler.envelopes) == 1


def test_implicit_tls(tmp_path) -> None:
    from aiosmtpd.controller import Controller

    from tests.conftest import RecordingHandler, free_port

    server_tls, client_tls = _tls_contexts(tmp_path)
    handler = RecordingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, ssl_context=server_tls)
    controller.start()
    try:
        transport = SmtpTransport(
            SmtpSettings(host="127.0.0.1", port=port, security="tls", timeout=5), ssl_context=client_tls
        )
        assert transport.send(_message("kim@example.com")).status == SendStatus.SENT
        transport.close()
    finally:
        controller.stop()
    assert handler.envelopes[0].rcpt_tos == ["kim@example.com"]


@pytest.mark.parametrize("name", ["NEWSLETTER_SMTP_USER", "NEWSLETTER_SMTP_PASSWORD"])
@pytest.mark.parametrize("value", ["pässwort-mit-umlaut", "two\nlines", "\udcff-not-utf8"])
def test_credentials_smtplib_cannot_send_are_one_line_naming_the_variable(
    publication: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """smtplib's AUTH encodes as ASCII: such a value used to be an 'unexpected' UnicodeEncodeError at login."""
    from newsletter.errors import ConfigError

    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        SmtpTransport.from_settings(load_settings(publication))
    assert str(raised.value) == (
        f"{name}: holds a character that is not printable ASCII, which SMTP authentication here cannot send "
        "(set it on one line; ask the relay for ASCII credentials)"
    )
