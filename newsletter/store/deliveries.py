"""The send log: one delivery row per message of a send; the snapshot that creates them, and the claim and
record around each hand-over."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa

from .database import Delivery, DeliveryState, Store, SubscriberStatus, deliveries, now, subscribers
from .subscribers import count_subscribers

MESSAGE_ID_LIMIT = cast(sa.String, deliveries.c.message_id.type).length or 300
ISSUE_LIMIT = cast(sa.String, deliveries.c.issue.type).length or 200  # characters of an issue's slug kept


def snapshot_audience(store: Store, issue: str, editions: Collection[str], default_lang: str) -> int:
    """Add a pending delivery for every active subscriber who has none for `issue` yet; returns how many.

    One INSERT … SELECT, so the audience never passes through this process. A subscriber
    gets the edition in their language if it is among `editions`, else the `default_lang` one.
    """
    stamp = now()
    lang_case = _edition_for(editions, default_lang)
    already = sa.select(deliveries.c.id).where(
        deliveries.c.issue == issue, deliveries.c.subscriber_id == subscribers.c.id
    )
    select = sa.select(
        sa.literal(issue),
        subscribers.c.id,
        lang_case,
        sa.literal(DeliveryState.PENDING.value),
        sa.literal(0),
        sa.literal(stamp),
        sa.literal(stamp),
    ).where(subscribers.c.status == SubscriberStatus.ACTIVE, ~sa.exists(already))
    count = sa.select(sa.func.count()).select_from(deliveries).where(deliveries.c.issue == issue)
    columns = ["issue", "subscriber_id", "lang", "state", "attempts", "created_at", "updated_at"]
    with store.begin() as conn:
        before = conn.execute(count).scalar_one()
        conn.execute(deliveries.insert().from_select(columns, select))
        return conn.execute(count).scalar_one() - before  # rowcount of INSERT … SELECT is not portable


def reset_for_resend(store: Store, issue: str) -> int:
    """Forget an issue's send log so it can be sent again (newsletter send --resend)."""
    with store.begin() as conn:
        return conn.execute(deliveries.delete().where(deliveries.c.issue == issue)).rowcount or 0


def next_deliveries(
    store: Store, issue: str, after_id: int, limit: int, states: tuple[DeliveryState, ...]
) -> list[Delivery]:
    """The next deliveries of `issue` in `states` after `after_id`, with their subscribers' addresses."""
    query = (
        sa.select(
            deliveries.c.id,
            deliveries.c.subscriber_id,
            subscribers.c.email,
            subscribers.c.name,
            deliveries.c.lang,
            deliveries.c.state,
            deliveries.c.attempts,
        )
        .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
        .where(deliveries.c.issue == issue, deliveries.c.state.in_(states), deliveries.c.id > after_id)
        .order_by(deliveries.c.id)
        .limit(limit)
    )
    with store.engine.connect() as conn:
        return [
            Delivery(r.id, r.subscriber_id, r.email, r.name, r.lang, DeliveryState(r.state), r.attempts)
            for r in conn.execute(query)
        ]


class SendLog:
    """The hot path of a send: one connection and statements built once, a transaction per step.

    claim() is the last look at the subscriber before a message leaves, so an unsubscribe recorded
    before it is honoured; record() stores what the transport said.
    """

    _stamp = sa.bindparam("now", type_=sa.DateTime(timezone=True))
    _claim = sa.text(
        "UPDATE deliveries SET state = 'sending', transport = :transport, attempts = attempts + 1, updated_at = :now "
        "WHERE id = :id AND EXISTS (SELECT 1 FROM subscribers "
        "WHERE subscribers.id = deliveries.subscriber_id AND subscribers.status = 'active')"
    ).bindparams(_stamp)
    _skip = sa.text(
        "UPDATE deliveries SET state = 'skipped', error = 'subscriber left before sending', updated_at = :now "
        "WHERE id = :id"
    ).bindparams(_stamp)
    _record = sa.text(
        "UPDATE deliveries SET state = :state, message_id = :message_id, error = :error, updated_at = :now "
        "WHERE id = :id"
    ).bindparams(_stamp)

    def __init__(self, store: Store) -> None:
        self.connection = store.engine.connect()

    def claim(self, delivery_id: int, transport: str) -> bool:
        """Mark a delivery `sending` if its subscriber is still active, else `skipped`; True if it may go."""
        stamp = now()
        with self.connection.begin():
            claimed = self.connection.execute(self._claim, {"id": delivery_id, "transport": transport, "now": stamp})
            if claimed.rowcount:
                return True
            self.connection.execute(self._skip, {"id": delivery_id, "now": stamp})
        return False

    def record(
        self, delivery_id: int, state: DeliveryState, *, message_id: str | None = None, error: str | None = None
    ) -> None:
        """Store what the transport said. A message id longer than the column (a file transport's path under a
        deep folder) is cut to fit: PostgreSQL would refuse it after the message had already left."""
        if message_id is not None:
            message_id = message_id[:MESSAGE_ID_LIMIT]
        with self.connection.begin():
            self.connection.execute(
                self._record,
                {"id": delivery_id, "state": state.value, "message_id": message_id, "error": error, "now": now()},
            )

    def close(self) -> None:
        self.connection.close()


