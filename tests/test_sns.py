"""POST /ses/notifications trusts only the configured SNS topic: messages signed with a certificate and topic
made here (tests/sns_peer.py), through the real app under waitress on 127.0.0.1."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import requests

from newsletter.config import load_settings
from newsletter.events import sns_handler
from newsletter.store import SubscriberStatus, add_subscriber, open_store, subscriber_by_email
from newsletter.web import create_app
from tests import conftest
from tests.sns_peer import CERT_URL, OTHER_TOPIC, TOPIC, SnsPeer, subscribe_url

BOUNCE = {
    "eventType": "Bounce",
    "mail": {"messageId": "m-1"},
    "bounce": {
        "bounceType": "Permanent",
        "bounceSubType": "General",
        "feedbackId": "fb-1",
        "timestamp": "2023-09-25T01:00:00.000Z",
        "bouncedRecipients": [{"emailAddress": "gone@example.com", "status": "5.1.1"}],
    },
}
NO_TOPIC_LINE = "set topic_arn in [tool.newsletter.ses] of pyproject.toml"


def configure_topics(publication: Path, value: str) -> None:
    """Append `[tool.newsletter.ses] topic_arn = <value>` (TOML) to the publication's settings."""
    path = publication / "pyproject.toml"
    path.write_text(path.read_text(encoding="utf-8") + f"\n[tool.newsletter.ses]\ntopic_arn = {value}\n", "utf-8")


class SnsSite:
    """The web app with an SNS handler whose fetch is `peer`'s, under waitress."""

    def __init__(self, publication: Path, peer: SnsPeer) -> None:
        self.settings = load_settings(publication)
        self.store = open_store(self.settings.database_url)
        self.peer = peer
        handler = sns_handler(self.settings, store=self.store, fetch=peer.fetch)
        self.server = conftest.WebServer(create_app(self.settings, self.store, events_handler=handler))
        add_subscriber(self.store, "gone@example.com")

    def post(self, message: dict | bytes | str) -> requests.Response:
        body = message if isinstance(message, bytes | str) else json.dumps(message)
        return requests.post(
            f"{self.server.url}/ses/notifications",
            data=body,
            timeout=10,
            headers={"Content-Type": "text/plain; charset=UTF-8"},
        )

    def status(self) -> SubscriberStatus:
        return subscriber_by_email(self.store, "gone@example.com").status

    def close(self) -> None:
        self.server.close()
        self.store.close()


@pytest.fixture
def peer() -> SnsPeer:
    return SnsPeer()


@pytest.fixture
def topics() -> str | None:
    """The topic_arn TOML value (a test parametrizes it); None: no topic configured."""
    return None


@pytest.fixture
def site(publication: Path, peer: SnsPeer, topics: str | None, monkeypatch: pytest.MonkeyPatch):
    """An SnsSite of the publication with `topics` configured."""
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "a-test-secret-that-is-long-enough")
    if topics is not None:
        configure_topics(publication, topics)
    opened = SnsSite(publication, peer)
    try:
        yield opened
    finally:
        opened.close()


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "newsletter.events" and r.levelno >= logging.WARNING]


@pytest.mark.parametrize("kind", ["Notification", "SubscriptionConfirmation"])
def test_without_a_topic_nothing_is_confirmed_fetched_or_applied(
    site: SnsSite, peer: SnsPeer, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="newsletter.events")
    message = peer.notification(BOUNCE) if kind == "Notification" else peer.confirmation()
    answer = site.post(message)
    assert answer.status_code == 403
    assert peer.fetched == []  # neither the certificate nor the SubscribeURL
    assert site.status() == SubscriberStatus.ACTIVE
    assert any(NO_TOPIC_LINE in line and line.startswith("SNS message refused (403)") for line in refusals(caplog))


@pytest.mark.parametrize("topics", [json.dumps(TOPIC)])
@pytest.mark.parametrize("version", ["1", "2"])
def test_the_configured_topic_is_confirmed_once_and_its_bounce_applied(
    site: SnsSite, peer: SnsPeer, version: str
) -> None:
    confirmation = peer.sign({k: v for k, v in peer.confirmation().items() if not k.startswith("Sig")}, version)
    answer = site.post(confirmation)
    assert (answer.status_code, answer.text) == (200, "subscribed\n")
    assert peer.fetched == [CERT_URL, subscribe_url(TOPIC)]
    assert site.post(peer.notification(BOUNCE, version=version)).status_code == 200
    assert site.status() == SubscriberStatus.BOUNCED
    assert peer.fetched == [CERT_URL, subscribe_url(TOPIC)]  # the certificate is fetched once, then kept


