"""The store's schema (tables, statuses, records), its connection and its self-upgrading versions.

SQLite by default (WAL mode), any SQLAlchemy URL otherwise; PostgreSQL is tested.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import hashlib
import os
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..errors import MissingExtraError, StoreError

SCHEMA_VERSION = 8


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
    SENDING = "sending"  # claimed by a sender (lease_owner) and being handed over; after a crash, "in flight"
    SENT = "sent"  # the transport accepted it
    FAILED = "failed"  # permanently refused (the recipient or the message); not retried
    DEFERRED = "deferred"  # a transient refusal; a resumed send retries it
    SKIPPED = "skipped"  # the subscriber left (unsubscribed, bounced, complained) after the snapshot
    UNKNOWN = "unknown"  # requests left and no answer came, as often as `ambiguous_retries` allows: not sent again


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
    # A web sign-up's confirmation mail is due from this time (None: nothing to send). The pending row is the
    # queue: a worker claims it by moving the time forward (a lease) and clears it once the mail is handed over.
    sa.Column("confirmation_due_at", sa.DateTime(timezone=True), index=True),
    # Consent to open and click tracking, apart from the subscription: when and how it was given (None: no
    # consent, so SES tracks nothing of their messages), and when it was last withdrawn. Every change is also a
    # row of `tracking_consents`, which keeps how each withdrawal was made.
    sa.Column("tracking_consent_at", sa.DateTime(timezone=True)),
    sa.Column("tracking_consent_how", sa.String(40)),  # subscribe form, preferences page, …
    sa.Column("tracking_consent_withdrawn_at", sa.DateTime(timezone=True)),
    # Links name subscribers by id and never expire, so an id is never given out twice (SQLite would otherwise
    # reuse the highest one after a `subscribers remove`). PostgreSQL's sequences never reuse one.
    sqlite_autoincrement=True,
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
    # The sender (senders.id) that claimed it, and until when; a dead sender's claims fall back after the lease.
    sa.Column("lease_owner", sa.String(32)),
    sa.Column("lease_until", sa.DateTime(timezone=True)),
    # How often a request for it left and no answer came (the peer may have taken it): shown by `status`.
    sa.Column("ambiguous", sa.Integer, nullable=False, server_default="0"),
    sa.UniqueConstraint("issue", "subscriber_id", name="uq_deliveries_issue_subscriber"),
    sa.Index("ix_deliveries_issue_state_id", "issue", "state", "id"),
)


# The `newsletter send` processes at work on this store: their heartbeats renew their leases and tell each one its
# share of the account's rate. A finished or dead sender's row stays for one rate window (its last starts still
# count against the account), then goes.
senders = sa.Table(
    "senders",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("issue", sa.String(200), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
)


EVENTS_INDEX = "ix_events_issue_kind_edition_paper_subscriber_id"


# What SES said about each message, one row per recipient per event: sends, deliveries, bounces, complaints,
# rejects, delivery delays and rendering failures for everyone; opens and clicks only exist for subscribers who
# consented (their messages alone go out with tracking on). The key makes an event delivered twice count once:
# SES's feedbackId for bounces and complaints, else one made of the message id, the event type and its time (and
# a digest of a click's link; events.py `event_key`). `issue` is the SES tag value of the slug
# (transports/ses.py: ASCII letters, digits, _ and - kept, anything else _), `edition` its language, `paper` a
# click's `paper` link tag (the paper's anchor).
events = sa.Table(
    "events",
    metadata,
    sa.Column("feedback_id", sa.String(200), primary_key=True),
    sa.Column("email_hash", sa.String(64), primary_key=True),
    # bounce-permanent, bounce-transient, complaint, send, delivery, reject, open, click, delivery-delay,
    # rendering-failure
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("subtype", sa.String(60), nullable=False, server_default=""),
    sa.Column("subscriber_id", sa.Integer),
    sa.Column("occurred_at", sa.DateTime(timezone=True)),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("issue", sa.String(200)),  # mail.tags["issue"][0]
    sa.Column("edition", sa.String(35)),  # mail.tags["edition"][0]
    sa.Column("message_id", sa.String(200)),  # mail.messageId
    sa.Column("link", sa.String(2000)),  # click.link
    sa.Column("paper", sa.String(200)),  # click.linkTags["paper"][0]
    # An issue's events of a kind, and (covering) what the report's open and click counts group and count: those
    # queries read this index alone, never the rows (bench/report.py: SQLite 1.46 → 0.98 s CPU a report).
    sa.Index(EVENTS_INDEX, "issue", "kind", "edition", "paper", "subscriber_id"),
)


# Every giving and withdrawing of tracking consent, oldest first: what `subscribers` holds is the latest state.
tracking_consents = sa.Table(
    "tracking_consents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
    sa.Column("given", sa.Boolean, nullable=False),  # True: consent given; False: withdrawn
    sa.Column("how", sa.String(40), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_tracking_consents_subscriber_id", "subscriber_id"),
)


# The welcome mail of each subscriber who confirmed a web sign-up. The row is made in the transaction that
# confirms them (so an import or `subscribers add` never makes one), its key allows one per subscriber ever,
# and a worker claims it by the one conditional UPDATE that sets claimed_at before the mail is handed over: a
# double click, many processes or a crash after the claim send it at most once.
welcomes = sa.Table(
    "welcomes",
    metadata,
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("claimed_at", sa.DateTime(timezone=True)),  # None: not yet claimed
    sa.Column("outcome", sa.String(16)),  # sent, failed, ambiguous (may have arrived), skipped (no longer active)
    sa.Column("message_id", sa.String(300)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Index("ix_welcomes_claimed_at_due_at", "claimed_at", "due_at"),
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
    tracking_consent_at: dt.datetime | None = None  # None: no consent to open and click tracking
    tracking_consent_how: str | None = None
    tracking_consent_withdrawn_at: dt.datetime | None = None

    @property
    def tracking(self) -> bool:
        """Whether SES may track opens and clicks of their messages."""
        return self.tracking_consent_at is not None


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
    tracking: bool = False  # the subscriber consented to open and click tracking


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def insert_for(dialect: str, table: sa.Table) -> Any:
    """The dialect's own INSERT of `table` (it has ON CONFLICT DO NOTHING); only that dialect's module is imported
    (PostgreSQL's pulls in its async drivers' modules, ~45 ms that a SQLite send would pay for nothing)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)


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


