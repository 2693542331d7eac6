"""The SMTP transport against a real aiosmtpd server on 127.0.0.1: what arrives, and 5xx/4xx/dropped connections."""

from __future__ import annotations

from email import policy
from email.parser import BytesParser

from newsletter.config import SmtpSettings
from newsletter.transports.base import OutgoingMessage, SendStatus
from newsletter.transports.smtp import SmtpTransport

RAW = b"From: a@papers.example.com\r\nTo: {to}\r\nSubject: hi\r\nMessage-ID: <m1@papers.example.com>\r\n\r\nbody\r\n"


def _message(to: str) -> OutgoingMessage:
    return OutgoingMessage("weekly@papers.example.com", to, RAW.replace(b"{to}", to.encode()), "issue", "ko")


def test_messages_arrive_and_refusals_map_to_failed_or_deferred(smtp_server) -> None:
    handler, port = smtp_server
    transport = SmtpTransport(SmtpSettings(host="127.0.0.1", port=port, security="none", timeout=5))
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


def test_a_dropped_connection_is_reopened(smtp_server) -> None:
    handler, port = smtp_server
    handler.drop_after = 2
    transport = SmtpTransport(SmtpSettings(host="127.0.0.1", port=port, security="none", timeout=5))
    results = [transport.send(_message(f"user{n}@example.com")) for n in range(5)]
    transport.close()
    assert [r.status for r in results] == [SendStatus.SENT] * 5
    assert len(handler.envelopes) == 5


def test_no_server_stops_the_send_with_one_line() -> None:
    from tests.conftest import free_port

    port = free_port()
    transport = SmtpTransport(SmtpSettings(host="127.0.0.1", port=port, security="none", timeout=2))
    try:
        transport.send(_message("kim@example.com"))
    except Exception as err:  # noqa: BLE001 - the type and text are the assertion
        assert type(err).__name__ == "TransportError"
        assert str(err).startswith(f"smtp 127.0.0.1:{port}: cannot connect:")
        assert str(err).endswith("(check host, port and security)")
    else:
        raise AssertionError("no error")
