"""The hot path of a send: claim deliveries in batches, take the last look at their subscribers, record results
in groups.

A claim marks a batch `sending` under this sender's lease in one transaction (FOR UPDATE SKIP LOCKED on
PostgreSQL, so several senders take disjoint batches). Results are written a group per transaction, each row
only while this sender still holds it. Claimed rows that never left go back with `release`.

On PostgreSQL a batch's ids and a group's results go as one array parameter per column, not one parameter per
row: the statement's text is then the same for every batch, so the driver parses it once and SQLAlchemy compiles
it once (with a parameter per row, psycopg parsed each statement anew, and the hot path cost 1.8x the CPU and
2.5x the time a delivery: bench/send_log.py).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import cast

import sqlalchemy as sa

from .database import Delivery, DeliveryState, Store, deliveries, subscribers
from .last_look import LastLook
from .senders import LEASE, database_now

MESSAGE_ID_LIMIT = cast(sa.String, deliveries.c.message_id.type).length or 300
CLAIMABLE = (DeliveryState.PENDING, DeliveryState.DEFERRED)


@dataclass(frozen=True)
class Result:
    """What became of one delivery, to be recorded."""

    delivery_id: int
    state: DeliveryState
    message_id: str | None = None
    error: str | None = None
    ambiguous: int = 0  # outcomes of this run's attempts that were unknown


class SendLog:
    """One sender's view of an issue's send log."""

    def __init__(self, store: Store, issue: str, sender_id: str, transport: str, started: dt.datetime) -> None:
        self.store = store
        self.issue = issue
        self.sender_id = sender_id
        self.transport = transport
        self.started = started  # deferred rows this run made are not claimed again by it
        self._last_look = LastLook(store)
        self._pending_after = 0  # the highest id of a pending row this sender claimed
        self._arrays = store.engine.dialect.name == "postgresql"

    def close(self) -> None:
        """Give back the connection the last looks keep."""
        self._last_look.close()

    def claim(self, limit: int) -> list[Delivery]:
        """Claim up to `limit` deliveries to send, in id order, under this sender's lease."""
        d = deliveries.c
        with self.store.begin() as conn:
            stamp = database_now(conn)
            # Narrow queries rather than one with OR. Pending rows are taken from past the last one this sender
            # claimed: from the start, a query would step over every row sent so far, and PostgreSQL does when its
            # statistics still say the issue's rows are all pending (the first send of a new store: a claim then
            # read every sent row, until autovacuum analysed the table). The rows behind that point that are
            # pending again (another sender stopped and gave its claims back) are taken when none are left ahead.
            ids: list[int] = []
            after = self._pending_after
            passes = [(DeliveryState.PENDING, d.id > after)]
            if after:
                passes.append((DeliveryState.PENDING, d.id <= after))
            passes += [
                (DeliveryState.DEFERRED, d.updated_at < self.started),
                (DeliveryState.SENDING, sa.or_(d.lease_until.is_(None), d.lease_until < stamp)),
            ]
            for number, (state, extra) in enumerate(passes):
                if len(ids) >= limit:
                    break
                wanted = (
                    sa.select(d.id)
                    .where(d.issue == self.issue, d.state == state, extra)
                    .order_by(d.id)
                    .limit(limit - len(ids))
                    .with_for_update(skip_locked=True)
                )
                found = list(conn.execute(wanted).scalars())
                if number == 0 and found:
                    self._pending_after = found[-1]
                ids.extend(found)
            if not ids:
                return []
            conn.execute(
                deliveries.update()
                .where(self._among(d.id, ids))
                .values(
                    state=DeliveryState.SENDING,
                    transport=self.transport,
                    attempts=d.attempts + 1,
                    lease_owner=self.sender_id,
                    lease_until=stamp + LEASE,
                    updated_at=stamp,
                )
            )
            rows = conn.execute(
                sa.select(
                    d.id,
                    d.subscriber_id,
                    subscribers.c.email,
                    subscribers.c.name,
                    d.lang,
                    d.attempts,
                    subscribers.c.tracking_consent_at.is_not(None).label("tracking"),
                )
                .join(subscribers, subscribers.c.id == d.subscriber_id)
                .where(self._among(d.id, ids))
                .order_by(d.id)
            ).all()
        sending = DeliveryState.SENDING
        return [
            Delivery(r.id, r.subscriber_id, r.email, r.name, r.lang, sending, r.attempts, bool(r.tracking))
            for r in rows
        ]

    def gone(self, subscriber_ids: Collection[int]) -> set[int]:
        """Which of these subscribers are no longer active (or no longer exist): the last look before their
        messages leave (last_look.py)."""
        return self._last_look.gone(subscriber_ids)

    def record(self, results: Sequence[Result]) -> None:
        """Write a group of results in one transaction, each row only if this sender still holds it.

        A message id longer than the column (a file transport's path under a deep folder) is cut to fit:
        PostgreSQL would refuse it after the message had already left.
        """
        if not results:
            return
        columns: dict[str, list[object]] = {
            "ids": [r.delivery_id for r in results],
            "states": [r.state.value for r in results],
            "message_ids": [None if r.message_id is None else r.message_id[:MESSAGE_ID_LIMIT] for r in results],
            "errors": [r.error for r in results],
            "ambiguous": [r.ambiguous for r in results],
        }
        if self._arrays:  # stamped by the statement itself
            with self.store.begin() as conn:
                conn.execute(_RECORD_FROM_ARRAYS, {**columns, "owner": self.sender_id})
            return
        values: dict[str, object] = {
            f"{_ROW_KEYS[name]}{n}": value for name, column in columns.items() for n, value in enumerate(column)
        }
        with self.store.begin() as conn:
            conn.execute(
                _record_statement(len(results)), {**values, "owner": self.sender_id, "stamp": database_now(conn)}
            )

    def release(self, delivery_ids: Collection[int]) -> None:
        """Give back claimed deliveries that never left (a stop, the cap): pending again, the attempt undone."""
        if not delivery_ids:
            return
        d = deliveries.c
        with self.store.begin() as conn:
            conn.execute(
                deliveries.update()
                .where(
                    self._among(d.id, list(delivery_ids)),
                    d.lease_owner == self.sender_id,
                    d.state == DeliveryState.SENDING,
                )
                .values(state=DeliveryState.PENDING, attempts=d.attempts - 1, lease_owner=None, lease_until=None)
            )

    def _among(self, column: sa.ColumnElement[int], ids: list[int]) -> sa.ColumnElement[bool]:
        """`column IN ids`; on PostgreSQL `column = ANY(array)`, one parameter whatever the count."""
        if self._arrays:
            return column == sa.any_(sa.bindparam(None, ids, type_=sa.ARRAY(sa.Integer)))
        return column.in_(ids)


