"""Consent to open and click tracking, apart from the subscription: giving and withdrawing it, with its history.

The subscriber's row holds the current choice (`tracking_consent_at` None: no consent); `tracking_consents`
keeps every change with when and how it was made, withdrawals included.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from .database import Store, now, subscribers, tracking_consents

HOW_LIMIT = 40  # characters of `how` kept (subscribers.tracking_consent_how)


@dataclass(frozen=True)
class ConsentChange:
    """One giving (`given`) or withdrawing of tracking consent."""

    given: bool
    how: str
    at: dt.datetime


def set_tracking_consent(store: Store, subscriber_id: int, given: bool, how: str) -> bool:
    """Give or withdraw a subscriber's tracking consent, recording how (e.g. "preferences page").

    Choosing what holds already changes nothing (the first giving's time stays). True if this call changed it.
    """
    stamp = now()
    c = subscribers.c
    how = how[:HOW_LIMIT]
    if given:
        where = c.tracking_consent_at.is_(None)
        values = {"tracking_consent_at": stamp, "tracking_consent_how": how}
    else:
        where = c.tracking_consent_at.is_not(None)
        values = {"tracking_consent_at": None, "tracking_consent_how": None, "tracking_consent_withdrawn_at": stamp}
    with store.begin() as conn:
        changed = conn.execute(subscribers.update().where(c.id == subscriber_id, where).values(**values)).rowcount
        if changed:
            conn.execute(tracking_consents.insert().values(subscriber_id=subscriber_id, given=given, how=how, at=stamp))
    return bool(changed)


def tracking_consent_history(store: Store, subscriber_id: int) -> list[ConsentChange]:
    """Every change of a subscriber's tracking consent, oldest first."""
    t = tracking_consents.c
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.given, t.how, t.at).where(t.subscriber_id == subscriber_id).order_by(t.id)
        ).all()
    return [ConsentChange(bool(row.given), row.how, row.at) for row in rows]
