"""The senders at work on one store: registration, heartbeats, and who shares the account's rate.

Each `newsletter send` registers a row, renews it (and the leases of its claims) with a heartbeat, and marks it
finished at the end. A sender whose process is gone (same host, pid not running) or whose heartbeat is older
than STALE_AFTER is dead: its claims fall back to the send log at once. A finished or dead sender still counts
for one rate window after its end, because its last starts still count against the account.

Times come from the database's clock on PostgreSQL (several machines agree on it) and this machine's on SQLite.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..processes import process_alive
from .database import DeliveryState, Store, deliveries, now, senders

LEASE = dt.timedelta(seconds=30)  # how long a claim holds without a heartbeat
STALE_AFTER = LEASE  # a sender not heard of for this long is dead
# A finished sender's starts count against the account this long: the longest window a limiter counts in
# (ratelimit.SETTLE), so the others may take its share only once none of its starts can still arrive in theirs.
TAIL = dt.timedelta(seconds=1.6)
HOST = socket.gethostname()[:255]


@dataclass(frozen=True)
class OtherSender:
    """A sender already at work on the same issue (for the message that refuses a second one on SQLite)."""

    host: str
    pid: int
    started_at: dt.datetime


class SenderBusy(Exception):
    """Another sender is at work on this issue, and this store allows only one (SQLite)."""

    def __init__(self, other: OtherSender) -> None:
        super().__init__(other)
        self.other = other


def database_now(conn: Connection) -> dt.datetime:
    """Now, by the clock every sender of this store shares."""
    if conn.dialect.name == "postgresql":
        stamp: dt.datetime = conn.execute(sa.select(sa.func.clock_timestamp())).scalar_one()
        return stamp
    return now()


def _aware(stamp: dt.datetime) -> dt.datetime:
    """SQLite hands back naive UTC times."""
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)


def _dead(row: Any, stamp: dt.datetime) -> bool:
    """A sender row whose process is gone from this host, or that has not been heard of for STALE_AFTER."""
    gone = row.host == HOST and not process_alive(row.pid)
    return gone or _aware(row.heartbeat_at) < stamp - STALE_AFTER


def _reap(conn: Connection, stamp: dt.datetime) -> None:
    """Forget the senders whose tail has passed, and end the dead ones (their claims fall back at once).

    The DELETE comes first: on SQLite a transaction that starts with a write waits for the lock instead of
    failing on a stale read."""
    conn.execute(senders.delete().where(senders.c.finished_at < stamp - TAIL))
    for row in conn.execute(sa.select(senders).where(senders.c.finished_at.is_(None))).all():
        if _dead(row, stamp):
            conn.execute(senders.update().where(senders.c.id == row.id).values(finished_at=stamp))
            conn.execute(deliveries.update().where(*_claims_of(row.id, row.issue)).values(lease_until=None))


@dataclass(frozen=True)
class Registration:
    """A sender's id, and who it shares the account's rate with as it starts."""

    sender_id: str
    sharing: int  # live senders, this one included
    tail: float  # seconds until the starts of senders that ended lately no longer count against the account


def register_sender(store: Store, issue: str, *, exclusive: bool) -> Registration:
    """Register this process as a sender of `issue`.

    With `exclusive` (SQLite), raises SenderBusy while another live sender works on the same issue; the check
    and the insert are one statement, so two senders starting at once cannot both pass.
    """
    sender_id = uuid.uuid4().hex
    with store.begin() as conn:
        stamp = database_now(conn)
        _reap(conn, stamp)
        values = {
            "id": sender_id,
            "issue": issue,
            "host": HOST,
            "pid": os.getpid(),
            "started_at": stamp,
            "heartbeat_at": stamp,
        }
        if exclusive:
            busy = sa.exists().where(senders.c.issue == issue, senders.c.finished_at.is_(None))
            row = sa.select(*[sa.literal(value) for value in values.values()]).where(~busy)
            inserted = conn.execute(senders.insert().from_select(list(values), row).returning(senders.c.id)).first()
            if inserted is None:
                other = conn.execute(
                    sa.select(senders.c.host, senders.c.pid, senders.c.started_at).where(
                        senders.c.issue == issue, senders.c.finished_at.is_(None)
                    )
                ).first()
                if other is not None:
                    raise SenderBusy(OtherSender(other.host, other.pid, _aware(other.started_at)))
        else:
            conn.execute(senders.insert().values(**values))
        live = conn.execute(
            sa.select(sa.func.count()).select_from(senders).where(senders.c.finished_at.is_(None))
        ).scalar_one()
        ended = conn.execute(sa.select(sa.func.max(senders.c.finished_at))).scalar_one()
        tail = 0.0 if ended is None else max(0.0, (_aware(ended) + TAIL - stamp).total_seconds())
        return Registration(sender_id, int(live), tail)


def _sharing(conn: Connection, stamp: dt.datetime) -> int:
    """How many senders share the account's rate: the live ones, and the ones that ended less than TAIL ago."""
    return int(
        conn.execute(
            sa.select(sa.func.count())
            .select_from(senders)
            .where(sa.or_(senders.c.finished_at.is_(None), senders.c.finished_at >= stamp - TAIL))
        ).scalar_one()
    )


