"""SES bounce and complaint notifications → Events → suppression in the store.

Two ways in: `newsletter events` polls an SQS queue (SES configuration set → SNS topic → SQS), and the web
app's `POST /ses/notifications` takes SNS HTTP deliveries, verifying each message's signature against a
certificate that must come from an `sns.<region>.amazonaws.com` host. A queue message is deleted only
after the store has committed what it said.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import re
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .config import Settings
from .store import Store, record_event

log = logging.getLogger(__name__)
SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
TRANSIENT_LIMIT = 3  # transient bounces before an address counts as bounced
SIGNED_KEYS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}


class NotificationError(ValueError):
    """A notification that cannot be read or trusted."""


@dataclass(frozen=True)
class Event:
    """One recipient's bounce or complaint."""

    kind: str  # bounce-permanent, bounce-transient, complaint
    subtype: str
    email: str
    feedback_id: str
    occurred_at: dt.datetime | None


def _when(value: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def parse_ses_record(record: dict[str, Any]) -> list[Event]:
    """Events of one SES record; both dialects (`eventType` and `notificationType`); others give none."""
    kind = str(record.get("eventType") or record.get("notificationType") or "")
    if kind == "Bounce":
        bounce = record.get("bounce") or {}
        # A Transient bounce event is already final for that message (SES retried); it is counted.
        permanent = bounce.get("bounceType") == "Permanent"
        return [
            Event(
                "bounce-permanent" if permanent else "bounce-transient",
                str(bounce.get("bounceSubType", "")),
                str(r.get("emailAddress", "")),
                str(bounce.get("feedbackId") or record.get("mail", {}).get("messageId", "")),
                _when(bounce.get("timestamp")),
            )
            for r in bounce.get("bouncedRecipients") or []
            if r.get("emailAddress")
        ]
    if kind == "Complaint":
        complaint = record.get("complaint") or {}
        return [
            Event(
                "complaint",
                str(complaint.get("complaintFeedbackType") or complaint.get("complaintSubType") or ""),
                str(r.get("emailAddress", "")),
                str(complaint.get("feedbackId") or record.get("mail", {}).get("messageId", "")),
                _when(complaint.get("timestamp")),
            )
            for r in complaint.get("complainedRecipients") or []
            if r.get("emailAddress")
        ]
    return []


def parse_notification(body: str | bytes) -> list[Event]:
    """Events in an SQS message body: an SNS envelope whose `Message` is the SES record as a string, or
    (raw message delivery) the SES record itself."""
    try:
        outer = json.loads(body)
    except ValueError as err:
        raise NotificationError(f"not an SNS or SES JSON document: {err}") from None
    return parse_envelope(outer)


def parse_envelope(outer: Any) -> list[Event]:
    """Events in a decoded SNS envelope (or a bare SES record)."""
    try:
        record = json.loads(outer["Message"]) if isinstance(outer, dict) and "Message" in outer else outer
    except (ValueError, TypeError) as err:
        raise NotificationError(f"the SNS Message is not an SES JSON document: {err}") from None
    if not isinstance(record, dict):
        raise NotificationError("the SES record is not a JSON object")
    return parse_ses_record(record)


def apply_events(store: Store, events: Iterable[Event], transient_limit: int = TRANSIENT_LIMIT) -> dict[str, int]:
    """Record each event (suppressing its address as needed); returns how many ended which way."""
    outcome: Counter[str] = Counter()
    for event in events:
        result = record_event(
            store,
            feedback_id=event.feedback_id,
            email=event.email,
            kind=event.kind,
            subtype=event.subtype,
            occurred_at=event.occurred_at,
            transient_limit=transient_limit,
        )
        outcome[result] += 1
    return outcome


def poll_queue(
    store: Store,
    client: Any,
    queue_url: str,
    *,
    once: bool = False,
    wait_seconds: int = 20,
    transient_limit: int = TRANSIENT_LIMIT,
    on_batch: Callable[[dict[str, int]], None] | None = None,
) -> dict[str, int]:
    """Read the queue and apply what it says; with `once`, stop when it is empty. Returns the totals.

    A message is deleted after its events are committed; one that cannot be read is left in the queue
    (its redrive policy moves it to a dead-letter queue) and counted as `unreadable`.
    """
    totals: Counter[str] = Counter()
    while True:
        answer = client.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1 if once else wait_seconds
        )
        messages = answer.get("Messages", [])
        if not messages and once:
            return totals
        batch: Counter[str] = Counter()
        for message in messages:
            try:
                events = parse_notification(message["Body"])
            except NotificationError as err:
                log.warning("queue message %s left in the queue: %s", message.get("MessageId"), err)
                batch["unreadable"] += 1
                continue
            batch.update(apply_events(store, events, transient_limit))
            client.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])  # after commit
            batch["messages"] += 1
        totals.update(batch)
        if on_batch and batch:
            on_batch(batch)


