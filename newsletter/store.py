"""The subscriber store: schema (subscribers, suppressions, deliveries) and every query as a named function.

SQLite by default (WAL mode), any SQLAlchemy URL otherwise; PostgreSQL is tested. The schema is versioned
and upgrades itself when a store is opened. Nothing here renders or sends.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .errors import MissingExtraError, StoreError

SCHEMA_VERSION = 2


class SubscriberStatus(enum.StrEnum):
    """Where a subscriber stands."""

    PENDING = "pending"  # subscribed on the web, not yet confirmed (double opt-in)
    ACTIVE = "active"  # receives issues
    UNSUBSCRIBED = "unsubscribed"  # asked to stop; never mailed again unless they subscribe again
    BOUNCED = "bounced"  # the address does not exist (permanent bounce)
    COMPLAINED = "complained"  # marked a message as spam


class DeliveryState(enum.StrEnum):
    """Where one message of one issue to one subscriber stands."""

    PENDING = "pending"  # in the audience snapshot, not yet handed to the transport
    SENDING = "sending"  # claimed and being handed over; after a crash, "in flight"
    SENT = "sent"  # the transport accepted it
    FAILED = "failed"  # permanently refused (the recipient or the message); not retried
    DEFERRED = "deferred"  # a transient refusal; a resumed send retries it
    SKIPPED = "skipped"  # the subscriber left (unsubscribed, bounced, complained) after the snapshot


metadata = sa.MetaData()

schema_version = sa.Table("newsletter_schema", metadata, sa.Column("version", sa.Integer, nullable=False))

subscribers = sa.Table(
    "subscribers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("email_key", sa.String(320), nullable=False, unique=True),  # lowercased: compared case-insensitively
    sa.Column("name", sa.String(200), nullable=False, server_default=""),
    sa.Column("lang", sa.String(20)),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("source", sa.String(200), nullable=False, server_default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("confirmed_at", sa.DateTime(timezone=True)),
    sa.Column("unsubscribed_at", sa.DateTime(timezone=True)),
    sa.Column("unsubscribe_method", sa.String(40)),  # one-click, page, cli, import, bounce, complaint
    sa.Column("bounce_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("attributes", sa.JSON, nullable=False),
)

# A removed (erased) address leaves only a hash here, so it is never imported and mailed again.
suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("email_hash", sa.String(64), primary_key=True),
    sa.Column("reason", sa.String(40), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("issue", sa.String(200), nullable=False),
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
    sa.Column("lang", sa.String(20), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("transport", sa.String(16)),
    sa.Column("message_id", sa.String(300)),
    sa.Column("error", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("issue", "subscriber_id", name="uq_deliveries_issue_subscriber"),
    sa.Index("ix_deliveries_issue_state_id", "issue", "state", "id"),
)


# Bounces and complaints applied from SES; the key makes a notification delivered twice count once.
events = sa.Table(
    "events",
    metadata,
    sa.Column("feedback_id", sa.String(200), primary_key=True),
    sa.Column("email_hash", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),  # bounce-permanent, bounce-transient, complaint
    sa.Column("subtype", sa.String(60), nullable=False, server_default=""),
    sa.Column("subscriber_id", sa.Integer),
    sa.Column("occurred_at", sa.DateTime(timezone=True)),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Subscriber:
    """One subscriber as stored."""

    id: int
    email: str
    name: str
    lang: str | None
    status: SubscriberStatus
    source: str
    created_at: dt.datetime
    confirmed_at: dt.datetime | None = None
    unsubscribed_at: dt.datetime | None = None
    unsubscribe_method: str | None = None
    bounce_count: int = 0
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery:
    """One pending message of a send: who gets which edition."""

    id: int
    subscriber_id: int
    email: str
    name: str
    lang: str
    state: DeliveryState
    attempts: int


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def email_key(email: str) -> str:
    return email.strip().lower()


def email_hash(email: str) -> str:
    return hashlib.sha256(email_key(email).encode()).hexdigest()


class Store:
    """An open store: an engine with the schema in place. Use as a context manager or call close()."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # SQLite has one writer at a time; its busy handler waits by sleeping, which under many threads
        # (the web app) costs far more than queueing the writers of this process on a lock.
        self._write_lock = threading.Lock() if engine.dialect.name == "sqlite" else None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def begin(self) -> Iterator[Connection]:
        """A write transaction (committed at the end, rolled back on error)."""
        if self._write_lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._write_lock, self.engine.begin() as conn:
            yield conn


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (the web app) never block the sender
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes; WAL keeps it consistent
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def open_store(url: str) -> Store:
    """Connect to `url`, create or upgrade the schema, and return the Store."""
    try:
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, future=True, pool_pre_ping=not url.startswith("sqlite"))
    except ModuleNotFoundError as err:
        if "psycopg" in str(err):
            raise MissingExtraError("PostgreSQL", "postgres") from None
        raise StoreError(_safe_url(url), f"cannot load the database driver: {err}", "install it") from None
    except sa.exc.ArgumentError as err:
        raise StoreError(_safe_url(url), f"is not a database URL: {err}", "use sqlite:///… or postgresql://…") from None
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    try:
        _migrate(engine)
    except sa.exc.OperationalError as err:
        raise StoreError(_safe_url(url), f"cannot open the database: {err.orig}", "check the URL and server") from None
    return Store(engine)


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "database URL"