# A group of results on PostgreSQL: a column's values in one array each, the rows made by unnest, the stamp the
# database's clock (as database_now: clock_timestamp)
_RECORD_FROM_ARRAYS = sa.text(
    "UPDATE deliveries SET state = r.state, message_id = r.message_id, error = r.error, "
    "ambiguous = deliveries.ambiguous + r.ambiguous, lease_until = NULL, updated_at = clock_timestamp() "
    "FROM unnest(CAST(:ids AS integer[]), CAST(:states AS text[]), CAST(:message_ids AS text[]), "
    "CAST(:errors AS text[]), CAST(:ambiguous AS integer[])) AS r(id, state, message_id, error, ambiguous) "
    "WHERE deliveries.id = r.id AND deliveries.lease_owner = :owner AND deliveries.state = 'sending'"
)


_ROW_KEYS = {"ids": "i", "states": "s", "message_ids": "m", "errors": "e", "ambiguous": "a"}  # row n's: i0, s0, …


@functools.lru_cache(maxsize=64)
def _record_statement(size: int) -> sa.TextClause:
    """One UPDATE … FROM (VALUES …) for a group of `size` results on SQLite: one statement to step through, not
    one per row (SQLite names the columns of a VALUES list column1, column2, … in _ROW_KEYS's order). Made once a
    size."""
    rows = ", ".join("(" + ", ".join(f":{key}{n}" for key in _ROW_KEYS.values()) + ")" for n in range(size))
    return sa.text(
        "UPDATE deliveries SET state = r.column2, message_id = r.column3, error = r.column4, "
        "ambiguous = deliveries.ambiguous + r.column5, lease_until = NULL, updated_at = :stamp "
        f"FROM (VALUES {rows}) AS r "
        "WHERE deliveries.id = r.column1 AND deliveries.lease_owner = :owner AND deliveries.state = 'sending'"
    ).bindparams(sa.bindparam("stamp", type_=sa.DateTime(timezone=True)))
