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
