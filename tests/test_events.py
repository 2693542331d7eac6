"""SES bounces and complaints: from SQS through moto's server over HTTP (newsletter events), and SNS HTTP
notifications signed with a certificate made here, through the real web server."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import boto3
import pytest
import requests

from newsletter.config import load_settings
from newsletter.store import SubscriberStatus, add_subscriber, open_store, subscriber_by_email
from tests import conftest

BOUNCE = {
    "eventType": "Bounce",
    "mail": {"messageId": "m-1", "tags": {"issue": ["2023-09-25-top-ml-papers"]}},
    "bounce": {
        "bounceType": "Permanent",
        "bounceSubType": "General",
        "feedbackId": "fb-1",
        "timestamp": "2023-09-25T01:00:00.000Z",
        "bouncedRecipients": [{"emailAddress": "gone@example.com", "status": "5.1.1"}],
    },
}


def _transient(n: int) -> dict:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Transient",
            "bounceSubType": "MailboxFull",
            "feedbackId": f"fb-t{n}",
            "bouncedRecipients": [{"emailAddress": "full@example.com"}],
        },
    }


COMPLAINT = {
    "notificationType": "Complaint",
    "complaint": {
        "feedbackId": "fb-c",
        "complaintFeedbackType": "abuse",
        "complainedRecipients": [{"emailAddress": "angry@example.com"}],
    },
}


def _sns_envelope(record: dict) -> str:
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": "x",
            "TopicArn": "arn:aws:sns:us-east-1:1:ses",
            "Message": json.dumps(record),
            "Timestamp": "2023-09-25T01:00:00.000Z",
        }
    )


def test_events_from_sqs_suppress_addresses(publication: Path, run, ses, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint, _ = ses
    monkeypatch.setenv("NEWSLETTER_SES_ENDPOINT_URL", endpoint)
    settings = load_settings(publication)
    with open_store(settings.database_url) as store:
        for email in ("gone@example.com", "full@example.com", "angry@example.com", "fine@example.com"):
            add_subscriber(store, email)
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoint)
    queue = sqs.create_queue(QueueName="ses-events")["QueueUrl"]
    bodies = [
        _sns_envelope(BOUNCE),
        _sns_envelope(BOUNCE),  # SNS delivers twice at times
        *[_sns_envelope(_transient(n)) for n in range(3)],
        json.dumps(COMPLAINT),  # raw message delivery
        "this is not JSON",
    ]
    for body in bodies:
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    result = run("events", "--queue-url", queue, "--once")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        "Done: 2 bounced, 1 complained, 2 counted, 1 duplicate, 6 messages, 1 unreadable"
    )
    with open_store(settings.database_url) as store:
        status = {
            e: subscriber_by_email(store, e).status
            for e in ("gone@example.com", "full@example.com", "angry@example.com", "fine@example.com")
        }
        assert subscriber_by_email(store, "full@example.com").bounce_count == 3
    assert status == {
        "gone@example.com": SubscriberStatus.BOUNCED,
        "full@example.com": SubscriberStatus.BOUNCED,
        "angry@example.com": SubscriberStatus.COMPLAINED,
        "fine@example.com": SubscriberStatus.ACTIVE,
    }
    # the unreadable message stays for the dead-letter queue; the others were deleted after the commit
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert (
        int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"]) == 1
    )
    # bounced and complained addresses are never mailed again
    assert run("send", "2023-09-25-top-ml-papers", "--dry-run").stdout.count("built 1 ko") == 1


@pytest.fixture(scope="module")
def signing_key():
    """An RSA key and a self-signed certificate, standing in for SNS's (the web fixture serves its PEM)."""
    from cryptography.hazmat.primitives import serialization

    key, certificate = conftest.make_certificate("sns.amazonaws.com")
    conftest.SNS_CERTIFICATE[:] = [certificate.public_bytes(serialization.Encoding.PEM)]
    return key


def _signed(key, message: dict, version: str = "1") -> dict:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    from newsletter.events import SIGNED_KEYS

    message = {
        **message,
        "SignatureVersion": version,
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem",
    }
    canonical = "".join(f"{k}\n{message[k]}\n" for k in SIGNED_KEYS[message["Type"]] if k in message)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    message["Signature"] = base64.b64encode(key.sign(canonical.encode(), padding.PKCS1v15(), algorithm)).decode()
    return message


@pytest.mark.parametrize("version", ["1", "2"])
def test_sns_notification_with_a_valid_signature_is_applied(web, signing_key, version: str) -> None:
    server, store, _, _ = web
    add_subscriber(store, "gone@example.com")
    message = _signed(signing_key, json.loads(_sns_envelope(BOUNCE)), version)
    answer = requests.post(
        f"{server.url}/ses/notifications",
        data=json.dumps(message),
        timeout=5,
        headers={"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": "Notification"},
    )
    assert answer.status_code == 200
    assert subscriber_by_email(store, "gone@example.com").status == SubscriberStatus.BOUNCED


@pytest.mark.parametrize("forgery", ["tampered", "foreign-cert-host", "http-cert", "unsigned"])
def test_sns_forgeries_are_refused(web, signing_key, forgery: str) -> None:
    server, store, _, _ = web
    add_subscriber(store, "gone@example.com")
    message = _signed(signing_key, json.loads(_sns_envelope(BOUNCE)))
    if forgery == "tampered":
        record = json.loads(message["Message"])
        record["bounce"]["bouncedRecipients"][0]["emailAddress"] = "fine@example.com"
        message["Message"] = json.dumps(record)
    elif forgery == "foreign-cert-host":
        message["SigningCertURL"] = "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem"
    elif forgery == "http-cert":
        message["SigningCertURL"] = "http://sns.us-east-1.amazonaws.com/cert.pem"
    else:
        message.pop("Signature")
    before = list(server.fetched)
    answer = requests.post(f"{server.url}/ses/notifications", data=json.dumps(message), timeout=5)
    assert answer.status_code == 403
    assert subscriber_by_email(store, "gone@example.com").status == SubscriberStatus.ACTIVE
    assert all("evil" not in url and url.startswith("https://") for url in server.fetched[len(before) :])


def test_sns_subscription_is_confirmed_after_the_signature_checks(web, signing_key) -> None:
    server, _, _, _ = web
    confirm = "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn&Token=t"
    message = _signed(
        signing_key,
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": "m",
            "Token": "t",
            "TopicArn": "arn:aws:sns:us-east-1:1:ses",
            "Message": "confirm",
            "SubscribeURL": confirm,
            "Timestamp": "2023-09-25T01:00:00.000Z",
        },
    )
    answer = requests.post(f"{server.url}/ses/notifications", data=json.dumps(message), timeout=5)
    assert answer.status_code == 200 and server.fetched[-1] == confirm
