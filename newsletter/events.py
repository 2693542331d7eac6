"""SES bounce and complaint notifications → Events → suppression in the store.

Two ways in: `newsletter events` polls an SQS queue (SES configuration set → SNS topic → SQS), and the web
app's `POST /ses/notifications` takes SNS HTTP deliveries, applied only when they come from a configured
topic and carry SNS's signature (sns.py checks both). A queue message is deleted only after the store has
committed what it said; a record of the wrong shape is refused whole, never half applied.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .config import Settings
from .sns import (
    NO_TOPIC,
    NotificationError,
    UntrustedNotification,
    check_envelope,
    check_sns_url,
    fetch_url,
    fetched,
    verify_signature,
)
from .store import Store, record_event

__all__ = ["Event", "NotificationError", "UntrustedNotification", "parse_notification", "poll_queue", "sns_handler"]

log = logging.getLogger(__name__)
TRANSIENT_LIMIT = 3  # transient bounces before an address counts as bounced
MAX_BODY = 256 * 1024  # SNS's own maximum message size
# What the store's columns hold (events.feedback_id, events.subtype, subscribers.email).
MAX_ID, MAX_SUBTYPE, MAX_EMAIL = 200, 60, 320
UNSTORABLE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")  # control characters; lone surrogates


@dataclass(frozen=True)
class Event:
    """One recipient's bounce or complaint."""

    kind: str  # bounce-permanent, bounce-transient, complaint
    subtype: str
    email: str
    feedback_id: str
    occurred_at: dt.datetime | None


def _when(value: Any) -> dt.datetime | None:
    """An SES timestamp in UTC; None when there is none or it is not one."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return when.astimezone(dt.UTC) if when.tzinfo else when.replace(tzinfo=dt.UTC)
    except (ValueError, OverflowError):
        return None


def _table(record: dict[str, Any], key: str) -> dict[str, Any]:
    value = record.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise NotificationError(f"the SES record's {key} is not an object but {type(value).__name__}")
    return value


def _text(table: dict[str, Any], key: str, limit: int) -> str:
    """A string field that the store can hold: absent or null is empty; anything else is refused."""
    value = table.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise NotificationError(f"the SES record's {key} is not a string but {type(value).__name__}")
    if len(value) > limit or UNSTORABLE.search(value):
        raise NotificationError(f"the SES record's {key} is over {limit} characters or holds a control character")
    return value


def _recipients(table: dict[str, Any], key: str) -> list[str]:
    value = table.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise NotificationError(f"the SES record's {key} is not a list of objects")
    return [email for r in value if (email := _text(r, "emailAddress", MAX_EMAIL))]


def parse_ses_record(record: dict[str, Any]) -> list[Event]:
    """Events of one SES record; both dialects (`eventType` and `notificationType`); other kinds give none.

    A field of the wrong type or size (bouncedRecipients not a list, an emailAddress that is not a string, a
    feedbackId of 1,000 characters, …) raises NotificationError for the whole record: nothing of it is applied.
    """
    kind = _text(record, "eventType", 40) or _text(record, "notificationType", 40)
    if kind not in {"Bounce", "Complaint"}:
        return []
    mail = _table(record, "mail")
    details = _table(record, kind.lower())
    feedback_id = _text(details, "feedbackId", MAX_ID) or _text(mail, "messageId", MAX_ID)
    if not feedback_id:
        raise NotificationError(f"the SES {kind} has neither a feedbackId nor a mail.messageId")
    if kind == "Bounce":
        # A Transient bounce event is already final for that message (SES retried); it is counted.
        permanent = _text(details, "bounceType", 40) == "Permanent"
        kind_name = "bounce-permanent" if permanent else "bounce-transient"
        subtype = _text(details, "bounceSubType", MAX_SUBTYPE)
        emails = _recipients(details, "bouncedRecipients")
    else:
        kind_name = "complaint"
        subtype = _text(details, "complaintFeedbackType", MAX_SUBTYPE) or _text(
            details, "complaintSubType", MAX_SUBTYPE
        )
        emails = _recipients(details, "complainedRecipients")
    occurred_at = _when(details.get("timestamp"))
    return [Event(kind_name, subtype, email, feedback_id, occurred_at) for email in emails]


def _json(text: str | bytes, what: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:  # RecursionError: nesting deeper than the parser goes
        raise NotificationError(f"{what} is not JSON: {str(err)[:120]}") from None


def parse_notification(body: str | bytes, topics: tuple[str, ...] = ()) -> list[Event]:
    """Events in an SQS message body: an SNS envelope whose `Message` is the SES record as a string, or
    (raw message delivery) the SES record itself. With `topics`, an envelope from another topic is refused
    (UntrustedNotification); a raw record carries no topic, so the queue's access policy is all that guards it."""
    outer = _json(body, "the queue message")
    if isinstance(outer, dict) and "Message" in outer and topics and outer.get("TopicArn") not in topics:
        raise UntrustedNotification(f"topic {str(outer.get('TopicArn'))[:80]!r} is not the configured topic_arn")
    return parse_envelope(outer)