@pytest.mark.parametrize("topics", [json.dumps([OTHER_TOPIC.replace("999999999999", "111111111111"), TOPIC])])
def test_any_topic_of_a_list_is_trusted(site: SnsSite, peer: SnsPeer) -> None:
    assert site.post(peer.notification(BOUNCE)).status_code == 200
    assert site.status() == SubscriberStatus.BOUNCED


@pytest.mark.parametrize("topics", [json.dumps(TOPIC)])
@pytest.mark.parametrize("kind", ["Notification", "SubscriptionConfirmation"])
def test_another_topic_is_refused_before_anything_is_fetched(
    site: SnsSite, peer: SnsPeer, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="newsletter.events")
    # signed correctly (with the key of the certificate SNS would serve): only the topic is wrong
    message = peer.notification(BOUNCE, topic=OTHER_TOPIC) if kind == "Notification" else peer.confirmation(OTHER_TOPIC)
    answer = site.post(message)
    assert answer.status_code == 403
    assert peer.fetched == []
    assert site.status() == SubscriberStatus.ACTIVE
    assert any(OTHER_TOPIC in line and "not the configured topic_arn" in line for line in refusals(caplog))


def _forged(peer: SnsPeer, forgery: str) -> dict:
    from tests.sns_peer import SnsPeer as Other

    message = peer.notification(BOUNCE)
    if forgery == "tampered message":
        record = json.loads(message["Message"])
        record["bounce"]["bouncedRecipients"][0]["emailAddress"] = "fine@example.com"
        message["Message"] = json.dumps(record)
    elif forgery == "tampered topic":
        return {**message, "TopicArn": TOPIC.replace("ses-events", "ses-events2")}
    elif forgery == "another key":
        return Other().notification(BOUNCE)
    elif forgery == "SHA1 signature labelled version 2":
        message["SignatureVersion"] = "2"
    elif forgery == "version 3":
        message["SignatureVersion"] = "3"
    elif forgery == "not base64":
        message["Signature"] = "!!!" + message["Signature"]
    elif forgery == "unsigned":
        message.pop("Signature")
    return message


@pytest.mark.parametrize("topics", [json.dumps(TOPIC)])
@pytest.mark.parametrize(
    "forgery",
    [
        "tampered message",
        "tampered topic",
        "another key",
        "SHA1 signature labelled version 2",
        "version 3",
        "not base64",
        "unsigned",
    ],
)
def test_a_bad_signature_is_refused(site: SnsSite, peer: SnsPeer, forgery: str) -> None:
    answer = site.post(_forged(peer, forgery))
    assert answer.status_code in {400, 403} if forgery == "unsigned" else answer.status_code == 403
    assert site.status() == SubscriberStatus.ACTIVE
    assert all(url == CERT_URL for url in peer.fetched)


@pytest.mark.parametrize("topics", [json.dumps(TOPIC)])
@pytest.mark.parametrize(
    "cert_url",
    [
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-0123456789abcdef.pem",
        "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem",  # not the topic's
        "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-0123456789abcdef.pem",
        "https://evil@sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem",
        "https://sns.us-east-1.amazonaws.com.cn/SimpleNotificationService-0123456789abcdef.pem",
        "https://[sns.us-east-1.amazonaws.com/x.pem",
    ],
)
def test_a_certificate_from_anywhere_but_the_topics_sns_host_is_not_fetched(
    site: SnsSite, peer: SnsPeer, cert_url: str
) -> None:
    message = peer.sign({k: v for k, v in peer.notification(BOUNCE).items() if not k.startswith("Sig")}, "1", cert_url)
    assert site.post(message).status_code == 403
    assert peer.fetched == [] and site.status() == SubscriberStatus.ACTIVE


@pytest.mark.parametrize("topics", [json.dumps(TOPIC)])
@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/?Action=ConfirmSubscription&Token=t",
        "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=t",
        "http://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=t",
    ],
)
def test_a_subscribe_url_off_the_topics_sns_host_is_not_fetched(site: SnsSite, peer: SnsPeer, url: str) -> None:
    assert site.post(peer.confirmation(SubscribeURL=url)).status_code == 403
    assert url not in peer.fetched


