"""The queries of an issue's report: aggregates over the send log, the events and the subscribers.

Each is one GROUP BY (the events' over their (issue, kind) index), so a report costs the same few statements
for ten recipients or a million events; no row of an event ever reaches Python. `issue` is the send log's slug,
`tag` the SES tag value of it that the issue's events carry (events.issue).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .database import DeliveryState, Store, SubscriberStatus, deliveries, events, subscribers

TRACKING_KINDS = ("open", "click")  # counted for consenting recipients only
# every other kind: facts about delivery, counted for everyone
FACT_KINDS = (
    "send",
    "delivery",
    "bounce-permanent",
    "bounce-transient",
    "complaint",
    "reject",
    "delivery-delay",
    "rendering-failure",
)


@dataclass(frozen=True)
class SentEdition:
    """One edition's messages in the send log: how many the transport accepted, and when."""

    lang: str
    sent: int
    first_sent: dt.datetime | None
    last_sent: dt.datetime | None
    logged: int  # every delivery row of the edition, whatever its state


@dataclass(frozen=True)
class EventCount:
    """Events of one kind for one edition (and, for clicks, one paper): rows, recipients and when."""

    lang: str | None  # the `edition` tag; None when the message carried none
    kind: str
    paper: str | None  # a click's `paper` link tag
    total: int  # events
    recipients: int  # distinct recipients among them (each event of an unknown address counts as one)
    first_recorded: dt.datetime | None
    last_recorded: dt.datetime | None
    first_occurred: dt.datetime | None  # SES's time of the event (else when it was recorded)
    last_occurred: dt.datetime | None


@dataclass(frozen=True)
class EventSpan:
    """When the counted events of the issue were recorded, the first and last; how many; of which kinds."""

    first_recorded: dt.datetime | None
    last_recorded: dt.datetime | None
    count: int
    kinds: frozenset[str]


def event_span(store: Store, tag: str, counts: Sequence[EventCount]) -> EventSpan:
    """The span of these counts. Their times come from the delivery facts (sends and deliveries come before any
    open); only when there are none are the issue's events asked when they were recorded."""
    firsts = [c.first_recorded for c in counts if c.first_recorded is not None]
    lasts = [c.last_recorded for c in counts if c.last_recorded is not None]
    if counts and not firsts:
        e = events.c
        with _reading(store) as conn:
            first, last = conn.execute(
                sa.select(sa.func.min(e.recorded_at), sa.func.max(e.recorded_at)).where(e.issue == tag)
            ).one()
        firsts = [stamp for stamp in (_aware(first),) if stamp is not None]
        lasts = [stamp for stamp in (_aware(last),) if stamp is not None]
    total = sum(c.total for c in counts)
    return EventSpan(min(firsts, default=None), max(lasts, default=None), total, frozenset(c.kind for c in counts))


@contextlib.contextmanager
def _reading(store: Store) -> Iterator[Connection]:
    """A connection for the report's aggregates. On PostgreSQL it plans no nested loops: each query reads a whole
    issue, which hash joins do in one pass, while a store whose fresh rows autovacuum has not analyzed yet looks
    to the planner like a handful of rows, and it then joined 500,000 opens to 40,000 recipients row by row for
    minutes (bench/report.py right after filling the store)."""
    with store.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SET LOCAL enable_nestloop = off"))  # this connection's transaction only
        yield conn