BUSY_TIMEOUT_MS = 10_000  # how long a SQLite write waits for another process's write to end


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")  # first: the pragmas below may wait for a lock too
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (the web app) never block the sender
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes; WAL keeps it consistent
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _private_sqlite_file(path: Path) -> None:
    """Make the SQLite file private before SQLite opens it: missing folders 0700, a new file 0600.

    SQLite gives its -wal and -shm files the database file's mode, so they are private too. An existing
    database (or -wal/-shm) that others may read is tightened: their permissions go, the owner's and
    group's stay (a group shared on purpose keeps working).
    """
    missing = [p for p in path.parents if not p.exists()]
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:  # made meanwhile by another process
            continue
        os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # 0600 & ~umask: the umask cannot widen it
    except FileExistsError:
        pass
    for existing in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = stat.S_IMODE(existing.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o007:
            os.chmod(existing, mode & ~0o007)


def _store_errors(where: str) -> Callable[[Any], None]:
    """An engine `handle_error` hook: the database errors a user can act on become one-line StoreErrors."""

    def handle(context: Any) -> None:
        error = context.sqlalchemy_exception
        detail = str(context.original_exception).strip().splitlines()[0] if str(context.original_exception) else ""
        if isinstance(error, sa.exc.OperationalError) and "database is locked" in detail:
            raise StoreError(
                where, "the database is locked by another process", "wait for it to finish, or stop it"
            ) from None
        if isinstance(error, sa.exc.DataError):
            raise StoreError(where, f"refused a value: {detail}", "shorten or correct it") from None

    return handle


def open_store(url: str, *, setting: str = "") -> Store:
    """Connect to `url`, create or upgrade the schema, and return the Store.

    `setting` names where the URL came from (a settings key or environment variable) for the errors that
    mean the URL itself is wrong."""
    wrong_url = setting or _safe_url(url)
    shown = f"'{_safe_url(url)}' " if setting and _safe_url(url) != UNREADABLE_URL else ""
    try:
        database = sa.engine.make_url(url).database if url.startswith("sqlite:") else None
        if database and database != ":memory:" and not database.startswith("file:"):
            _refuse_what_is_no_sqlite_file(Path(database), setting)
            try:
                _private_sqlite_file(Path(database))
            except OSError as err:  # a folder on the way is a file, or one we may not enter
                raise StoreError(
                    database, f"cannot be created or opened: {err.strerror or err}", _check(setting)
                ) from None
        engine = sa.create_engine(url, future=True, pool_pre_ping=not url.startswith("sqlite"))
    except ImportError as err:  # a driver not installed, or one that cannot load its C library (libpq)
        if (err.name or "").split(".")[0] == "psycopg" or (err.name is None and "psycopg" in str(err)):
            raise MissingExtraError("PostgreSQL", "postgres", needs="the psycopg driver", where=wrong_url) from None
        raise StoreError(
            wrong_url, f"{shown}needs a database driver: {err}", "use sqlite:///… or postgresql://…"
        ) from None
    except (sa.exc.ArgumentError, ValueError) as err:
        raise StoreError(
            wrong_url, f"{shown}is not a database URL: {err}", "use sqlite:///… or postgresql://…"
        ) from None
    where = database or _safe_url(url)
    sa.event.listen(engine, "handle_error", _store_errors(where))
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    try:
        _migrate(engine)
    except sa.exc.DBAPIError as err:  # the store's locks and value errors are StoreErrors already (_store_errors)
        engine.dispose()
        raise _open_failure(err, database, _safe_url(url), setting) from None
    return Store(engine)


SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database (an empty file becomes one)


def _refuse_what_is_no_sqlite_file(path: Path, setting: str) -> None:
    """Refuse a folder, or a file with content that is not SQLite's, before its permissions are touched."""
    if path.is_dir():
        raise StoreError(str(path), "is a folder, not a SQLite database", _check(setting))
    try:
        if not path.is_file() or path.stat().st_size == 0:
            return
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError:  # unreadable: SQLite's own open says what is wrong
        return
    if header != SQLITE_HEADER:
        raise StoreError(str(path), "is not a SQLite database", _check(setting))


def _check(setting: str) -> str:
    """The hint of an open failure: the setting or variable the store's URL came from."""
    return f"check {setting}" if setting else "check the database URL"


def _open_failure(err: sa.exc.DBAPIError, database: str | None, url: str, setting: str) -> StoreError:
    """One line for a store that cannot be opened: which one, what is wrong with it, and what to do."""
    detail = (str(err.orig).strip().splitlines() or [type(err.orig).__name__])[0]
    if not database or database == ":memory:" or database.startswith("file:"):
        return StoreError(url, f"cannot open the database: {detail}", "check the URL, the server and its permissions")
    path = Path(database)
    if "file is not a database" in detail:
        return StoreError(database, "is not a SQLite database", _check(setting))
    if path.is_dir():
        return StoreError(database, "is a folder, not a SQLite database", _check(setting))
    if "readonly" in detail or "unable to open" in detail:
        return StoreError(
            database, f"cannot be written: {detail}", f"let this user write to it and its folder, or {_check(setting)}"
        )
    return StoreError(database, f"cannot be opened: {detail}", _check(setting))


UNREADABLE_URL = "database URL"  # what messages call a URL too broken to hide its password in


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):  # ValueError: a port SQLAlchemy cannot read, as in http://[::1
        return UNREADABLE_URL


