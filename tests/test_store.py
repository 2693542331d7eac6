"""The subscriber store on SQLite and PostgreSQL: the same assertions on both."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter.errors import StoreError
from newsletter.store import (
    SCHEMA_VERSION,
    DeliveryState,
    Result,
    SenderBusy,
    SendLog,
    SubscriberStatus,
    add_subscriber,
    count_subscribers,
    delivery_counts,
    finish_sender,
    heartbeat,
    insert_subscribers,
    now,
    open_store,
    record_unsubscribe,
    register_sender,
    remove_subscriber,
    snapshot_audience,
    subscriber_by_email,
)
from newsletter.store.database import deliveries
from newsletter.store.send_log import MESSAGE_ID_LIMIT
from newsletter.store.senders import TAIL
from tests.conftest import fresh_postgresql


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
    rows = _log(store, "issue-1").claim(10)
    assert {(d.email, d.lang) for d in rows} == {
        ("a@example.com", "ko"),
        ("b@example.com", "en"),
        ("c@example.com", "ko"),
    }


def _log(store, issue: str, *, exclusive: bool = False) -> SendLog:
    """A send log for a newly registered sender of `issue`."""
    sender_id = register_sender(store, issue, exclusive=exclusive).sender_id
    return SendLog(store, issue, sender_id, "file", now())


def test_the_last_look_sees_who_left_after_the_snapshot(store) -> None:
    kept = add_subscriber(store, "kept@example.com")
    left = add_subscriber(store, "left@example.com")
    snapshot_audience(store, "issue-1", ("ko",), "ko")
    log = _log(store, "issue-1")
    claimed = log.claim(10)
    record_unsubscribe(store, left.id, "one-click")
    assert log.gone({d.subscriber_id for d in claimed}) == {left.id}
    assert log.gone({kept.id}) == set()
    assert delivery_counts(store, "issue-1")["sending"] == 2


def test_a_claim_takes_pending_rows_ahead_first_then_those_given_back_behind_and_each_once(store) -> None:
    """Pending rows are claimed from past the sender's last claim (a claim never steps over the rows sent so far),
    and rows another sender gave back behind that point are claimed when none are left ahead."""
    for n in range(40):
        add_subscriber(store, f"p{n}@example.com")
    snapshot_audience(store, "issue-1", ("ko",), "ko")
    first, second = _log(store, "issue-1"), _log(store, "issue-1")
    mine = [d.id for d in first.claim(10)]
    theirs = [d.id for d in second.claim(10)]
    mine += [d.id for d in first.claim(10)]
    assert len(set(mine) | set(theirs)) == 30
    second.release(theirs)  # the other sender stopped: its claims are pending again, behind first's last claim
    rest = [d.id for d in first.claim(100)]
    assert len(rest) == len(set(rest)) == 20, rest
    assert set(theirs) <= set(rest) and len(set(mine) | set(rest)) == 40
    assert first.claim(100) == []
    assert delivery_counts(store, "issue-1")["sending"] == 40


def test_the_last_looks_kept_connection_sees_every_change_committed_since_its_last_look(store) -> None:
    """The looks keep one connection (in autocommit): each look sees what others committed after the one before,
    a removed subscriber counts as gone, and an id given twice is one subscriber."""
    people = [add_subscriber(store, f"p{n}@example.com") for n in range(70)]
    log = _log(store, "issue-1")
    ids = [p.id for p in people]
    assert log.gone(ids[:64]) == set()
    assert log.gone([ids[0], ids[0]]) == set()
    record_unsubscribe(store, people[3].id, "one-click")
    assert log.gone(ids[:64]) == {people[3].id}
    remove_subscriber(store, people[65].email)
    assert log.gone(ids[60:]) == {people[65].id}
    assert log.gone([10**9]) == {10**9}
    assert log.gone([]) == set()
    log.close()
    assert log.gone([people[4].id]) == set()  # a look after close opens a new connection
    log.close()


@pytest.fixture
def postgresql_store():
    with open_store(fresh_postgresql()) as opened:
        yield opened


def test_a_last_look_whose_connection_was_cut_fails_as_the_database_and_the_next_reconnects(postgresql_store) -> None:
    """The send loop waits for a database that went away when a step raises SQLAlchemy's OperationalError; the
    look's own connection, cut by the server (PostgreSQL: SQLite has no server), must fail that way, and the next
    look must work."""
    store = postgresql_store
    person = add_subscriber(store, "kept@example.com")
    log = _log(store, "issue-1")
    assert log.gone([person.id]) == set()
    with store.engine.begin() as conn:  # every other connection of this schema's user: the look's among them
        cut = conn.execute(
            sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE usename = current_user AND pid <> pg_backend_pid() AND datname = current_database()"
            )
        ).scalar_one()
    assert cut >= 1
    with pytest.raises((sa.exc.OperationalError, sa.exc.InterfaceError)):
        log.gone([person.id])
    assert log.gone([person.id]) == set()
    record_unsubscribe(store, person.id, "one-click")
    assert log.gone([person.id]) == {person.id}
    log.close()


def test_senders_claim_disjoint_batches_and_only_the_holder_records(store) -> None:
    for n in range(10):
        add_subscriber(store, f"r{n}@example.com")
    snapshot_audience(store, "issue-1", ("ko",), "ko")
    first, second = _log(store, "issue-1"), _log(store, "issue-1")
    mine, theirs = first.claim(6), second.claim(6)
    assert len(mine) == 6 and len(theirs) == 4 and not {d.id for d in mine} & {d.id for d in theirs}
    second.record([Result(mine[0].id, DeliveryState.SENT)])  # not second's to record
    first.record([Result(d.id, DeliveryState.SENT, message_id=f"m{d.id}") for d in mine[:3]])
    first.release([d.id for d in mine[3:]])
    counts = delivery_counts(store, "issue-1")
    assert (counts["sent"], counts["pending"], counts["sending"]) == (3, 3, 4)
    assert {d.id for d in first.claim(10)} == {d.id for d in mine[3:]}  # released rows are claimable again


def test_a_group_of_results_is_recorded_row_by_row_as_given(store) -> None:
    """Each result's state, message id (cut to the column), error and ambiguous count land on its own row, on
    both stores (PostgreSQL takes the group as arrays, SQLite as a VALUES list)."""
    for n in range(5):
        add_subscriber(store, f"r{n}@example.com")
    snapshot_audience(store, "issue-1", ("ko",), "ko")
    log = _log(store, "issue-1")
    claimed = log.claim(5)
    assert not log.gone([d.subscriber_id for d in claimed])
    long_id = "x" * (MESSAGE_ID_LIMIT + 40)
    wanted = [
        Result(claimed[0].id, DeliveryState.SENT, message_id="0100-a"),
        Result(claimed[1].id, DeliveryState.SENT, message_id=long_id, ambiguous=1),
        Result(claimed[2].id, DeliveryState.FAILED, error="550 5.1.1 user unknown; 한국어 오류"),
        Result(claimed[3].id, DeliveryState.DEFERRED, error="throttled", ambiguous=2),
    ]
    log.record(wanted)
    d = deliveries.c
    with store.engine.connect() as conn:
        rows = {
            r.id: r for r in conn.execute(sa.select(d.id, d.state, d.message_id, d.error, d.ambiguous, d.lease_until))
        }
    for result in wanted:
        row = rows[result.delivery_id]
        expected_id = None if result.message_id is None else result.message_id[:MESSAGE_ID_LIMIT]
        assert (row.state, row.message_id, row.error, row.ambiguous, row.lease_until) == (
            result.state.value,
            expected_id,
            result.error,
            result.ambiguous,
            None,
        )
    assert rows[claimed[4].id].state == DeliveryState.SENDING.value  # not in the group: still held


def test_a_dead_senders_claims_fall_back_at_once(store) -> None:
    from newsletter.store import senders as senders_module

    for n in range(3):
        add_subscriber(store, f"r{n}@example.com")
    snapshot_audience(store, "issue-1", ("ko",), "ko")
    dead = _log(store, "issue-1")
    assert len(dead.claim(10)) == 3
    assert not _log(store, "issue-1").claim(10)  # leased to a live sender
    with store.begin() as conn:  # the sender's process is gone (a SIGKILL): no such pid on this host
        conn.execute(sa.text("UPDATE senders SET pid = 2147483647 WHERE id = :id"), {"id": dead.sender_id})
    assert senders_module.HOST  # the check is by host and pid
    assert len(_log(store, "issue-1").claim(10)) == 3


def test_a_lease_without_heartbeats_expires(store) -> None:
    add_subscriber(store, "a@example.com")
    snapshot_audience(store, "issue-1", ("ko",), "ko")
    other_host = _log(store, "issue-1")
    assert len(other_host.claim(10)) == 1
    late = sa.text(
        "UPDATE senders SET host = 'elsewhere', heartbeat_at = :old; UPDATE deliveries SET lease_until = :old"
    )
    old = now() - dt.timedelta(minutes=5)
    with store.begin() as conn:
        for statement in str(late).split("; "):
            conn.execute(sa.text(statement), {"old": old})
    live = _log(store, "issue-1")
    heartbeat(store, live.sender_id, "issue-1")
    assert len(live.claim(10)) == 1


def test_sqlite_allows_one_sender_per_issue(store) -> None:
    first = register_sender(store, "issue-1", exclusive=True).sender_id
    with pytest.raises(SenderBusy) as refused:
        register_sender(store, "issue-1", exclusive=True)
    assert refused.value.other.pid == os.getpid()
    register_sender(store, "issue-2", exclusive=True)  # another issue is another send
    finish_sender(store, first, "issue-1")
    register_sender(store, "issue-1", exclusive=True)  # the first one finished


def test_sharing_counts_live_senders_and_recently_finished_ones(store) -> None:
    first = register_sender(store, "issue-1", exclusive=False)
    assert (first.sharing, first.tail) == (1, 0.0)
    second = register_sender(store, "issue-1", exclusive=False)
    assert second.sharing == 2 and heartbeat(store, first.sender_id, "issue-1") == 2
    finish_sender(store, second.sender_id, "issue-1")
    assert heartbeat(store, first.sender_id, "issue-1") == 2  # its last starts still count for one window
    third = register_sender(store, "issue-2", exclusive=False)
    assert third.sharing == 2 and 0 < third.tail <= TAIL.total_seconds()  # its last window has yet to pass


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
            assert conn.execute(sa.text("SELECT version FROM newsletter_schema")).scalar_one() == SCHEMA_VERSION
            assert sa.inspect(conn).has_table("events")


# ---------------------------------------------------------------- private files, locks, refused values


@pytest.fixture
def umask_022():
    """The usual default umask, under which plain creation makes files 0644 and folders 0755."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_sqlite_store_and_its_wal_files_are_private(tmp_path: Path, umask_022) -> None:
    path = tmp_path / "publication" / "subscribers" / "subscribers.db"
    with open_store(f"sqlite:///{path}") as store:
        add_subscriber(store, "kim@example.com")  # a write: the -wal and -shm files exist while it is open
        files = [path, path.with_name("subscribers.db-wal"), path.with_name("subscribers.db-shm")]
        assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}
    assert _mode(path.parent) == 0o700 and _mode(path.parent.parent) == 0o700


