"""SendEmail over TLS, as SES is always reached: the certificate is verified (a self-signed one is refused,
nothing is sent), and a trusted one carries the request and its answer on a kept-alive connection."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from newsletter.transports.ses_request import Answer, NotOpened, SendEmailRequest
from newsletter.transports.sigv4 import SigningCredentials
from tests.conftest import ThreadedHttpServer, make_certificate

RAW = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nhello\r\n"


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    key, cert = make_certificate("127.0.0.1", ip_address="127.0.0.1")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class _Ses:
    """An HTTPS endpoint that takes every SendEmail; counts requests and the connections they came on."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.requests: list[dict[str, object]] = []
        self.connections: set[tuple[str, int]] = set()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                endpoint.requests.append({"path": self.path, "auth": self.headers["Authorization"], **body})
                endpoint.connections.add(self.client_address)
                data = json.dumps({"MessageId": f"m{len(endpoint.requests)}"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.http = ThreadedHttpServer(Handler, tls=context)
        self.url = self.http.url

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def tls_ses(tmp_path: Path) -> Iterator[tuple[_Ses, Path]]:
    cert, key = _certificate(tmp_path)
    endpoint = _Ses(cert, key)
    yield endpoint, cert
    endpoint.close()


class _Credentials:
    def get_frozen_credentials(self) -> SigningCredentials:
        return SigningCredentials("AKIDTLS", "secret")


def _request(url: str) -> SendEmailRequest:
    return SendEmailRequest(url, "us-east-1", _Credentials(), connections=2, connect_timeout=5, read_timeout=5)


def _send(request: SendEmailRequest, n: int) -> Answer:
    return request.send(
        {"FromEmailAddress": "a@example.com", "Destination": {"ToAddresses": [f"r{n}@example.com"]}}, (RAW,)
    )


def test_a_certificate_nobody_trusts_is_refused_and_nothing_is_sent(tls_ses) -> None:
    endpoint, _ = tls_ses
    with pytest.raises(NotOpened) as refused:  # the SES transport's RETRY: nothing was written
        _send(_request(endpoint.url), 1)
    assert "Failed to establish a new connection" in str(refused.value)
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
    assert endpoint.requests == []


def test_a_trusted_certificate_carries_each_request_on_one_kept_alive_connection(
    tls_ses, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, cert = tls_ses
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the system's trust store, as OpenSSL reads it
    request = _request(endpoint.url)
    results = [_send(request, n) for n in range(3)]
    assert [(r.message_id, r.error) for r in results] == [(f"m{n}", None) for n in (1, 2, 3)]
    assert [r["path"] for r in endpoint.requests] == ["/v2/email/outbound-emails"] * 3
    assert all(str(r["auth"]).startswith("AWS4-HMAC-SHA256 Credential=AKIDTLS/") for r in endpoint.requests)
    assert len(endpoint.connections) == 1
