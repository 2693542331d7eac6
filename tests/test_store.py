"""The subscriber store on SQLite and PostgreSQL: the same assertions on both."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from newsletter.errors import StoreError
from newsletter.store import (
    SCHEMA_VERSION,
    DeliveryState,
    SubscriberStatus,
    add_subscriber,
    claim_delivery,
    count_subscribers,
    delivery_counts,
    insert_subscribers,
    next_deliveries,
    open_store,
    record_unsubscribe,
    remove_subscriber,
    snapshot_audience,
    subscriber_by_email,
)


def test_addresses_are_unique_whatever_their_case(store) -> None:
    added = add_subscriber(store, "Kim@Example.com", name="김", lang="ko")
    assert (added.email, added.status, added.lang) == ("Kim@Example.com", SubscriberStatus.ACTIVE, "ko")
    with pytest.raises(StoreError, match="is already on the list"):
        add_subscriber(store, "kim@example.COM")
    assert subscriber_by_email(store, "KIM@EXAMPLE.COM").id == added.id


def test_removed_address_is_kept_off_the_list(store) -> None:
    add_subscriber(store, "gone@example.com")
    assert remove_subscriber(store, "GONE@example.com")
    assert subscriber_by_email(store, "gone@example.com") is None
    with pytest.raises(StoreError, match="was removed from the list earlier"):
        add_subscriber(store, "gone@example.com")
    counts = insert_subscribers(store, [{"email": "gone@example.com"}, {"email": "new@example.com"}], "import:x.csv")
    assert (counts.added, counts.suppressed) == (1, 1)


def test_import_never_reactivates(store) -> None:
    left = add_subscriber(store, "left@example.com")
    record_unsubscribe(store, left.id, "page")
    counts = insert_subscribers(store, [{"email": "LEFT@example.com", "name": "Back"}], "import:x.csv")
    assert (counts.added, counts.already) == (0, 1)
    assert subscriber_by_email(store, "left@example.com").status == SubscriberStatus.UNSUBSCRIBED


def test_snapshot_gives_each_active_subscriber_one_delivery_in_their_language(store) -> None:
    for email, lang in [
        ("a@example.com", "ko"),
        ("b@example.com", "en"),
        ("c@example.com", "ja"),
        ("d@example.com", None),
    ]:
        add_subscriber(store, email, lang=lang)
    record_unsubscribe(store, subscriber_by_email(store, "d@example.com").id, "page")
    assert snapshot_audience(store, "issue-1", ("ko", "en"), "ko") == 3
    assert snapshot_audience(store, "issue-1", ("ko", "en"), "ko") == 0  # never twice
    rows = next_deliveries(store, "issue-1", 0, 10, (DeliveryState.PENDING,))
    assert {(d.email, d.lang) for d in rows} == {
        ("a@example.com", "ko"),
        ("b@example.com", "en"),
        ("c@example.com", "ko"),
    }


def test_claim_skips_a_subscriber_who_left_after_the_snapshot(store) -> None:
    kept = add_subscriber(store, "kept@example.com")
    left = add_subscriber(store, "left@example.com")
    snapshot_audience(store, "issue-1", ("ko",), "ko")
    record_unsubscribe(store, left.id, "one-click")
    deliveries = {d.subscriber_id: d for d in next_deliveries(store, "issue-1", 0, 10, (DeliveryState.PENDING,))}
    assert claim_delivery(store, deliveries[kept.id].id, "file")
    assert not claim_delivery(store, deliveries[left.id].id, "file")
    counts = delivery_counts(store, "issue-1")
    assert (counts["sending"], counts["skipped"]) == (1, 1)


def test_counts_list_every_status(store) -> None:
    add_subscriber(store, "a@example.com")
    assert count_subscribers(store) == {"pending": 0, "active": 1, "unsubscribed": 0, "bounced": 0, "complained": 0}


def test_schema_is_versioned_and_reopening_keeps_data(database_url: str) -> None:
    with open_store(database_url) as first:
        add_subscriber(first, "a@example.com")
    with open_store(database_url) as second:
        assert subscriber_by_email(second, "a@example.com") is not None
        with second.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version FROM newsletter_schema")).scalar_one() == SCHEMA_VERSION


def test_bad_database_url_is_one_line(run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", "nonsense")
    result = run("subscribers", "count")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("Error: ") and "is not a database URL" in result.stderr


def test_unconfirmed_sign_ups_are_purged(store) -> None:
    import datetime as dt

    from newsletter.store import purge_unconfirmed, request_subscription

    pending, new = request_subscription(store, "maybe@example.com", "ko", consent="web form")
    assert new and pending.status == SubscriberStatus.PENDING
    assert purge_unconfirmed(store, dt.timedelta(days=7)) == 0
    assert purge_unconfirmed(store, dt.timedelta(seconds=-1)) == 1
    assert subscriber_by_email(store, "maybe@example.com") is None


def test_an_old_schema_upgrades_itself(database_url: str) -> None:
    with open_store(database_url) as store:  # make it look like version 1: no events table
        with store.engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE events"))
            conn.execute(sa.text("UPDATE newsletter_schema SET version = 1"))
    with open_store(database_url) as store:
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version FROM newsletter_schema")).scalar_one() == 2
            assert sa.inspect(conn).has_table("events")