def _aware(stamp: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive UTC times."""
    return stamp.replace(tzinfo=dt.UTC) if stamp is not None and stamp.tzinfo is None else stamp


def sent_editions(store: Store, issue: str) -> list[SentEdition]:
    """Per edition: messages sent (the transport accepted them), the first and last send, and all rows."""
    d = deliveries.c
    is_sent = d.state == DeliveryState.SENT.value
    query = (
        sa.select(
            d.lang,
            sa.func.count(sa.case((is_sent, 1))),
            sa.func.min(sa.case((is_sent, d.updated_at))),
            sa.func.max(sa.case((is_sent, d.updated_at))),
            sa.func.count(),
        )
        .where(d.issue == issue)
        .group_by(d.lang)
        .order_by(d.lang)
    )
    with _reading(store) as conn:
        rows = conn.execute(query).all()
    return [SentEdition(r[0], r[1], _aware(r[2]), _aware(r[3]), r[4]) for r in rows]


def _consented(d: Any, s: Any) -> Any:
    """The recipient had given tracking consent when their message of the issue was sent (and keeps it)."""
    return sa.and_(s.tracking_consent_at.is_not(None), s.tracking_consent_at <= d.updated_at)


def _consenting_ids(issue: str) -> sa.Select[Any]:
    """Subscriber ids of the issue's recipients who had consented to tracking when their message was sent."""
    d, s = deliveries.c, subscribers.c
    return (
        sa.select(d.subscriber_id)
        .join(subscribers, s.id == d.subscriber_id)
        .where(d.issue == issue, d.state == DeliveryState.SENT.value, _consented(d, s))
    )


def consenting_recipients(store: Store, issue: str) -> dict[str, int]:
    """Per edition: recipients of a sent message who had consented to tracking when it was sent."""
    d, s = deliveries.c, subscribers.c
    query = (
        sa.select(d.lang, sa.func.count())
        .select_from(deliveries.join(subscribers, s.id == d.subscriber_id))
        .where(d.issue == issue, d.state == DeliveryState.SENT.value, _consented(d, s))
        .group_by(d.lang)
    )
    with _reading(store) as conn:
        return {lang: count for lang, count in conn.execute(query)}


def unsubscribed_after(store: Store, issue: str) -> dict[str, int]:
    """Per edition: recipients who unsubscribed (themselves: not a bounce or complaint) after their message of
    the issue was sent, and are still unsubscribed."""
    d, s = deliveries.c, subscribers.c
    query = (
        sa.select(d.lang, sa.func.count())
        .select_from(deliveries.join(subscribers, s.id == d.subscriber_id))
        .where(
            d.issue == issue,
            d.state == DeliveryState.SENT.value,
            s.status == SubscriberStatus.UNSUBSCRIBED.value,
            s.unsubscribed_at >= d.updated_at,
        )
        .group_by(d.lang)
    )
    with _reading(store) as conn:
        return {lang: count for lang, count in conn.execute(query)}


def _counts(conn: Connection, query: sa.Select[Any]) -> list[EventCount]:
    """EventCounts from rows of (edition, kind, paper, events, distinct known recipients, events of unknown
    recipients, first and last recorded, first and last occurred)."""
    return [
        EventCount(r[0], r[1], r[2], r[3], r[4] + r[5], *(_aware(stamp) for stamp in r[6:10]))
        for r in conn.execute(query)
    ]


def _aggregates(e: Any, *, times: bool = True) -> tuple[Any, ...]:
    """Events, distinct known recipients, events of unknown ones; with `times`, the first and last recorded and
    occurred (without, NULLs: an index holding the rest of the columns answers without reading the rows)."""
    occurred = sa.func.coalesce(e.occurred_at, e.recorded_at)
    stamps = (sa.func.min(e.recorded_at), sa.func.max(e.recorded_at), sa.func.min(occurred), sa.func.max(occurred))
    return (
        sa.func.count(),
        sa.func.count(sa.distinct(e.subscriber_id)),
        sa.func.count(sa.case((e.subscriber_id.is_(None), 1))),
        *(stamps if times else (sa.null(),) * 4),
    )


def delivery_event_counts(store: Store, tag: str) -> list[EventCount]:
    """Per edition and kind, the issue's events that concern every recipient (all but opens and clicks)."""
    e = events.c
    query = (
        sa.select(e.edition, e.kind, sa.null(), *_aggregates(e))
        .where(e.issue == tag, e.kind.in_(FACT_KINDS))
        .group_by(e.edition, e.kind)
    )
    with _reading(store) as conn:
        return _counts(conn, query)


def tracking_event_counts(store: Store, issue: str, tag: str, kind: str) -> list[EventCount]:
    """Opens per edition, or clicks per edition and paper (`kind` "open" or "click"), of recipients who had
    consented to tracking when their message was sent. One kind a query, on the (issue, kind) index: one query
    over both sorted every row at once and cost more than the two. The times are left out (see event_span)."""
    e = events.c
    paper = e.paper if kind == "click" else sa.null()
    query = (
        sa.select(e.edition, e.kind, paper, *_aggregates(e, times=False))
        .where(e.issue == tag, e.kind == kind, e.subscriber_id.in_(_consenting_ids(issue)))
        .group_by(e.edition, e.kind, *([e.paper] if kind == "click" else []))
    )
    with _reading(store) as conn:
        return _counts(conn, query)


@dataclass(frozen=True)
class Timeline:
    """Messages per time bucket from `start`: sent (the send log) and delivered (delivery events)."""

    start: dt.datetime
    bucket: dt.timedelta
    sent: tuple[int, ...]
    delivered: tuple[int, ...]


BUCKETS = 48  # at most this many bars
WIDTHS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)  # seconds a bar may cover


def _epoch(conn: sa.Connection, column: Any) -> Any:
    """Whole seconds since 1970 of a stored time, in this database's SQL."""
    if conn.dialect.name == "postgresql":
        return sa.cast(sa.func.extract("epoch", column), sa.BigInteger)
    return sa.cast(sa.func.strftime("%s", column), sa.BigInteger)


def timeline(
    store: Store, issue: str, tag: str, first: dt.datetime | None, last: dt.datetime | None
) -> Timeline | None:
    """Sends and deliveries of the issue over time from `first` to `last` (the first and last send or delivery,
    known from the other queries), in at most BUCKETS bars; None without them."""
    if first is None or last is None:
        return None
    d, e = deliveries.c, events.c
    begin, end = int(first.timestamp()), int(last.timestamp())
    width = next((w for w in WIDTHS if (end - begin) // w < BUCKETS), WIDTHS[-1])
    begin -= begin % width  # bars on round times
    count = (end - begin) // width + 1
    with _reading(store) as conn:

        def per_bucket(stamp: Any, where: Any) -> list[int]:
            bucket = ((_epoch(conn, stamp) - begin) // width).label("bucket")
            bars = [0] * count
            for index, n in conn.execute(sa.select(bucket, sa.func.count()).where(where).group_by(bucket)):
                if 0 <= int(index) < count:
                    bars[int(index)] += n
            return bars

        sent = per_bucket(d.updated_at, sa.and_(d.issue == issue, d.state == DeliveryState.SENT.value))
        delivered_at = sa.func.coalesce(e.occurred_at, e.recorded_at)
        delivered = per_bucket(delivered_at, sa.and_(e.issue == tag, e.kind == "delivery"))
    start = dt.datetime.fromtimestamp(begin, dt.UTC)
    return Timeline(start, dt.timedelta(seconds=width), tuple(sent), tuple(delivered))