def other_sender(store: Store, issue: str) -> OtherSender | None:
    """A live sender of `issue` (its process still running, or its heartbeat fresh), if there is one."""
    with store.engine.connect() as conn:
        stamp = database_now(conn)
        for row in conn.execute(
            sa.select(senders).where(senders.c.issue == issue, senders.c.finished_at.is_(None))
        ).all():
            if not _dead(row, stamp):
                return OtherSender(row.host, row.pid, _aware(row.started_at))
    return None


def _claims_of(sender_id: str, issue: str) -> tuple[Any, ...]:
    """The rows `sender_id` holds, found through the (issue, state, id) index, not by a scan of the send log."""
    d = deliveries.c
    return (d.issue == issue, d.state == DeliveryState.SENDING, d.lease_owner == sender_id)


def heartbeat(store: Store, sender_id: str, issue: str) -> int:
    """Renew this sender's row and the leases of its claims; returns how many senders share the rate."""
    with store.begin() as conn:
        return _renew(conn, sender_id, issue)


def heartbeat_and_count_unseen(store: Store, sender_id: str, issue: str, since: dt.datetime) -> tuple[int, int]:
    """Heartbeat, then count the other live senders not renewed since `since` (taken after this one registered).

    Those have not seen this sender yet, so they may still start at their old, larger share. Returns
    (how many share the rate, how many have not seen this sender)."""
    with store.begin() as conn:
        sharing = _renew(conn, sender_id, issue)
        unseen = conn.execute(
            sa.select(sa.func.count())
            .select_from(senders)
            .where(senders.c.finished_at.is_(None), senders.c.id != sender_id, senders.c.heartbeat_at <= since)
        ).scalar_one()
        return sharing, int(unseen)


def _renew(conn: Connection, sender_id: str, issue: str) -> int:
    stamp = database_now(conn)
    _reap(conn, stamp)
    conn.execute(senders.update().where(senders.c.id == sender_id).values(heartbeat_at=stamp))
    conn.execute(deliveries.update().where(*_claims_of(sender_id, issue)).values(lease_until=stamp + LEASE))
    return _sharing(conn, stamp)


def finish_sender(store: Store, sender_id: str, issue: str) -> None:
    """Mark this sender finished (its row goes one rate window later); claims it still holds fall back at once."""
    with store.begin() as conn:
        conn.execute(senders.update().where(senders.c.id == sender_id).values(finished_at=database_now(conn)))
        conn.execute(deliveries.update().where(*_claims_of(sender_id, issue)).values(lease_until=None))