def _add_events_table(conn: Connection) -> None:
    events.create(conn, checkfirst=True)


# version → the step that upgrades the version before it. A new database gets `metadata` whole.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    2: _add_events_table,  # 2: bounces and complaints from SES
}


def _migrate(engine: Engine) -> None:
    """Create the schema in an empty database; run the upgrades a newer version added."""
    with engine.begin() as conn:
        inspector = sa.inspect(conn)
        if not inspector.has_table("newsletter_schema"):
            metadata.create_all(conn)
            conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
            return
        version = conn.execute(sa.select(schema_version.c.version)).scalar_one()
        if version > SCHEMA_VERSION:
            raise StoreError(
                "store", f"schema version {version} is newer than this program's {SCHEMA_VERSION}", "upgrade newsletter"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[target](conn)
            conn.execute(schema_version.update().values(version=target))


# ---------------------------------------------------------------- subscribers


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
    )


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
        subscriber_id = result.inserted_primary_key[0]
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
        hashes = {hashlib.sha256(key.encode()).hexdigest(): key for key in keys}
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


# ---------------------------------------------------------------- deliveries (the send log)


def snapshot_audience(store: Store, issue: str, languages: dict[str | None, str], default_lang: str) -> int:
    """Add a pending delivery for every active subscriber who has none for `issue` yet; returns how many.

    One INSERT … SELECT, so the audience never passes through this process. `languages` maps a
    subscriber's language to the edition they get; other languages get `default_lang`.
    """
    stamp = now()
    lang_case = sa.case(
        *[(subscribers.c.lang == lang, edition) for lang, edition in languages.items() if lang is not None],
        else_=sa.literal(default_lang),
    )
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


