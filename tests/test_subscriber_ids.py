"""Subscriber ids, which signed links name for ever, on SQLite and PostgreSQL."""

from __future__ import annotations

from newsletter.store import add_subscriber, open_store


def test_an_id_is_never_given_out_twice(database_url: str) -> None:
    """Unsubscribe links name an id and never expire: a removed subscriber's link must not name a newcomer."""
    from newsletter.store import remove_subscriber

    with open_store(database_url) as store:
        add_subscriber(store, "first@example.com")
        removed = add_subscriber(store, "removed@example.com")
        assert remove_subscriber(store, "removed@example.com")
        newcomer = add_subscriber(store, "newcomer@example.com")
        assert newcomer.id > removed.id


# The schema a version-2 store has on disk, as the landed code made it (sqlite_master of a new store): ids
# without AUTOINCREMENT.
SCHEMA_2 = """
CREATE TABLE newsletter_schema (version INTEGER NOT NULL);
CREATE TABLE subscribers (
    id INTEGER NOT NULL, email VARCHAR(320) NOT NULL, email_key VARCHAR(320) NOT NULL,
    name VARCHAR(200) DEFAULT '' NOT NULL, lang VARCHAR(20), status VARCHAR(16) NOT NULL,
    source VARCHAR(200) DEFAULT '' NOT NULL, created_at DATETIME NOT NULL, confirmed_at DATETIME,
    unsubscribed_at DATETIME, unsubscribe_method VARCHAR(40), bounce_count INTEGER DEFAULT '0' NOT NULL,
    attributes JSON NOT NULL, PRIMARY KEY (id), UNIQUE (email_key));
CREATE INDEX ix_subscribers_status ON subscribers (status);
CREATE TABLE suppressions (email_hash VARCHAR(64) NOT NULL, reason VARCHAR(40) NOT NULL,
    created_at DATETIME NOT NULL, PRIMARY KEY (email_hash));
CREATE TABLE events (feedback_id VARCHAR(200) NOT NULL, email_hash VARCHAR(64) NOT NULL, kind VARCHAR(20) NOT NULL,
    subtype VARCHAR(60) DEFAULT '' NOT NULL, subscriber_id INTEGER, occurred_at DATETIME,
    recorded_at DATETIME NOT NULL, PRIMARY KEY (feedback_id, email_hash));
CREATE TABLE deliveries (id INTEGER NOT NULL, issue VARCHAR(200) NOT NULL, subscriber_id INTEGER NOT NULL,
    lang VARCHAR(20) NOT NULL, state VARCHAR(16) NOT NULL, attempts INTEGER DEFAULT '0' NOT NULL,
    transport VARCHAR(16), message_id VARCHAR(300), error TEXT, created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL, PRIMARY KEY (id),
    CONSTRAINT uq_deliveries_issue_subscriber UNIQUE (issue, subscriber_id),
    FOREIGN KEY(subscriber_id) REFERENCES subscribers (id) ON DELETE CASCADE);
CREATE INDEX ix_deliveries_issue_state_id ON deliveries (issue, state, id);
INSERT INTO newsletter_schema VALUES (2);
INSERT INTO subscribers (id, email, email_key, status, created_at, attributes) VALUES
    (1, 'a@example.com', 'a@example.com', 'active', '2026-01-01 00:00:00', '{}'),
    (2, 'b@example.com', 'b@example.com', 'unsubscribed', '2026-01-01 00:00:00', '{}');
INSERT INTO deliveries (issue, subscriber_id, lang, state, created_at, updated_at) VALUES
    ('2026-01-05-weekly', 1, 'ko', 'sent', '2026-01-05 00:00:00', '2026-01-05 00:00:00'),
    ('2026-01-05-weekly', 2, 'ko', 'sent', '2026-01-05 00:00:00', '2026-01-05 00:00:00');
-- subscriber 5 was removed (erased); a bounce recorded for them still names the id
INSERT INTO events (feedback_id, email_hash, kind, subscriber_id, recorded_at) VALUES
    ('feedback-1', 'hash', 'bounce-transient', 5, '2026-01-06 00:00:00');
"""


def test_an_old_sqlite_store_stops_reusing_ids_and_keeps_its_send_log(tmp_path) -> None:
    import sqlite3

    import sqlalchemy as sa

    from newsletter.store import SCHEMA_VERSION, delivery_counts, get_subscriber

    path = tmp_path / "subscribers.db"
    with sqlite3.connect(path) as old:
        old.executescript(SCHEMA_2)
    with open_store(f"sqlite:///{path}") as store:
        assert delivery_counts(store, "2026-01-05-weekly")["sent"] == 2  # nothing cascaded away
        assert get_subscriber(store, 2).status == "unsubscribed"
        newcomer = add_subscriber(store, "newcomer@example.com")
        assert newcomer.id == 6  # past every id a table still names, the removed subscriber 5 included
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version FROM newsletter_schema")).scalar_one() == SCHEMA_VERSION
            assert conn.execute(sa.text("PRAGMA foreign_key_check")).all() == []
            indexes = {row[1] for row in conn.execute(sa.text("PRAGMA index_list(subscribers)"))}
            assert {"ix_subscribers_status", "ix_subscribers_confirmation_due_at"} <= indexes
    with sqlite3.connect(path) as reopened:  # the foreign key of the send log still names the live table
        (sql,) = reopened.execute("SELECT sql FROM sqlite_master WHERE name = 'deliveries'").fetchone()
        assert "REFERENCES subscribers (id)" in sql
        (sql,) = reopened.execute("SELECT sql FROM sqlite_master WHERE name = 'subscribers'").fetchone()
        assert "AUTOINCREMENT" in sql
        reopened.execute("PRAGMA foreign_keys = ON")
        reopened.execute("DELETE FROM subscribers WHERE id = 2")  # the cascade still works on the new table
        assert reopened.execute("SELECT count(*) FROM deliveries").fetchone() == (1,)


def test_an_upgrade_that_fails_changes_nothing(tmp_path, monkeypatch) -> None:
    """All steps of an upgrade are one transaction: a failure in the last leaves the version-2 store as it was."""
    import sqlite3

    import pytest

    from newsletter.errors import StoreError
    from newsletter.store import database

    path = tmp_path / "subscribers.db"
    with sqlite3.connect(path) as old:
        old.executescript(SCHEMA_2)
    before = _dump(path)
    rebuild = database.MIGRATIONS[4]

    def rebuild_then_fail(conn) -> None:
        rebuild(conn)
        raise StoreError("store", "simulated failure after the rebuild")

    monkeypatch.setitem(database.MIGRATIONS, 4, rebuild_then_fail)
    with pytest.raises(StoreError, match="simulated"):
        open_store(f"sqlite:///{path}")
    assert _dump(path) == before


def _dump(path) -> list[str]:
    import sqlite3

    with sqlite3.connect(path) as conn:
        return list(conn.iterdump())