@pytest.mark.parametrize("topics", [json.dumps(TOPIC)])
def test_an_unreachable_certificate_or_subscribe_url_is_a_refusal_not_a_500(
    site: SnsSite, peer: SnsPeer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="newsletter.events")
    missing = CERT_URL.replace("0123456789abcdef", "404")
    message = peer.sign({k: v for k, v in peer.notification(BOUNCE).items() if not k.startswith("Sig")}, "1", missing)
    assert site.post(message).status_code == 403  # fetch raised HTTPError 404
    assert any("could not fetch" in line for line in refusals(caplog))
    url = subscribe_url(TOPIC).replace("Action=ConfirmSubscription", "Action=Gone")
    answer = site.post(peer.confirmation(SubscribeURL=url))
    assert answer.status_code == 502 and any("not confirmed" in line for line in refusals(caplog))


def test_an_aws_cn_topic_takes_its_certificate_from_the_com_cn_host(publication: Path, peer: SnsPeer) -> None:
    cn_topic = "arn:aws-cn:sns:cn-north-1:123456789012:ses-events"
    configure_topics(publication, json.dumps(cn_topic))
    settings = load_settings(publication)
    cn_cert = "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-0123456789abcdef.pem"
    with open_store(settings.database_url) as store:
        add_subscriber(store, "gone@example.com")
        handle = sns_handler(settings, store=store, fetch=peer.fetch)
        unsigned = {k: v for k, v in peer.notification(BOUNCE, topic=cn_topic).items() if not k.startswith("Sig")}
        wrong_host = peer.sign(unsigned, "2", cn_cert.replace(".com.cn", ".com"))
        assert handle(json.dumps(wrong_host).encode(), {})[0] == 403 and peer.fetched == []
        assert handle(json.dumps(peer.sign(unsigned, "2", cn_cert)).encode(), {})[0] == 200
        assert peer.fetched == [cn_cert]
        assert subscriber_by_email(store, "gone@example.com").status == SubscriberStatus.BOUNCED


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('"arn:aws:sns:us-east-1:1:ses"', "'arn:aws:sns:us-east-1:1:ses' is not an SNS topic ARN"),
        ('"arn:aws:sqs:us-east-1:123456789012:q"', "'arn:aws:sqs:us-east-1:123456789012:q' is not an SNS topic ARN"),
        ('"arn:aws:sns:cn-north-1:123456789012:t"', "'arn:aws:sns:cn-north-1:123456789012:t' is not an SNS topic ARN"),
        (
            '"arn:aws-cn:sns:us-east-1:123456789012:t"',
            "'arn:aws-cn:sns:us-east-1:123456789012:t' is not an SNS topic ARN",
        ),
        (
            '"arn:aws:sns:us-east-1:123456789012:a b"',
            "'arn:aws:sns:us-east-1:123456789012:a b' is not an SNS topic ARN",
        ),
        ('["arn:aws:sns:us-east-1:123456789012:ok", "ses"]', "'ses' is not an SNS topic ARN"),
    ],
)
def test_a_topic_arn_that_is_not_an_sns_topic_is_one_line(run, publication: Path, value: str, problem: str) -> None:
    configure_topics(publication, value)
    result = run("check")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: pyproject.toml [tool.newsletter.ses] topic_arn: {problem} "
        "(use arn:aws:sns:<region>:<12-digit account>:<topic name>, as the SNS console shows it)\n"
    )


@pytest.mark.parametrize("value", ["42", "[1]", "{ a = 1 }"])
def test_a_topic_arn_of_the_wrong_type_is_one_line(run, publication: Path, value: str) -> None:
    configure_topics(publication, value)
    result = run("check")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: pyproject.toml [tool.newsletter.ses] topic_arn: ")
    assert "not an ARN or a list of ARNs (use" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "value",
    [
        "arn:aws:sns:us-east-1:123456789012:ses-events",
        "arn:aws-cn:sns:cn-northwest-1:123456789012:ses_events",
        "arn:aws-us-gov:sns:us-gov-west-1:123456789012:ses.fifo",
    ],
)
def test_topic_arns_of_each_partition_are_read(publication: Path, value: str) -> None:
    configure_topics(publication, json.dumps([value, ""]))
    assert load_settings(publication).ses.topic_arns == (value,)


@pytest.mark.parametrize("topics", [json.dumps(TOPIC)])
@pytest.mark.parametrize("certificate", ["not PEM", "an EC key", "empty"])
def test_a_certificate_that_is_not_a_pem_rsa_certificate_is_a_refusal(
    site: SnsSite, peer: SnsPeer, certificate: str
) -> None:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if certificate == "an EC key":
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "sns.amazonaws.com")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        peer.pem = cert.public_bytes(serialization.Encoding.PEM)
    else:
        peer.pem = b"" if certificate == "empty" else b"<html>Not a certificate</html>"
    assert site.post(peer.notification(BOUNCE)).status_code == 403
    assert site.status() == SubscriberStatus.ACTIVE