def test_an_existing_store_that_others_could_read_is_tightened(tmp_path: Path, umask_022) -> None:
    path = tmp_path / "subscribers.db"
    with open_store(f"sqlite:///{path}") as store:
        add_subscriber(store, "kim@example.com")
    os.chmod(path, 0o664)
    with open_store(f"sqlite:///{path}") as store:
        add_subscriber(store, "lee@example.com")
        assert _mode(path) == 0o660  # others lose access; a group the owner chose keeps it
        assert _mode(path.with_name("subscribers.db-wal")) == 0o660


def test_a_write_lock_held_too_long_is_one_store_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import newsletter.store.database as database

    monkeypatch.setattr(database, "BUSY_TIMEOUT_MS", 100)
    path = tmp_path / "subscribers.db"
    with open_store(f"sqlite:///{path}") as store:
        other = sqlite3.connect(path, isolation_level=None)  # another process's connection, as SQLite sees it
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreError) as raised:
                add_subscriber(store, "kim@example.com")
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert str(raised.value) == (
            f"{path}: the database is locked by another process (wait for it to finish, or stop it)"
        )
        assert add_subscriber(store, "kim@example.com").email == "kim@example.com"  # free again: it works


def test_a_value_the_database_refuses_is_one_store_error(store) -> None:
    # Only PostgreSQL enforces the String(200); SQLite keeps it, so both must at least not leak a driver error.
    try:
        add_subscriber(store, "long@example.com", name="x" * 201)
    except StoreError as err:
        assert store.engine.dialect.name == "postgresql"
        assert str(err).endswith(
            "refused a value: value too long for type character varying(200) (shorten or correct it)"
        )
    else:
        assert store.engine.dialect.name == "sqlite"


def test_a_message_id_longer_than_its_column_is_cut_to_fit(store) -> None:
    from newsletter.store import metadata

    deliveries = metadata.tables["deliveries"]

    add_subscriber(store, "a@example.com")
    snapshot_audience(store, "issue", ["en"], "en")
    log = _log(store, "issue")
    (delivery,) = log.claim(10)
    long_id = "/a-deep-folder" * 30 + "/outbox/issue/a_at_example.com-0123456789.eml"  # a file transport's id
    log.record([Result(delivery.id, DeliveryState.SENT, message_id=long_id)])
    with store.engine.connect() as conn:
        stored = conn.execute(sa.select(deliveries.c.message_id, deliveries.c.state)).one()
    assert stored.message_id == long_id[:300] and stored.state == DeliveryState.SENT