# ---------------------------------------------------------------- SNS over HTTP


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - the host is checked first
        return answer.read()


def _check_sns_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme != "https" or not SNS_HOST.match(parts.hostname or ""):
        raise NotificationError(f"{url!r} is not on an sns.<region>.amazonaws.com host")


def verify_sns_message(message: dict[str, Any], fetch: Callable[[str], bytes], cache: dict[str, Any]) -> None:
    """Check an SNS message's signature (SignatureVersion 1: SHA1, 2: SHA256); raise NotificationError."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    kind = message.get("Type")
    if kind not in SIGNED_KEYS:
        raise NotificationError(f"unknown SNS message type {kind!r}")
    version = str(message.get("SignatureVersion", ""))
    algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(version)  # noqa: S303 - SNS version 1 is SHA1
    if algorithm is None:
        raise NotificationError(f"unknown SignatureVersion {version!r}")
    cert_url = str(message.get("SigningCertURL", ""))
    _check_sns_url(cert_url)  # before anything is fetched
    if cert_url not in cache:
        cache[cert_url] = x509.load_pem_x509_certificate(fetch(cert_url)).public_key()
    canonical = "".join(f"{key}\n{message[key]}\n" for key in SIGNED_KEYS[kind] if key in message)
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        cache[cert_url].verify(signature, canonical.encode(), padding.PKCS1v15(), algorithm)
    except (InvalidSignature, ValueError) as err:
        raise NotificationError("the signature does not match") from err


def sns_handler(
    settings: Settings,
    *,
    store: Store,
    fetch: Callable[[str], bytes] = _fetch,
    transient_limit: int = TRANSIENT_LIMIT,
) -> Callable[[bytes, dict[str, str]], tuple[int, str]]:
    """The web app's POST /ses/notifications: (HTTP status, text) for an SNS HTTP delivery."""
    certificates: dict[str, Any] = {}

    def handle(body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        try:
            message = json.loads(body)  # SNS posts JSON as text/plain
            if not isinstance(message, dict):
                raise NotificationError("not a JSON object")
            verify_sns_message(message, fetch, certificates)
        except (ValueError, NotificationError) as err:
            log.warning("SNS message refused: %s", err)
            return 403, "refused\n"
        allowed = settings.ses.topic_arn
        if allowed and message.get("TopicArn") != allowed:
            return 403, "unknown topic\n"
        if message["Type"] == "SubscriptionConfirmation":
            _check_sns_url(str(message.get("SubscribeURL", "")))
            fetch(str(message["SubscribeURL"]))
            return 200, "subscribed\n"
        if message["Type"] == "UnsubscribeConfirmation":
            return 200, "ok\n"
        try:
            events = parse_envelope(message)
        except NotificationError as err:
            return 400, f"{err}\n"
        apply_events(store, events, transient_limit)
        return 200, "ok\n"

    return handle