def claim_delivery(store: Store, delivery_id: int, transport: str) -> bool:
    """SendLog.claim for one delivery (outside a send loop)."""
    log = SendLog(store)
    try:
        return log.claim(delivery_id, transport)
    finally:
        log.close()


def delivery_counts(store: Store, issue: str) -> dict[str, int]:
    """Deliveries of `issue` per state (every state listed, zero included)."""
    counts = {state.value: 0 for state in DeliveryState}
    with store.engine.connect() as conn:
        for state, count in conn.execute(
            sa.select(deliveries.c.state, sa.func.count())
            .where(deliveries.c.issue == issue)
            .group_by(deliveries.c.state)
        ):
            counts[state] = count
    return counts


@dataclass(frozen=True)
class AudiencePreview:
    """What a send would do now: recipients per edition, and who is left out and why."""

    per_edition: dict[str, int]
    left_out: dict[str, int]  # by status, and "already sent"


def _edition_for(editions: Collection[str], default_lang: str) -> Any:
    """SQL for the edition a subscriber gets: their language's if it exists, else the default."""
    return sa.case(*[(subscribers.c.lang == lang, lang) for lang in editions], else_=sa.literal(default_lang))


def audience_preview(store: Store, issue: str, editions: Collection[str], default_lang: str) -> AudiencePreview:
    """What a send would do now, without writing anything."""
    lang_case = _edition_for(editions, default_lang)
    done = sa.select(deliveries.c.id).where(
        deliveries.c.issue == issue,
        deliveries.c.subscriber_id == subscribers.c.id,
        deliveries.c.state.in_([DeliveryState.SENT, DeliveryState.FAILED, DeliveryState.SKIPPED]),
    )
    with store.engine.connect() as conn:
        per_edition: dict[str, int] = dict(
            conn.execute(
                sa.select(lang_case, sa.func.count())
                .where(subscribers.c.status == SubscriberStatus.ACTIVE, ~sa.exists(done))
                .group_by(lang_case)
            ).all()
        )
        already = conn.execute(
            sa.select(sa.func.count())
            .select_from(subscribers)
            .where(subscribers.c.status == SubscriberStatus.ACTIVE, sa.exists(done))
        ).scalar_one()
    left_out = {
        status: count for status, count in count_subscribers(store).items() if status not in {SubscriberStatus.ACTIVE}
    }
    left_out["already sent"] = already
    return AudiencePreview(per_edition, left_out)


@dataclass(frozen=True)
class DeliveryProblem:
    """A message of a send that did not go out: to whom, where it stands, and the peer's words."""

    email: str
    state: DeliveryState
    error: str


def delivery_problems(store: Store, issue: str, limit: int = 20) -> list[DeliveryProblem]:
    """The first `limit` failed or deferred deliveries of `issue`, in send order, with their errors."""
    query = (
        sa.select(subscribers.c.email, deliveries.c.state, deliveries.c.error)
        .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
        .where(deliveries.c.issue == issue, deliveries.c.state.in_([DeliveryState.FAILED, DeliveryState.DEFERRED]))
        .order_by(deliveries.c.id)
        .limit(limit)
    )
    with store.engine.connect() as conn:
        return [DeliveryProblem(r.email, DeliveryState(r.state), r.error or "") for r in conn.execute(query)]