def _add_events_table(conn: Connection) -> None:
    events.create(conn, checkfirst=True)


def _add_confirmation_due_at(conn: Connection) -> None:
    if "confirmation_due_at" in {column["name"] for column in sa.inspect(conn).get_columns("subscribers")}:
        return
    kind = sa.DateTime(timezone=True).compile(dialect=conn.dialect)
    conn.execute(sa.text(f"ALTER TABLE subscribers ADD COLUMN confirmation_due_at {kind}"))
    conn.execute(sa.text("CREATE INDEX ix_subscribers_confirmation_due_at ON subscribers (confirmation_due_at)"))


def _never_reuse_subscriber_ids(conn: Connection) -> None:
    """SQLite: rebuild `subscribers` with AUTOINCREMENT, its counter past every id that any table still names.

    Unsubscribe links name an id for ever, and without AUTOINCREMENT SQLite gives the highest id again once
    its subscriber is removed. SQLite's procedure for changing a table: make the new one, copy, drop the old,
    rename the new; with foreign keys off (see _migrate) nothing cascades into the send log. Ids that a
    store gave out twice before this upgrade cannot be told apart afterwards; from here on none is reused.
    PostgreSQL's sequences never reuse an id: nothing to do there.
    """
    if conn.dialect.name != "sqlite":
        return
    table_sql = conn.execute(sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'subscribers'"))
    if "AUTOINCREMENT" in (table_sql.scalar_one() or "").upper():
        return
    highest = conn.execute(
        sa.text(
            "SELECT max(coalesce((SELECT max(id) FROM subscribers), 0), "
            "coalesce((SELECT max(subscriber_id) FROM deliveries), 0), "
            "coalesce((SELECT max(subscriber_id) FROM events), 0))"
        )
    ).scalar_one()
    present = {column["name"] for column in sa.inspect(conn).get_columns("subscribers")}
    columns = ", ".join(column.name for column in subscribers.columns if column.name in present)
    conn.execute(sa.schema.CreateTable(subscribers.to_metadata(sa.MetaData(), name="subscribers_v4")))
    conn.execute(sa.text(f"INSERT INTO subscribers_v4 ({columns}) SELECT {columns} FROM subscribers"))
    conn.execute(sa.text("DROP TABLE subscribers"))  # its indexes go with it; foreign keys are off: no cascade
    conn.execute(sa.text("ALTER TABLE subscribers_v4 RENAME TO subscribers"))
    for index in subscribers.indexes:
        index.create(conn)
    conn.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = 'subscribers'"))
    conn.execute(sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('subscribers', :seq)"), {"seq": highest})


def _add_leases_and_senders(conn: Connection) -> None:
    """Leases and ambiguous counts on the send log, and the senders table."""
    present = {column["name"] for column in sa.inspect(conn).get_columns("deliveries")}
    stamp = sa.DateTime(timezone=True).compile(dialect=conn.dialect)
    added = (("lease_owner", "VARCHAR(32)"), ("lease_until", stamp), ("ambiguous", "INTEGER NOT NULL DEFAULT 0"))
    for name, kind in added:
        if name not in present:
            conn.execute(sa.text(f"ALTER TABLE deliveries ADD COLUMN {name} {kind}"))
    senders.create(conn, checkfirst=True)


def _add_welcomes(conn: Connection) -> None:
    """The welcome mails' table (subscribers who confirmed before it get none: they were welcomed by nobody,
    and a mail now would come out of the blue)."""
    welcomes.create(conn, checkfirst=True)


def _add_engagement_and_consent(conn: Connection) -> None:
    """Engagement events (issue, edition, message, link, paper; an index for per-issue counts) and tracking
    consent (columns on subscribers, the history table). A step that an older upgrade made whole is skipped."""
    stamp = sa.DateTime(timezone=True).compile(dialect=conn.dialect)
    added = {
        "events": (
            ("issue", "VARCHAR(200)"),
            ("edition", "VARCHAR(35)"),
            ("message_id", "VARCHAR(200)"),
            ("link", "VARCHAR(2000)"),
            ("paper", "VARCHAR(200)"),
        ),
        "subscribers": (
            ("tracking_consent_at", stamp),
            ("tracking_consent_how", "VARCHAR(40)"),
            ("tracking_consent_withdrawn_at", stamp),
        ),
    }
    for table, columns in added.items():
        present = {column["name"] for column in sa.inspect(conn).get_columns(table)}
        for name, kind in columns:
            if name not in present:
                conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {name} {kind}"))
    conn.execute(sa.text("CREATE INDEX IF NOT EXISTS ix_events_issue_kind ON events (issue, kind)"))
    tracking_consents.create(conn, checkfirst=True)


def _cover_the_report(conn: Connection) -> None:
    """The (issue, kind) index of events becomes one that also holds edition, paper and subscriber_id (its
    prefix answers what the old one did)."""
    columns = "issue, kind, edition, paper, subscriber_id"
    conn.execute(sa.text(f"CREATE INDEX IF NOT EXISTS {EVENTS_INDEX} ON events ({columns})"))
    conn.execute(sa.text("DROP INDEX IF EXISTS ix_events_issue_kind"))


# version → the step that upgrades the version before it. A new database gets `metadata` whole.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    2: _add_events_table,  # 2: bounces and complaints from SES
    3: _add_confirmation_due_at,  # 3: confirmation mails sent after the answer, from the pending row
    4: _never_reuse_subscriber_ids,  # 4: SQLite gives no subscriber id twice (links name ids for ever)
    5: _add_leases_and_senders,  # 5: several senders share one send log (leases, heartbeats, ambiguous counts)
    6: _add_welcomes,  # 6: one welcome mail per confirmed sign-up, claimed once
    7: _add_engagement_and_consent,  # 7: every SES event type per issue and edition; tracking consent
    8: _cover_the_report,  # 8: the report's open and click counts from an index alone
}


def _migrate(engine: Engine) -> None:
    """Create the schema in an empty database; run the upgrades a newer version added.

    On SQLite the upgrades run with foreign keys off (SQLite's own procedure for changing a table: dropping a
    rebuilt table must not cascade into the send log), and end with a foreign key check.
    """
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        if sqlite:  # only outside a transaction does this pragma take effect
            conn.execute(sa.text("PRAGMA foreign_keys = OFF"))
            conn.commit()
        try:
            with conn.begin():
                _upgrade(conn)
        finally:
            if sqlite:
                conn.execute(sa.text("PRAGMA foreign_keys = ON"))
                conn.commit()


def _upgrade(conn: Connection) -> None:
    """The schema steps of _migrate, in its transaction."""
    if not sa.inspect(conn).has_table("newsletter_schema"):
        metadata.create_all(conn)
        conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
        return
    version = conn.execute(sa.select(schema_version.c.version)).scalar_one()
    if version > SCHEMA_VERSION:
        raise StoreError(
            "store", f"schema version {version} is newer than this program's {SCHEMA_VERSION}", "upgrade newsletter"
        )
    if version < SCHEMA_VERSION:
        # A write first: pysqlite opens its transaction only before a write, not before DDL, and the steps
        # must be undone together if one fails.
        conn.execute(schema_version.update().values(version=version))
    for target in range(version + 1, SCHEMA_VERSION + 1):
        MIGRATIONS[target](conn)
        conn.execute(schema_version.update().values(version=target))
    if conn.dialect.name == "sqlite" and version < SCHEMA_VERSION:
        broken = conn.execute(sa.text("PRAGMA foreign_key_check")).all()
        if broken:
            raise StoreError(
                "store", f"the upgrade would break {len(broken)} reference(s)", "report it; nothing changed"
            )
