"""SES events → the store: every event type, attributed to its issue and edition; bounces and complaints suppress.

Two ways in: `newsletter events` polls an SQS queue (SES configuration set → SNS topic → SQS; event_queue.py
receives, batches and deletes), and the web app's `POST /ses/notifications` takes SNS HTTP deliveries, applied
only when they come from a configured topic and carry SNS's signature (sns.py checks both). A record of the wrong
shape is refused whole, never half applied. Both dialects are read: event publishing (`eventType`: Send,
Delivery, Bounce, Complaint, Reject, Open, Click, DeliveryDelay, RenderingFailure) and identity notifications
(`notificationType`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from .config import Settings
from .log_throttle import LogThrottle
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
from .store import Event, Store, record_events

__all__ = ["Event", "NotificationError", "UntrustedNotification", "parse_notification", "sns_handler"]

log = logging.getLogger(__name__)
TRANSIENT_LIMIT = 3  # transient bounces before an address counts as bounced
MAX_BODY = 256 * 1024  # SNS's own maximum message size
REFUSAL_LOG_SECONDS = 10.0  # at most one "SNS message refused" line this often; it counts those not logged
# What the store's columns hold (events.feedback_id, .subtype, .issue, .edition, .link, .paper; subscribers.email).
MAX_ID, MAX_SUBTYPE, MAX_EMAIL, MAX_ISSUE, MAX_EDITION, MAX_LINK = 200, 60, 320, 200, 35, 2000
UNSTORABLE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")  # control characters; lone surrogates

# SES's event type → (the store's kind, the record's key of its details, where its recipients are).
# Recipients: a list of objects' emailAddress under the details, a list of addresses under the details, or
# mail.destination (sends, rejects, opens, clicks and rendering failures name no recipient of their own).
TYPES: dict[str, tuple[str, str, str]] = {
    "Send": ("send", "send", "destination"),
    "Delivery": ("delivery", "delivery", "recipients"),
    "Reject": ("reject", "reject", "destination"),
    "Open": ("open", "open", "destination"),
    "Click": ("click", "click", "destination"),
    "DeliveryDelay": ("delivery-delay", "deliveryDelay", "delayedRecipients"),
    "RenderingFailure": ("rendering-failure", "failure", "destination"),
    "Bounce": ("bounce", "bounce", "bouncedRecipients"),
    "Complaint": ("complaint", "complaint", "complainedRecipients"),
}
SUBTYPES = {"Reject": "reason", "DeliveryDelay": "delayType"}  # what else a subtype is read from


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
    return _storable(table.get(key), key, limit)


def _storable(value: Any, key: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise NotificationError(f"the SES record's {key} is not a string but {type(value).__name__}")
    if len(value) > limit or UNSTORABLE.search(value):
        raise NotificationError(f"the SES record's {key} is over {limit} characters or holds a control character")
    return value


def _recipients(table: dict[str, Any], key: str) -> list[str]:
    """The addresses of a list of recipient objects (`bouncedRecipients`: [{"emailAddress": …}, …])."""
    value = table.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise NotificationError(f"the SES record's {key} is not a list of objects")
    return [email for r in value if (email := _text(r, "emailAddress", MAX_EMAIL))]


def _addresses(table: dict[str, Any], key: str) -> list[str]:
    """A list of addresses (`mail.destination`, `delivery.recipients`)."""
    value = table.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise NotificationError(f"the SES record's {key} is not a list")
    return [email for item in value if (email := _storable(item, key, MAX_EMAIL))]


def _tag(tags: dict[str, Any], name: str, limit: int) -> str | None:
    """The first value of a tag (SES gives each tag as a list of strings); None when it has none."""
    value = tags.get(name)
    if value is None:
        return None
    if not isinstance(value, list):
        raise NotificationError(f"the SES record's tag {name} is not a list")
    return (_storable(value[0], f"tag {name}", limit) or None) if value else None


def event_key(message_id: str, event_type: str, timestamp: str, link: str | None = None) -> str:
    """The key of an event without a feedbackId: the message, the event type and its time (and a click's link,
    by digest); a key longer than the column is its SHA-256."""
    key = f"{message_id}:{event_type}:{timestamp}"
    if link:
        key += ":" + hashlib.sha256(link.encode()).hexdigest()[:16]
    return key if len(key) <= MAX_ID else "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def parse_ses_record(record: dict[str, Any]) -> list[Event]:
    """Events of one SES record (one per recipient); both dialects; other types (Subscription, …) give none.

    A field of the wrong type or size (bouncedRecipients not a list, an emailAddress that is not a string, a
    feedbackId of 1,000 characters, …) raises NotificationError for the whole record: nothing of it is applied.
    """
    event_type = _text(record, "eventType", 40) or _text(record, "notificationType", 40)
    if event_type not in TYPES:
        return []
    kind, details_key, where = TYPES[event_type]
    mail = _table(record, "mail")
    details = _table(record, details_key)
    message_id = _text(mail, "messageId", MAX_ID)
    tags = _table(mail, "tags")
    issue, edition = _tag(tags, "issue", MAX_ISSUE), _tag(tags, "edition", MAX_EDITION)
    timestamp = _text(details, "timestamp", 40) or _text(mail, "timestamp", 40)
    link = paper = None
    subtype = _text(details, SUBTYPES.get(event_type, ""), MAX_SUBTYPE)
    if event_type == "Bounce":
        # A Transient bounce event is already final for that message (SES retried); it is counted.
        kind = "bounce-permanent" if _text(details, "bounceType", 40) == "Permanent" else "bounce-transient"
        subtype = _text(details, "bounceSubType", MAX_SUBTYPE)
    elif event_type == "Complaint":
        subtype = _text(details, "complaintFeedbackType", MAX_SUBTYPE) or _text(
            details, "complaintSubType", MAX_SUBTYPE
        )
    elif event_type == "Click":
        link = _text(details, "link", MAX_LINK) or None
        paper = _tag(_table(details, "linkTags"), "paper", MAX_ISSUE)
    if event_type in {"Bounce", "Complaint"}:
        key = _text(details, "feedbackId", MAX_ID) or message_id
        if not key:
            raise NotificationError(f"the SES {event_type} has neither a feedbackId nor a mail.messageId")
    else:
        if not message_id:
            raise NotificationError(f"the SES {event_type} has no mail.messageId")
        key = event_key(message_id, event_type, timestamp, link)
    if where == "destination":
        emails = _addresses(mail, "destination")
    elif where == "recipients":
        emails = _addresses(details, "recipients")
    else:
        emails = _recipients(details, where)
    occurred_at = _when(timestamp)
    return [
        Event(kind, subtype, email, key, occurred_at, issue, edition, message_id or None, link, paper)
        for email in emails
    ]


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
    """Record the events in one transaction (suppressing addresses as needed); returns how many ended which way."""
    return record_events(store, events, transient_limit)


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

    refusals = LogThrottle()  # a flood of forged messages cannot flood the log

    def refuse(status: int, reason: str) -> tuple[int, str]:
        held = refusals.allow(REFUSAL_LOG_SECONDS)
        if held is not None:
            more = f" ({held:,} more refused since the last such line)" if held else ""
            log.warning("SNS message refused (%d): %s%s", status, reason, more)
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