def parse_envelope(outer: Any) -> list[Event]:
    """Events in a decoded SNS envelope (or a bare SES record)."""
    if isinstance(outer, dict) and "Message" in outer:
        if not isinstance(outer["Message"], str):
            raise NotificationError("the SNS Message is not a string")
        record = _json(outer["Message"], "the SNS Message")
    else:
        record = outer
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
    topics: tuple[str, ...] = (),
    on_batch: Callable[[dict[str, int]], None] | None = None,
) -> dict[str, int]:
    """Read the queue and apply what it says; with `once`, stop when it is empty. Returns the totals.

    A message is deleted after its events are committed. One that cannot be read (`unreadable`), or that an
    SNS topic other than `topics` sent (`refused`), is left in the queue, for its redrive policy to move to
    a dead-letter queue, and nothing of it is applied.
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
                events = parse_notification(message.get("Body", ""), topics)
            except NotificationError as err:
                log.warning("queue message %s left in the queue: %s", message.get("MessageId"), err)
                batch["refused" if isinstance(err, UntrustedNotification) else "unreadable"] += 1
                continue
            batch.update(apply_events(store, events, transient_limit))
            client.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])  # after commit
            batch["messages"] += 1
        totals.update(batch)
        if on_batch and batch:
            on_batch(batch)


# ---------------------------------------------------------------- SNS over HTTP


def sns_handler(
    settings: Settings,
    *,
    store: Store,
    fetch: Callable[[str], bytes] = fetch_url,
    transient_limit: int = TRANSIENT_LIMIT,
) -> Callable[[bytes, dict[str, str]], tuple[int, str]]:
    """The web app's POST /ses/notifications: (HTTP status, text) for an SNS HTTP delivery.

    Only a message from a topic in `settings.ses.topic_arns`, signed by SNS, is confirmed or applied; with
    no topic configured every message gets 403. Every refusal is a 4xx and one warning in the log.
    """
    topics = settings.ses.topic_arns
    certificates: dict[str, Any] = {}
    if not topics:
        log.warning("POST /ses/notifications will refuse every message: %s", NO_TOPIC)

    def refuse(status: int, reason: str) -> tuple[int, str]:
        log.warning("SNS message refused (%d): %s", status, reason)
        return status, {400: "unreadable\n", 403: "refused\n", 413: "too large\n"}[status]

    def handle(body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        if len(body) > MAX_BODY:
            return refuse(413, f"{len(body):,} bytes is more than SNS sends ({MAX_BODY:,})")
        if not topics:
            return refuse(403, NO_TOPIC)
        try:
            fields = check_envelope(_json(body, "the body"))  # SNS posts JSON as text/plain
        except NotificationError as err:
            return refuse(400, str(err))
        try:
            verify_signature(fields, fetch, certificates, topics)  # the topic first: others cost no request
        except NotificationError as err:  # not from our topic, not signed by SNS, or the certificate unreachable
            return refuse(403, str(err))
        if fields["Type"] == "SubscriptionConfirmation":
            return confirm(fields)
        if fields["Type"] == "UnsubscribeConfirmation":
            log.warning("SNS says topic %s unsubscribed this endpoint", fields["TopicArn"])
            return 200, "ok\n"
        try:
            events = parse_envelope(fields)
        except NotificationError as err:
            return refuse(400, str(err))
        apply_events(store, events, transient_limit)
        return 200, "ok\n"

    def confirm(fields: dict[str, str]) -> tuple[int, str]:
        try:
            check_sns_url(fields["SubscribeURL"], fields["TopicArn"], "SubscribeURL")
        except NotificationError as err:
            return refuse(403, str(err))
        try:
            fetched(fetch, fields["SubscribeURL"])
        except NotificationError as err:  # a genuine request we could not answer: SNS may send it again
            log.warning("SNS subscription to %s not confirmed: %s", fields["TopicArn"], err)
            return 502, "could not confirm\n"
        log.info("SNS subscription to %s confirmed", fields["TopicArn"])
        return 200, "subscribed\n"

    return handle