def audience_preview(store: Store, issue: str, languages: dict[str | None, str], default_lang: str) -> dict[str, Any]:
    """What a send would do now, without writing: recipients per edition and who is left out and why."""
    lang_case = sa.case(
        *[(subscribers.c.lang == lang, edition) for lang, edition in languages.items() if lang is not None],
        else_=sa.literal(default_lang),
    )
    done = sa.select(deliveries.c.id).where(
        deliveries.c.issue == issue,
        deliveries.c.subscriber_id == subscribers.c.id,
        deliveries.c.state.in_([DeliveryState.SENT, DeliveryState.FAILED, DeliveryState.SKIPPED]),
    )
    with store.engine.connect() as conn:
        per_edition = dict(
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
    return {"per_edition": per_edition, "left_out": left_out}


# ---------------------------------------------------------------- the web app and SES events


def request_subscription(store: Store, email: str, lang: str | None, consent: str) -> tuple[Subscriber | None, bool]:
    """(the subscriber to send a confirmation to, or None; whether they were new) for a web sign-up.

    New addresses become `pending`; a pending or unsubscribed one gets a new confirmation; an active,
    bounced, complained or removed one gets none (the page answers the same either way).
    """
    stamp = now()
    with store.begin() as conn:
        if is_suppressed(conn, email):
            return None, False
        existing = find_subscriber(conn, email)
        if existing is None:
            result = conn.execute(
                subscribers.insert().values(
                    email=email,
                    email_key=email_key(email),
                    name="",
                    lang=lang,
                    status=SubscriberStatus.PENDING,
                    source="web",
                    created_at=stamp,
                    attributes={"consent": consent, "consent_at": stamp.isoformat()},
                )
            )
            row = conn.execute(sa.select(subscribers).where(subscribers.c.id == result.inserted_primary_key[0])).one()
            return _subscriber(row), True
        if existing.status in {SubscriberStatus.PENDING, SubscriberStatus.UNSUBSCRIBED}:
            return existing, False
        return None, False


def confirm_subscription(store: Store, subscriber_id: int) -> Subscriber | None:
    """Make a pending (or unsubscribed, re-confirming) subscriber active; None if there is no such subscriber."""
    with store.begin() as conn:
        conn.execute(
            subscribers.update()
            .where(
                subscribers.c.id == subscriber_id,
                subscribers.c.status.in_([SubscriberStatus.PENDING, SubscriberStatus.UNSUBSCRIBED]),
            )
            .values(status=SubscriberStatus.ACTIVE, confirmed_at=now(), unsubscribed_at=None, unsubscribe_method=None)
        )
        row = conn.execute(sa.select(subscribers).where(subscribers.c.id == subscriber_id)).first()
    return _subscriber(row) if row else None


def resubscribe(store: Store, subscriber_id: int) -> bool:
    """Undo an unsubscribe at the subscriber's own request (from their signed link). True if it changed."""
    with store.begin() as conn:
        return (
            conn.execute(
                subscribers.update()
                .where(
                    subscribers.c.id == subscriber_id,
                    subscribers.c.status == SubscriberStatus.UNSUBSCRIBED,
                )
                .values(
                    status=SubscriberStatus.ACTIVE, confirmed_at=now(), unsubscribed_at=None, unsubscribe_method=None
                )
            ).rowcount
            == 1
        )


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


def record_event(
    store: Store,
    *,
    feedback_id: str,
    email: str,
    kind: str,
    subtype: str,
    occurred_at: dt.datetime | None,
    transient_limit: int,
) -> str:
    """Apply one bounce or complaint to the subscriber it names; returns what happened, for the log.

    A permanent bounce marks the address `bounced`, a complaint `complained`; transient bounces are
    counted and mark it `bounced` at `transient_limit`. A notification seen before changes nothing.
    """
    stamp = now()
    with store.begin() as conn:
        seen = conn.execute(
            sa.select(events.c.kind).where(
                events.c.feedback_id == feedback_id, events.c.email_hash == email_hash(email)
            )
        ).first()
        if seen:
            return "duplicate"
        subscriber = find_subscriber(conn, email)
        conn.execute(
            events.insert().values(
                feedback_id=feedback_id,
                email_hash=email_hash(email),
                kind=kind,
                subtype=subtype,
                subscriber_id=subscriber.id if subscriber else None,
                occurred_at=occurred_at,
                recorded_at=stamp,
            )
        )
        if subscriber is None:
            return "unknown address"
        changes: dict[str, Any] = {}
        if kind == "complaint":
            changes = {"status": SubscriberStatus.COMPLAINED}
        elif kind == "bounce-permanent":
            changes = {"status": SubscriberStatus.BOUNCED}
        else:
            count = subscriber.bounce_count + 1
            changes = {"bounce_count": count}
            if count >= transient_limit:
                changes["status"] = SubscriberStatus.BOUNCED
        if "status" in changes and subscriber.status in {SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED}:
            changes.pop("status")  # already suppressed
        if "status" in changes:
            changes |= {"unsubscribed_at": stamp, "unsubscribe_method": kind}
        conn.execute(subscribers.update().where(subscribers.c.id == subscriber.id).values(**changes))
        return str(changes.get("status", "counted"))
