"""What SES said about sent messages: recording its events (a batch per transaction, each counted once, bounces
and complaints suppressing their addresses) and the counts a running send's reputation guard watches."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .database import (
    DeliveryState,
    Store,
    SubscriberStatus,
    deliveries,
    email_hash,
    email_key,
    events,
    insert_for,
    now,
    subscribers,
)

SUPPRESSING = ("bounce-permanent", "bounce-transient", "complaint")
# What each other kind is called in `newsletter events`'s counts.
COUNTED = {
    "send": "sends",
    "delivery": "deliveries",
    "reject": "rejects",
    "open": "opens",
    "click": "clicks",
    "delivery-delay": "delays",
    "rendering-failure": "rendering failures",
}
KINDS = (*SUPPRESSING, *COUNTED)
CHUNK = 500  # rows per statement: well under SQLite's and PostgreSQL's bound-parameter limits


@dataclass(frozen=True)
class Event:
    """One SES event about one recipient of one message."""

    kind: str  # one of KINDS
    subtype: str  # bounce or complaint subtype, delay type, reject reason; else empty
    email: str
    feedback_id: str  # the key that makes a repeated delivery of the event count once
    occurred_at: dt.datetime | None
    issue: str | None = None  # the SES tag value of the issue's slug
    edition: str | None = None
    message_id: str | None = None
    link: str | None = None
    paper: str | None = None


def record_events(store: Store, batch: Iterable[Event], transient_limit: int) -> Counter[str]:
    """Record a batch of events in one transaction; returns how many ended which way.

    An event whose key (feedback_id, address) the store holds already, or that came twice in the batch, is a
    `duplicate` and changes nothing. A new permanent bounce marks its subscriber `bounced`, a complaint
    `complained`; transient bounces are counted and mark it `bounced` at `transient_limit`. Other kinds are
    recorded for everyone (opens and clicks only exist for messages sent with tracking on).
    """
    outcome: Counter[str] = Counter()
    unique: dict[tuple[str, str], Event] = {}
    for event in batch:
        key = (event.feedback_id, email_hash(event.email))
        if key in unique:
            outcome["duplicate"] += 1
        else:
            unique[key] = event
    if not unique:
        return outcome
    stamp = now()
    with store.begin() as conn:
        ids = _subscriber_ids(conn, {email_key(event.email) for event in unique.values()})
        rows = [_row(key, event, ids.get(email_key(event.email)), stamp) for key, event in unique.items()]
        inserted = _insert_new(conn, rows)
        for key, event in unique.items():
            if key not in inserted:
                outcome["duplicate"] += 1
            elif event.kind in SUPPRESSING:
                outcome[_suppress(conn, event, stamp, transient_limit)] += 1
            else:
                outcome[COUNTED[event.kind]] += 1
    return outcome


def _subscriber_ids(conn: Connection, keys: set[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    listed = sorted(keys)
    for start in range(0, len(listed), CHUNK):
        query = sa.select(subscribers.c.email_key, subscribers.c.id).where(
            subscribers.c.email_key.in_(listed[start : start + CHUNK])
        )
        found.update({row.email_key: row.id for row in conn.execute(query)})
    return found


def _row(key: tuple[str, str], event: Event, subscriber_id: int | None, stamp: dt.datetime) -> dict[str, Any]:
    return {
        "feedback_id": key[0],
        "email_hash": key[1],
        "kind": event.kind,
        "subtype": event.subtype,
        "subscriber_id": subscriber_id,
        "occurred_at": event.occurred_at,
        "recorded_at": stamp,
        "issue": event.issue,
        "edition": event.edition,
        "message_id": event.message_id,
        "link": event.link,
        "paper": event.paper,
    }


def _insert_new(conn: Connection, rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """Insert the rows whose key is new (ON CONFLICT DO NOTHING); the keys this statement inserted.

    RETURNING names exactly the rows this transaction added, so of two processes applying the same event at
    once only one counts it (and only one applies its bounce).
    """
    keys = (events.c.feedback_id, events.c.email_hash)
    statement = insert_for(conn.dialect.name, events).on_conflict_do_nothing().returning(*keys)
    inserted: set[tuple[str, str]] = set()
    for start in range(0, len(rows), CHUNK):
        result = conn.execute(statement, rows[start : start + CHUNK])
        inserted.update((row.feedback_id, row.email_hash) for row in result)
    return inserted


def _suppress(conn: Connection, event: Event, stamp: dt.datetime, transient_limit: int) -> str:
    """Apply a new bounce or complaint to the subscriber it names; what happened, for the log."""
    row = conn.execute(
        sa.select(subscribers.c.id, subscribers.c.status, subscribers.c.bounce_count).where(
            subscribers.c.email_key == email_key(event.email)
        )
    ).first()
    if row is None:
        return "unknown address"
    changes: dict[str, Any]
    if event.kind == "complaint":
        changes = {"status": SubscriberStatus.COMPLAINED}
    elif event.kind == "bounce-permanent":
        changes = {"status": SubscriberStatus.BOUNCED}
    else:
        count = row.bounce_count + 1
        changes = {"bounce_count": count}
        if count >= transient_limit:
            changes["status"] = SubscriberStatus.BOUNCED
    if "status" in changes and row.status in {SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED}:
        changes.pop("status")  # already suppressed
    if "status" in changes:
        changes |= {"unsubscribed_at": stamp, "unsubscribe_method": event.kind}
    if not changes:  # a bounce or complaint for an address already suppressed: nothing to update
        return "already suppressed"
    conn.execute(subscribers.update().where(subscribers.c.id == row.id).values(**changes))
    return str(changes.get("status", "counted"))


@dataclass(frozen=True)
class SendFeedback:
    """A send's messages accepted so far, and the hard bounces and complaints SES reported for the issue."""

    sent: int
    bounced: int  # permanent bounces
    complained: int


def send_feedback(store: Store, issue: str, tag: str) -> SendFeedback:
    """What the reputation guard watches, in one statement on two indexes (ix_deliveries_issue_state_id,
    the events' (issue, kind, …) one): `issue` is the send log's slug, `tag` the SES tag value its events carry."""
    d, e = deliveries.c, events.c

    def counted(kind: str) -> Any:
        return sa.select(sa.func.count()).where(e.issue == tag, e.kind == kind).scalar_subquery()

    query = sa.select(
        sa.select(sa.func.count()).where(d.issue == issue, d.state == DeliveryState.SENT).scalar_subquery(),
        counted("bounce-permanent"),
        counted("complaint"),
    )
    with store.engine.connect() as conn:
        sent, bounced, complained = conn.execute(query).one()
    return SendFeedback(int(sent), int(bounced), int(complained))
