"""Store schema 7 on SQLite and PostgreSQL: engagement events per issue, counted once; tracking consent with its
history; older stores upgrade in one transaction, keeping their rows."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from newsletter.errors import StoreError
from newsletter.store import (
    SCHEMA_VERSION,
    DeliveryState,
    Event,
    Result,
    SendLog,
    add_subscriber,
    now,
    open_store,
    record_events,
    request_subscription,
    send_feedback,
    set_tracking_consent,
    snapshot_audience,
    subscriber_by_email,
    tracking_consent_history,
)
from newsletter.store.database import EVENTS_INDEX

NEW_EVENT_COLUMNS = ("issue", "edition", "message_id", "link", "paper")
NEW_SUBSCRIBER_COLUMNS = ("tracking_consent_at", "tracking_consent_how", "tracking_consent_withdrawn_at")


def _columns(conn: sa.Connection, table: str) -> set[str]:
    return {column["name"] for column in sa.inspect(conn).get_columns(table)}


def _as_version(database_url: str, version: int) -> None:
    """Make a store look like `version` (≥ 3): schema 7's columns, index and table dropped, an old event kept."""
    with open_store(database_url) as store:
        with store.engine.begin() as conn:
            conn.execute(sa.text(f"DROP INDEX {EVENTS_INDEX}"))  # schema 8's, on columns dropped below
            conn.execute(sa.text("DROP TABLE tracking_consents"))
            for name in NEW_EVENT_COLUMNS:
                conn.execute(sa.text(f"ALTER TABLE events DROP COLUMN {name}"))
            for name in NEW_SUBSCRIBER_COLUMNS:
                conn.execute(sa.text(f"ALTER TABLE subscribers DROP COLUMN {name}"))
            conn.execute(sa.text(f"UPDATE newsletter_schema SET version = {version}"))
            conn.execute(
                sa.text(
                    "INSERT INTO subscribers (email, email_key, name, status, source, created_at, bounce_count, "
                    "attributes) VALUES ('old@example.com', 'old@example.com', '', 'active', 'cli', :t, 0, '{}')"
                ),
                {"t": now()},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO events (feedback_id, email_hash, kind, subtype, recorded_at) "
                    "VALUES ('fb-old', 'h', 'bounce-permanent', 'General', :t)"
                ),
                {"t": now()},
            )


@pytest.mark.parametrize("version", [3, 6])
def test_an_older_store_gains_schema_7_and_keeps_its_rows(database_url: str, version: int) -> None:
    _as_version(database_url, version)
    with open_store(database_url) as store:
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version FROM newsletter_schema")).scalar_one() == SCHEMA_VERSION == 8
            assert set(NEW_EVENT_COLUMNS) <= _columns(conn, "events")
            assert set(NEW_SUBSCRIBER_COLUMNS) <= _columns(conn, "subscribers")
            assert {index["name"] for index in sa.inspect(conn).get_indexes("events")} == {EVENTS_INDEX}
            assert sa.inspect(conn).has_table("tracking_consents")
            assert conn.execute(sa.text("SELECT kind, issue FROM events")).one() == ("bounce-permanent", None)
        old = subscriber_by_email(store, "old@example.com")
        assert old is not None and old.tracking_consent_at is None and not old.tracking
        assert set_tracking_consent(store, old.id, True, "preferences page")


def test_a_failing_upgrade_changes_nothing(database_url: str) -> None:
    _as_version(database_url, 6)
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:  # an index of the name the upgrade's last step makes, on another table
            conn.execute(sa.text("CREATE INDEX ix_tracking_consents_subscriber_id ON subscribers (name)"))
        with pytest.raises(StoreError, match="ix_tracking_consents_subscriber_id"):
            open_store(database_url)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version FROM newsletter_schema")).scalar_one() == 6
            assert not set(NEW_EVENT_COLUMNS) & _columns(conn, "events")
    finally:
        engine.dispose()


def _event(kind: str, key: str, email: str = "a@example.com", **more: str) -> Event:
    return Event(kind, "", email, key, dt.datetime(2026, 12, 3, tzinfo=dt.UTC), issue="2026-12-03-x", **more)


