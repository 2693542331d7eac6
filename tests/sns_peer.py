"""An SNS of our own for tests: an RSA key, a self-signed certificate, a topic, and messages signed the way
SNS signs them (SignatureVersion 1: SHA1, 2: SHA256 over the canonical string), written from the SNS docs
rather than from newsletter/sns.py, so the two check each other."""

from __future__ import annotations

import base64
import json
import urllib.error
from typing import Any

from tests import conftest

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"
OTHER_TOPIC = "arn:aws:sns:us-east-1:999999999999:someone-elses"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"

# https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html: name\nvalue\n for these keys,
# in this order; Subject only when the message has one.
CANONICAL = {
    "Notification": ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"],
    "SubscriptionConfirmation": ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"],
    "UnsubscribeConfirmation": ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"],
}


def subscribe_url(topic: str, region: str = "us-east-1") -> str:
    return f"https://sns.{region}.amazonaws.com/?Action=ConfirmSubscription&TopicArn={topic}&Token=t0k3n"


class SnsPeer:
    """Signs messages with a key made here; `fetch` plays the sns.<region>.amazonaws.com hosts and records
    every URL asked for (the certificate at CERT_URL, 200 for a subscription URL, 404 for anything else)."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives import serialization

        self.key, certificate = conftest.make_certificate("sns.amazonaws.com")
        self.pem = certificate.public_bytes(serialization.Encoding.PEM)
        self.fetched: list[str] = []

    def fetch(self, url: str) -> bytes:
        self.fetched.append(url)
        if url.endswith(".pem") and url.split("/", 3)[-1] == CERT_URL.split("/", 3)[-1]:
            return self.pem
        if "Action=ConfirmSubscription" in url:
            return b"<ConfirmSubscriptionResponse><ConfirmSubscriptionResult/></ConfirmSubscriptionResponse>"
        raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)  # type: ignore[arg-type]

    def sign(self, message: dict[str, Any], version: str = "1", cert_url: str = CERT_URL) -> dict[str, Any]:
        """`message` with SignatureVersion, SigningCertURL and a Signature over its canonical string."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        message = {**message, "SignatureVersion": version, "SigningCertURL": cert_url}
        kind = message.get("Type")
        keys = CANONICAL[kind] if isinstance(kind, str) and kind in CANONICAL else CANONICAL["Notification"]
        canonical = "".join(f"{k}\n{message[k]}\n" for k in keys if k in message)
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 - SNS version 1
        data = canonical.encode("utf-8", "surrogatepass")  # hostile tests sign lone surrogates too
        signature = self.key.sign(data, padding.PKCS1v15(), algorithm)
        message["Signature"] = base64.b64encode(signature).decode()
        return message

    def notification(self, record: Any, topic: str = TOPIC, version: str = "1", **extra: Any) -> dict[str, Any]:
        """A signed Notification carrying `record` (JSON-encoded unless it is a string already)."""
        return self.sign(
            {
                "Type": "Notification",
                "MessageId": "0b4e8a0c-1111-2222-3333-444455556666",
                "TopicArn": topic,
                "Message": record if isinstance(record, str) else json.dumps(record),
                "Timestamp": "2023-09-25T01:00:00.000Z",
                **extra,
            },
            version,
        )

    def confirmation(self, topic: str = TOPIC, kind: str = "SubscriptionConfirmation", **extra: Any) -> dict[str, Any]:
        return self.sign(
            {
                "Type": kind,
                "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
                "Token": "t0k3n",
                "TopicArn": topic,
                "Message": f"You have chosen to subscribe to the topic {topic}.",
                "SubscribeURL": subscribe_url(topic),
                "Timestamp": "2023-09-25T01:00:00.000Z",
                **extra,
            }
        )
