"""Queries about subscribers: adding, importing, listing, unsubscribing, removing and web sign-ups (the
events that suppress them are in feedback.py, tracking consent in consent.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..errors import StoreError
from .database import (
    Store,
    Subscriber,
    SubscriberStatus,
    email_hash,
    email_key,
    insert_for,
    now,
    subscribers,
    suppressions,
    tracking_consents,
    welcomes,
)


def _subscriber(row: Any) -> Subscriber:
    return Subscriber(
        id=row.id,
        email=row.email,
        name=row.name,
        lang=row.lang,
        status=SubscriberStatus(row.status),
        source=row.source,
        created_at=row.created_at,
        confirmed_at=row.confirmed_at,
        unsubscribed_at=row.unsubscribed_at,
        unsubscribe_method=row.unsubscribe_method,
        bounce_count=row.bounce_count,
        attributes=row.attributes or {},
        tracking_consent_at=row.tracking_consent_at,
        tracking_consent_how=row.tracking_consent_how,
        tracking_consent_withdrawn_at=row.tracking_consent_withdrawn_at,
    )


def _inserted_id(result: sa.CursorResult[Any]) -> int:
    """The primary key of the row an INSERT made."""
    key = result.inserted_primary_key
    assert key is not None, "an INSERT of one row has a primary key"
    return int(key[0])


def is_suppressed(conn: Connection, email: str) -> bool:
    return (
        conn.execute(sa.select(suppressions.c.reason).where(suppressions.c.email_hash == email_hash(email))).first()
        is not None
    )


def add_subscriber(
    store: Store,
    email: str,
    *,
    name: str = "",
    lang: str | None = None,
    source: str = "cli",
    status: SubscriberStatus = SubscriberStatus.ACTIVE,
    attributes: dict[str, Any] | None = None,
) -> Subscriber:
    """Insert a subscriber; an address already there (in any case) or removed earlier is refused."""
    stamp = now()
    with store.begin() as conn:
        if is_suppressed(conn, email):
            raise StoreError(email, "was removed from the list earlier", "it stays off the list")
        existing = find_subscriber(conn, email)
        if existing is not None:
            raise StoreError(email, f"is already on the list ({existing.status})", "nothing to do")
        result = conn.execute(
            subscribers.insert().values(
                email=email,
                email_key=email_key(email),
                name=name,
                lang=lang,
                status=status,
                source=source,
                created_at=stamp,
                confirmed_at=stamp if status == SubscriberStatus.ACTIVE else None,
                attributes=attributes or {},
            )
        )
        subscriber_id = _inserted_id(result)
        return _subscriber(conn.execute(sa.select(subscribers).where(subscribers.c.id == subscriber_id)).one())


def find_subscriber(conn: Connection, email: str) -> Subscriber | None:
    row = conn.execute(sa.select(subscribers).where(subscribers.c.email_key == email_key(email))).first()
    return _subscriber(row) if row else None


def get_subscriber(store: Store, subscriber_id: int) -> Subscriber | None:
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(subscribers).where(subscribers.c.id == subscriber_id)).first()
    return _subscriber(row) if row else None


def subscriber_by_email(store: Store, email: str) -> Subscriber | None:
    with store.engine.connect() as conn:
        return find_subscriber(conn, email)


def iter_subscribers(store: Store, status: SubscriberStatus | None = None, batch: int = 1000) -> Iterator[Subscriber]:
    """Every subscriber (of `status`) by id, fetched in batches so memory stays flat."""
    last = 0
    while True:
        query = sa.select(subscribers).where(subscribers.c.id > last).order_by(subscribers.c.id).limit(batch)
        if status is not None:
            query = query.where(subscribers.c.status == status)
        with store.engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return
        for row in rows:
            yield _subscriber(row)
        last = rows[-1].id


def count_subscribers(store: Store) -> dict[str, int]:
    """Subscribers per status (every status listed, zero included)."""
    counts = {status.value: 0 for status in SubscriberStatus}
    with store.engine.connect() as conn:
        for status, count in conn.execute(
            sa.select(subscribers.c.status, sa.func.count()).group_by(subscribers.c.status)
        ):
            counts[status] = count
    return counts


def remove_subscriber(store: Store, email: str) -> bool:
    """Erase a subscriber (GDPR Art. 17) and keep only a hash of the address as a suppression."""
    with store.begin() as conn:
        existing = find_subscriber(conn, email)
        if existing is None:
            return False
        conn.execute(subscribers.delete().where(subscribers.c.id == existing.id))
        if not is_suppressed(conn, email):
            conn.execute(suppressions.insert().values(email_hash=email_hash(email), reason="removed", created_at=now()))
    return True


def record_unsubscribe(store: Store, subscriber_id: int, method: str) -> bool:
    """Mark a subscriber unsubscribed (once; a repeat changes nothing). True if this call changed it."""
    with store.begin() as conn:
        result = conn.execute(
            subscribers.update()
            .where(
                subscribers.c.id == subscriber_id,
                subscribers.c.status.in_([SubscriberStatus.ACTIVE, SubscriberStatus.PENDING]),
            )
            .values(status=SubscriberStatus.UNSUBSCRIBED, unsubscribed_at=now(), unsubscribe_method=method)
        )
        return result.rowcount == 1


@dataclass
class ImportCounts:
    """What an import did."""

    added: int = 0
    already: int = 0  # on the list already; their status is kept (an unsubscribe is never undone)
    suppressed: int = 0  # removed earlier; stays off the list


def insert_subscribers(store: Store, rows: Iterable[dict[str, Any]], source: str, chunk: int = 5000) -> ImportCounts:
    """Insert new subscribers (rows: email, name, lang, attributes) in chunks; never touches existing ones."""
    counts = ImportCounts()
    stamp = now()
    pending: list[dict[str, Any]] = []

    def flush(conn: Connection) -> None:
        keys = [row["email_key"] for row in pending]
        hashes = {email_hash(key): key for key in keys}
        suppressed = {
            hashes[h]
            for (h,) in conn.execute(
                sa.select(suppressions.c.email_hash).where(suppressions.c.email_hash.in_(list(hashes)))
            )
        }
        existing = {
            k for (k,) in conn.execute(sa.select(subscribers.c.email_key).where(subscribers.c.email_key.in_(keys)))
        }
        fresh = [row for row in pending if row["email_key"] not in existing and row["email_key"] not in suppressed]
        if fresh:
            conn.execute(subscribers.insert(), fresh)
        counts.added += len(fresh)
        counts.already += len(existing)
        counts.suppressed += len(suppressed - existing)
        pending.clear()

    with store.begin() as conn:
        for row in rows:
            pending.append(
                {
                    "email": row["email"],
                    "email_key": email_key(row["email"]),
                    "name": row.get("name") or "",
                    "lang": row.get("lang") or None,
                    "status": SubscriberStatus.ACTIVE,
                    "source": source,
                    "created_at": stamp,
                    "confirmed_at": stamp,
                    "attributes": row.get("attributes") or {},
                    "bounce_count": 0,
                }
            )
            if len(pending) >= chunk:
                flush(conn)
        if pending:
            flush(conn)
    return counts


def request_subscription(
    store: Store, email: str, lang: str | None, consent: str, *, confirm: bool = True, tracking: str | None = None
) -> tuple[Subscriber | None, bool]:
    """(the subscriber a confirmation is due to, or None; whether they were new) for a web sign-up.

    New addresses become `pending`; a pending or unsubscribed one is due a new confirmation; an active,
    bounced, complained or removed one is due none (the page answers the same either way). With `confirm`
    the row is marked due (`confirmation_due_at`) for the confirmation worker; nothing is sent here.
    `tracking` (how it was given, e.g. "subscribe form") records consent to open and click tracking on a new
    row only: a form anyone can post never changes a known subscriber's choice (their preferences page does).
    """
    stamp = now()
    due = stamp if confirm else None
    key = email_key(email)
    with store.begin() as conn:
        suppressed = is_suppressed(conn, email)
        existing = find_subscriber(conn, email)
        # One statement for every address, new or known: insert the pending row unless the address is
        # suppressed; on a known one, mark it due again only if it may confirm. The same Python and SQL work
        # either way (then the row is read back), so the answer time does not tell a known address from a new one.
        fresh = {
            "email": email,
            "email_key": key,
            "name": "",
            "lang": lang,
            "status": SubscriberStatus.PENDING.value,
            "source": "web",
            "created_at": stamp,
            "attributes": {"consent": consent, "consent_at": stamp.isoformat()},
            "confirmation_due_at": due,
            "tracking_consent_at": stamp if tracking else None,
            "tracking_consent_how": tracking,
        }
        values = sa.select(*[sa.literal(value, subscribers.c[name].type) for name, value in fresh.items()]).where(
            ~sa.exists().where(suppressions.c.email_hash == email_hash(email))
        )
        again = sa.case(
            (
                sa.and_(subscribers.c.status.in_([s.value for s in _CONFIRMABLE]), sa.literal(due is not None)),
                sa.literal(due, subscribers.c.confirmation_due_at.type),
            ),
            else_=subscribers.c.confirmation_due_at,
        )
        insert = insert_for(conn.dialect.name, subscribers).from_select(list(fresh), values)
        conn.execute(
            insert.on_conflict_do_update(index_elements=[subscribers.c.email_key], set_={"confirmation_due_at": again})
        )
        # The consent's history row, for the row this statement inserted only (known rows keep another stamp).
        s = subscribers.c
        given = sa.select(s.id, sa.true(), s.tracking_consent_how, s.created_at).where(
            s.email_key == key,
            s.tracking_consent_at == sa.literal(stamp, s.tracking_consent_at.type),
            s.created_at == sa.literal(stamp, s.created_at.type),
        )
        conn.execute(tracking_consents.insert().from_select(["subscriber_id", "given", "how", "at"], given))
        row = conn.execute(sa.select(subscribers).where(subscribers.c.email_key == key)).first()
        if suppressed or row is None:
            return None, False
        if existing is None:
            return _subscriber(row), True
        return (existing, False) if existing.status in _CONFIRMABLE else (None, False)


_CONFIRMABLE = {SubscriberStatus.PENDING, SubscriberStatus.UNSUBSCRIBED}  # due a new confirmation on a sign-up


def claim_confirmations(store: Store, *, lease: dt.timedelta, limit: int = 50) -> list[tuple[Subscriber, dt.datetime]]:
    """Claim up to `limit` due confirmation mails: (subscriber, lease end) for each one claimed here.

    Each claim is a conditional UPDATE that moves the due time to the lease's end, so of several processes
    exactly one claims each row; a claim whose mail was never finished (a crash) is due again after the lease.
    """
    stamp = now()
    until = stamp + lease
    with store.engine.connect() as conn:
        ids = (
            conn.execute(
                sa.select(subscribers.c.id)
                .where(subscribers.c.confirmation_due_at <= stamp)
                .order_by(subscribers.c.confirmation_due_at, subscribers.c.id)
                .limit(limit)
            )
            .scalars()
            .all()
        )
    claimed = []
    for subscriber_id in ids:
        with store.begin() as conn:
            result = conn.execute(
                subscribers.update()
                .where(subscribers.c.id == subscriber_id, subscribers.c.confirmation_due_at <= stamp)
                .values(confirmation_due_at=until)
            )
            if result.rowcount == 1:
                row = conn.execute(sa.select(subscribers).where(subscribers.c.id == subscriber_id)).one()
                claimed.append((_subscriber(row), until))
    return claimed


def finish_confirmation(store: Store, subscriber_id: int, lease_until: dt.datetime) -> None:
    """Clear a claimed confirmation (sent, or not to be sent); a sign-up that asked again since stays due."""
    with store.begin() as conn:
        conn.execute(
            subscribers.update()
            .where(subscribers.c.id == subscriber_id, subscribers.c.confirmation_due_at == lease_until)
            .values(confirmation_due_at=None)
        )


def confirmation_issue_time(subscriber: Subscriber, clock_now: float) -> int:
    """The issue time (Unix seconds) for a new confirmation token: now, and later than the last unsubscribe."""
    issued = int(clock_now)
    if subscriber.unsubscribed_at is not None:
        issued = max(issued, int(_utc(subscriber.unsubscribed_at).timestamp()) + 1)
    return issued


def confirmation_is_current(subscriber: Subscriber, issued_at: int) -> bool:
    """Whether a confirmation token issued at `issued_at` (Unix seconds) may still confirm `subscriber`.

    A token older than the subscriber's unsubscribe (or than the row itself) never re-activates them.
    """
    issued = dt.datetime.fromtimestamp(issued_at, dt.UTC)
    if _utc(subscriber.created_at) >= issued + dt.timedelta(seconds=1):
        return False
    return subscriber.unsubscribed_at is None or _utc(subscriber.unsubscribed_at) < issued


def _utc(stamp: dt.datetime) -> dt.datetime:
    """A stored time as an aware UTC time (SQLite gives them back naive, in UTC)."""
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)


def confirm_subscription(
    store: Store, subscriber_id: int, issued_at: int, *, welcome: bool = True
) -> tuple[Subscriber | None, bool]:
    """(the subscriber, whether this call activated them) for a confirmation token issued at `issued_at`.

    A pending (or unsubscribed, re-confirming) subscriber becomes active, unless the token is older than
    their unsubscribe or than the row: an old link never undoes a later unsubscribe. With `welcome`, the
    transaction that activates them makes their welcome mail due, unless they had one (`welcomes`: one per
    subscriber ever).
    """
    issued = dt.datetime.fromtimestamp(issued_at, dt.UTC)
    with store.begin() as conn:
        result = conn.execute(
            subscribers.update()
            .where(
                subscribers.c.id == subscriber_id,
                subscribers.c.status.in_([SubscriberStatus.PENDING, SubscriberStatus.UNSUBSCRIBED]),
                sa.or_(subscribers.c.unsubscribed_at.is_(None), subscribers.c.unsubscribed_at < issued),
                subscribers.c.created_at < issued + dt.timedelta(seconds=1),
            )
            .values(
                status=SubscriberStatus.ACTIVE,
                confirmed_at=now(),
                unsubscribed_at=None,
                unsubscribe_method=None,
                confirmation_due_at=None,
            )
        )
        if result.rowcount == 1 and welcome:
            due = insert_for(conn.dialect.name, welcomes).values(subscriber_id=subscriber_id, due_at=now())
            conn.execute(due.on_conflict_do_nothing(index_elements=[welcomes.c.subscriber_id]))
        row = conn.execute(sa.select(subscribers).where(subscribers.c.id == subscriber_id)).first()
    return (_subscriber(row) if row else None), result.rowcount == 1


UNDO_UNSUBSCRIBE = dt.timedelta(hours=1)  # how long "Subscribe again" undoes an unsubscribe without a confirmation


def resubscribe(store: Store, subscriber_id: int, *, confirm: bool = True) -> str:
    """ "Subscribe again" from the subscriber's signed link: "back" when an unsubscribe of the last
    UNDO_UNSUBSCRIBE is undone (a mistaken click, then the page's button), "confirm" when an older one is not
    undone here but a confirmation mail is made due instead (with `confirm`; as a sign-up, so a link in a
    forwarded or archived mail cannot put anybody back on the list), "" when they are not unsubscribed."""
    stamp = now()
    row = subscribers.c
    with store.begin() as conn:
        undone = conn.execute(
            subscribers.update()
            .where(
                row.id == subscriber_id,
                row.status == SubscriberStatus.UNSUBSCRIBED,
                row.unsubscribed_at >= stamp - UNDO_UNSUBSCRIBE,
            )
            .values(status=SubscriberStatus.ACTIVE, confirmed_at=stamp, unsubscribed_at=None, unsubscribe_method=None)
        ).rowcount
        if undone:
            return "back"
        asked = conn.execute(
            subscribers.update()
            .where(row.id == subscriber_id, row.status == SubscriberStatus.UNSUBSCRIBED)
            .values(confirmation_due_at=stamp if confirm else row.confirmation_due_at)
        ).rowcount
    return "confirm" if asked else ""


def set_language(store: Store, subscriber_id: int, lang: str) -> None:
    with store.begin() as conn:
        conn.execute(subscribers.update().where(subscribers.c.id == subscriber_id).values(lang=lang))


def purge_unconfirmed(store: Store, older_than: dt.timedelta) -> int:
    """Delete pending sign-ups that were never confirmed (GDPR: keep no data without consent)."""
    with store.begin() as conn:
        return (
            conn.execute(
                subscribers.delete().where(
                    subscribers.c.status == SubscriberStatus.PENDING,
                    subscribers.c.created_at < now() - older_than,
                )
            ).rowcount
            or 0
        )