def test_events_are_recorded_once_per_key_and_recipient(store) -> None:
    add_subscriber(store, "a@example.com")
    batch = [
        _event("delivery", "m-1:Delivery:t"),
        _event("delivery", "m-1:Delivery:t"),  # the same event twice in one batch
        _event("open", "m-1:Open:t1", edition="en"),
        _event("click", "m-1:Click:t2:abc", link="https://example.org/p", paper="p1"),
        _event("delivery", "m-1:Delivery:t", email="b@example.com"),  # another recipient: another row
    ]
    assert record_events(store, batch, 3) == {"deliveries": 2, "opens": 1, "clicks": 1, "duplicate": 1}
    assert record_events(store, batch[:3], 3) == {"duplicate": 3}  # SNS or SQS delivering again
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT kind, paper, link, edition, subscriber_id FROM events ORDER BY kind")).all()
    known = subscriber_by_email(store, "a@example.com").id
    assert [tuple(row) for row in rows] == [
        ("click", "p1", "https://example.org/p", None, known),
        ("delivery", None, None, None, known),
        ("delivery", None, None, None, None),
        ("open", None, None, "en", known),
    ]


def test_bounces_in_one_batch_suppress_as_they_did_one_by_one(store) -> None:
    add_subscriber(store, "full@example.com")
    add_subscriber(store, "gone@example.com")
    batch = [_event("bounce-transient", f"fb-{n}", "full@example.com") for n in range(3)]
    batch += [_event("bounce-permanent", "fb-p", "gone@example.com"), _event("complaint", "fb-c", "gone@example.com")]
    assert record_events(store, batch, 3) == {"counted": 2, "bounced": 2, "already suppressed": 1}
    assert subscriber_by_email(store, "full@example.com").bounce_count == 3


def test_send_feedback_counts_this_issues_sent_messages_hard_bounces_and_complaints(store) -> None:
    for n in range(4):
        add_subscriber(store, f"s{n}@example.com")
    snapshot_audience(store, "2026-12-03-x", ["en"], "en")
    log = SendLog(store, "2026-12-03-x", "sender-1", "ses", now())
    claimed = log.claim(3)
    log.record([Result(d.id, DeliveryState.SENT, f"m-{d.id}") for d in claimed])
    record_events(
        store,
        [
            _event("bounce-permanent", "fb-1", "s0@example.com"),
            _event("bounce-transient", "fb-2", "s1@example.com"),  # soft: not in the bounce rate
            _event("complaint", "fb-3", "s2@example.com"),
            Event("bounce-permanent", "", "s3@example.com", "fb-4", None, issue="another-issue"),
        ],
        3,
    )
    feedback = send_feedback(store, "2026-12-03-x", "2026-12-03-x")
    assert (feedback.sent, feedback.bounced, feedback.complained) == (3, 1, 1)


def test_tracking_consent_is_given_withdrawn_and_kept_as_history(store) -> None:
    subscriber = add_subscriber(store, "a@example.com")
    assert not subscriber.tracking
    assert set_tracking_consent(store, subscriber.id, True, "preferences page")
    assert not set_tracking_consent(store, subscriber.id, True, "preferences page")  # already given: kept as it was
    given = subscriber_by_email(store, "a@example.com")
    assert given.tracking and given.tracking_consent_how == "preferences page"
    assert set_tracking_consent(store, subscriber.id, False, "preferences page")
    withdrawn = subscriber_by_email(store, "a@example.com")
    assert not withdrawn.tracking and withdrawn.tracking_consent_how is None
    assert withdrawn.tracking_consent_withdrawn_at is not None
    history = tracking_consent_history(store, subscriber.id)
    assert [(change.given, change.how) for change in history] == [
        (True, "preferences page"),
        (False, "preferences page"),
    ]
    # the send log's claim carries the choice to the message
    assert set_tracking_consent(store, subscriber.id, True, "preferences page")
    add_subscriber(store, "b@example.com")
    snapshot_audience(store, "2026-12-03-x", ["en"], "en")
    claimed = SendLog(store, "2026-12-03-x", "sender-1", "ses", now()).claim(10)
    assert {d.email: d.tracking for d in claimed} == {"a@example.com": True, "b@example.com": False}


def test_the_subscribe_form_records_consent_for_a_new_address_only(store) -> None:
    fresh, new = request_subscription(store, "new@example.com", "en", "web form", tracking="subscribe form")
    assert new and fresh.tracking and fresh.tracking_consent_how == "subscribe form"
    assert [(c.given, c.how) for c in tracking_consent_history(store, fresh.id)] == [(True, "subscribe form")]
    plain, _ = request_subscription(store, "plain@example.com", "en", "web form")
    assert not plain.tracking and tracking_consent_history(store, plain.id) == []
    # someone posting the form for a known address changes nothing of its choice
    request_subscription(store, "plain@example.com", "en", "web form", tracking="subscribe form")
    assert not subscriber_by_email(store, "plain@example.com").tracking
    assert tracking_consent_history(store, plain.id) == []
