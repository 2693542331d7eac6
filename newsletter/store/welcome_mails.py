"""Welcome mails: made due by the confirmation of a web sign-up (subscribers.confirm_subscription), claimed once
by a worker, finished with what the transport said."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from .database import Store, Subscriber, now, subscribers, welcomes
from .subscribers import _subscriber

OUTCOMES = ("sent", "failed", "ambiguous", "skipped")  # what finish_welcome records


def due_welcomes(store: Store, *, limit: int = 50) -> list[int]:
    """The subscriber ids of up to `limit` welcome mails due and not claimed, oldest first."""
    with store.engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(welcomes.c.subscriber_id)
                .where(welcomes.c.claimed_at.is_(None), welcomes.c.due_at <= now())
                .order_by(welcomes.c.due_at, welcomes.c.subscriber_id)
                .limit(limit)
            ).scalars()
        )


def claim_welcome(store: Store, subscriber_id: int) -> Subscriber | None:
    """Claim `subscriber_id`'s welcome mail: the subscriber if this call claimed it, None if another did.

    The claim is one conditional UPDATE, so of many workers one gets it; it is final, so a mail whose sending a
    crash cut short is never sent again (at most once; release_welcome gives back one that surely did not leave).
    """
    with store.begin() as conn:
        claimed = conn.execute(
            welcomes.update()
            .where(welcomes.c.subscriber_id == subscriber_id, welcomes.c.claimed_at.is_(None))
            .values(claimed_at=now())
        ).rowcount
        if claimed != 1:
            return None
        row = conn.execute(sa.select(subscribers).where(subscribers.c.id == subscriber_id)).first()
    return _subscriber(row) if row else None


def finish_welcome(store: Store, subscriber_id: int, outcome: str, message_id: str | None = None) -> None:
    """Record what became of a claimed welcome mail (one of OUTCOMES)."""
    assert outcome in OUTCOMES, outcome
    with store.begin() as conn:
        conn.execute(
            welcomes.update()
            .where(welcomes.c.subscriber_id == subscriber_id)
            .values(outcome=outcome, message_id=message_id, finished_at=now())
        )


def release_welcome(store: Store, subscriber_id: int, retry_at: dt.datetime) -> None:
    """Give back a claimed welcome mail the transport surely did not take (throttled, deferred): due at `retry_at`."""
    with store.begin() as conn:
        conn.execute(
            welcomes.update().where(welcomes.c.subscriber_id == subscriber_id).values(claimed_at=None, due_at=retry_at)
        )


def welcome_outcomes(store: Store) -> dict[int, str | None]:
    """subscriber id → outcome (None: due or in flight) of every welcome mail."""
    with store.engine.connect() as conn:
        return {
            row.subscriber_id: row.outcome
            for row in conn.execute(sa.select(welcomes.c.subscriber_id, welcomes.c.outcome))
        }
