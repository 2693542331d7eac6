"""The send log: one delivery row per message of a send; the snapshot that creates them, what a send would do
(the plan, from the same predicates the send uses), counts and problems. The hot path is send_log.py."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa

from .database import DeliveryState, Store, SubscriberStatus, deliveries, insert_for, now, subscribers
from .subscribers import count_subscribers

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
        conn.execute(insert_for(conn.dialect.name, deliveries).from_select(columns, select).on_conflict_do_nothing())
        return conn.execute(count).scalar_one() - before  # rowcount of INSERT … SELECT is not portable


def reset_for_resend(store: Store, issue: str) -> int:
    """Forget an issue's send log so it can be sent again (newsletter send --resend)."""
    with store.begin() as conn:
        return conn.execute(deliveries.delete().where(deliveries.c.issue == issue)).rowcount or 0


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


TO_SEND = (DeliveryState.PENDING, DeliveryState.SENDING, DeliveryState.DEFERRED)  # what a send hands over


@dataclass(frozen=True)
class Audience:
    """Who a send of an issue is for: a new snapshot, or the one a first run took (plus, if asked, newcomers)."""

    issue: str
    editions: tuple[str, ...]
    default_lang: str
    fresh: bool  # no send log yet, or --resend: the snapshot is taken when the send starts
    include_new: bool  # resuming: also the active subscribers who joined after the snapshot

    def recipients(self) -> sa.Select[Any]:
        """(subscriber id, email, name, edition) of every message the send would hand over now."""
        s, d = subscribers.c, deliveries.c
        everyone = sa.select(s.id, s.email, s.name, _edition_for(self.editions, self.default_lang).label("lang"))
        if self.fresh:
            return everyone.where(s.status == SubscriberStatus.ACTIVE)
        logged = (
            sa.select(s.id, s.email, s.name, d.lang)
            .join(deliveries, d.subscriber_id == s.id)
            .where(d.issue == self.issue, d.state.in_(TO_SEND), s.status == SubscriberStatus.ACTIVE)
        )
        if not self.include_new:
            return logged
        newcomers = everyone.where(s.status == SubscriberStatus.ACTIVE, ~_has_delivery(self.issue))
        return sa.union_all(logged, newcomers)  # type: ignore[return-value]


def _edition_for(editions: Collection[str], default_lang: str) -> Any:
    """SQL for the edition a subscriber gets: their language's if it exists, else the default."""
    return sa.case(*[(subscribers.c.lang == lang, lang) for lang in editions], else_=sa.literal(default_lang))


def _has_delivery(issue: str) -> Any:
    return sa.exists().where(deliveries.c.issue == issue, deliveries.c.subscriber_id == subscribers.c.id)


@dataclass(frozen=True)
class AudiencePlan:
    """What a send would do now: messages per edition, who is left out and why, and the send log so far."""

    audience: Audience
    per_edition: dict[str, int]
    left_out: dict[str, int]
    logged: dict[str, int]  # the send log's deliveries per state before this run
    joined: int = 0  # resuming: active subscribers without a delivery for the issue (--include-new adds them)
    transports: frozenset[str] = frozenset()  # the transports earlier runs of this send log used

    @property
    def total(self) -> int:
        return sum(self.per_edition.values())


def plan_audience(
    store: Store, issue: str, editions: Collection[str], default_lang: str, *, resend: bool, include_new: bool
) -> AudiencePlan:
    """What a send would do now, from the same query the send and the dry run use; nothing is written."""
    logged = delivery_counts(store, issue)
    fresh = resend or not any(logged.values())
    audience = Audience(issue, tuple(editions), default_lang, fresh, include_new and not fresh)
    planned = audience.recipients().subquery()
    s = subscribers.c
    with store.engine.connect() as conn:
        per_edition: dict[str, int] = dict(
            conn.execute(sa.select(planned.c.lang, sa.func.count()).group_by(planned.c.lang)).all()
        )
        left_out = {status: n for status, n in count_subscribers(store).items() if status != SubscriberStatus.ACTIVE}
        if not fresh:
            d = deliveries.c
            left_since = conn.execute(
                sa.select(sa.func.count())
                .select_from(deliveries.join(subscribers, d.subscriber_id == s.id))
                .where(d.issue == issue, d.state.in_(TO_SEND), s.status != SubscriberStatus.ACTIVE)
            ).scalar_one()
            joined_since = conn.execute(
                sa.select(sa.func.count())
                .select_from(subscribers)
                .where(s.status == SubscriberStatus.ACTIVE, ~_has_delivery(issue))
            ).scalar_one()
            left_out = {
                "already sent": logged[DeliveryState.SENT],
                "failed for good": logged[DeliveryState.FAILED],
                "outcome unknown": logged[DeliveryState.UNKNOWN],
                "left since the first run": left_since,
                **({} if include_new else {"joined since the first run (--include-new sends to them)": joined_since}),
            }
    ordered = {lang: per_edition[lang] for lang in sorted(per_edition)}
    if fresh:
        return AudiencePlan(audience, ordered, left_out, logged)
    with store.engine.connect() as conn:
        used = frozenset(
            conn.execute(
                sa.select(deliveries.c.transport)
                .where(deliveries.c.issue == issue, deliveries.c.transport.is_not(None))
                .distinct()
            ).scalars()
        )
    return AudiencePlan(audience, ordered, left_out, logged, joined_since, used)


def planned_recipients(store: Store, audience: Audience, batch: int = 1000) -> Iterator[tuple[int, str, str, str]]:
    """(subscriber id, email, name, edition) of every planned message, fetched in batches (memory stays flat)."""
    planned = audience.recipients().subquery()
    after = 0
    while True:
        with store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(planned).where(planned.c.id > after).order_by(planned.c.id).limit(batch)
            ).all()
        if not rows:
            return
        for row in rows:
            yield row.id, row.email, row.name, row.lang
        after = rows[-1].id


@dataclass(frozen=True)
class DeliveryProblem:
    """A message of a send that did not go out: to whom, where it stands, and the peer's words."""

    email: str
    state: DeliveryState
    error: str


PROBLEMS = (DeliveryState.FAILED, DeliveryState.DEFERRED, DeliveryState.UNKNOWN)


def delivery_problems(store: Store, issue: str, limit: int = 20) -> list[DeliveryProblem]:
    """The first `limit` failed, deferred or unknown deliveries of `issue`, in send order, with their errors."""
    query = (
        sa.select(subscribers.c.email, deliveries.c.state, deliveries.c.error)
        .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
        .where(deliveries.c.issue == issue, deliveries.c.state.in_(PROBLEMS))
        .order_by(deliveries.c.id)
        .limit(limit)
    )
    with store.engine.connect() as conn:
        return [DeliveryProblem(r.email, DeliveryState(r.state), r.error or "") for r in conn.execute(query)]


def ambiguous_outcomes(store: Store, issue: str) -> tuple[int, int]:
    """(requests of `issue` that left with no answer, deliveries they concern): what may have gone out twice."""
    d = deliveries.c
    with store.engine.connect() as conn:
        total, rows = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(d.ambiguous), 0), sa.func.count()).where(
                d.issue == issue, d.ambiguous > 0
            )
        ).one()
    return int(total), int(rows)