@pytest.mark.parametrize("topics", [json.dumps(TOPIC)])
def test_a_refusal_is_one_log_line_even_for_a_url_with_line_breaks(
    site: SnsSite, peer: SnsPeer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="newsletter.events")
    forged = CERT_URL.replace(".pem", "\nWARNING forged line\r\n.pem")
    message = peer.sign({k: v for k, v in peer.notification(BOUNCE).items() if not k.startswith("Sig")}, "1", forged)
    assert site.post(message).status_code == 403 and peer.fetched == []
    (line,) = refusals(caplog)
    assert "\n" not in line and "\r" not in line


@pytest.mark.parametrize("topics", [json.dumps(TOPIC)])
def test_a_flood_of_forged_messages_costs_one_fetch_and_one_log_line_a_while(
    site: SnsSite, peer: SnsPeer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forged messages naming the configured topic and a certificate URL on its SNS host that does not answer:
    the URL is fetched once, not for each (sns.FAILED_FETCH_SECONDS), and the refusals make one log line,
    the next one (once REFUSAL_LOG_SECONDS passed) counting those in between."""
    import newsletter.events

    caplog.set_level(logging.WARNING, logger="newsletter.events")
    missing = CERT_URL.replace("0123456789abcdef", "404")
    forged = peer.sign({k: v for k, v in peer.notification(BOUNCE).items() if not k.startswith("Sig")}, "1", missing)
    for _ in range(50):
        assert site.post(forged).status_code == 403
    assert peer.fetched == [missing]
    (line,) = refusals(caplog)
    assert "could not fetch" in line
    monkeypatch.setattr(newsletter.events, "REFUSAL_LOG_SECONDS", 0.0)  # the while has passed
    assert site.post(forged).status_code == 403
    assert (
        "failed lately: not fetched again for 60 s (49 more refused since the last such line)" in refusals(caplog)[-1]
    )
    assert peer.fetched == [missing]


class _Peer:
    """A tiny HTTP server on 127.0.0.1: /redirect answers 302 to /target, /big 100 KB, /cert a small body."""

    def __init__(self) -> None:
        import http.server

        self.paths: list[str] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                owner.paths.append(self.path)
                if self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", "/target")
                    self.end_headers()
                    return
                body = b"x" * 100_000 if self.path == "/big" else b"small"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.http = conftest.ThreadedHttpServer(Handler)
        self.url = self.http.url

    def close(self) -> None:
        self.http.close()


def test_fetching_follows_no_redirect_reads_at_most_64_kb_and_reports_errors_as_refusals() -> None:
    from newsletter.sns import NotificationError, fetch_url

    peer = _Peer()
    try:
        assert fetch_url(f"{peer.url}/cert") == b"small"
        with pytest.raises(NotificationError, match="could not fetch .*302"):
            fetch_url(f"{peer.url}/redirect")
        with pytest.raises(NotificationError, match="more than 65536 bytes"):
            fetch_url(f"{peer.url}/big")
        assert peer.paths == ["/cert", "/redirect", "/big"]  # /target was never asked for
    finally:
        peer.close()
    with pytest.raises(NotificationError, match="could not fetch"):
        fetch_url(peer.url + "/cert")  # nobody listens any more


def test_newsletter_serve_without_a_topic_says_so_and_refuses_sns(publication: Path, peer: SnsPeer) -> None:
    """The real command: one warning at start naming the setting, then 403 and a log line per message."""
    import os
    import subprocess
    import sys
    import threading

    port = conftest.free_port()
    env = {**os.environ, "NEWSLETTER_SECRET_KEY": "a-test-secret-that-is-long-enough"}
    command = [sys.executable, "-m", "newsletter", "--root", str(publication), "serve", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        conftest.wait_until(
            lambda: conftest._responds(requests, f"http://127.0.0.1:{port}"), 30, "newsletter serve to answer"
        )
        answer = requests.post(f"http://127.0.0.1:{port}/ses/notifications", json=peer.confirmation(), timeout=10)
        assert answer.status_code == 403
        conftest.wait_until(lambda: any("SNS message refused (403)" in line for line in lines), 10, "the log line")
    finally:
        process.terminate()
        process.wait(timeout=10)
    start = [line for line in lines if "will refuse every message" in line]
    assert len(start) == 1 and NO_TOPIC_LINE in start[0]
