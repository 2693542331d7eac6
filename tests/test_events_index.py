"""Store schema 8: the events' (issue, kind) index became a covering one (issue, kind, edition, paper,
subscriber_id), so the report's open and click counts read no event row; a schema 7 store upgrades to it."""

from __future__ import annotations

import sqlalchemy as sa

from newsletter.store import SCHEMA_VERSION, add_subscriber, now, open_store, set_tracking_consent
from newsletter.store.database import EVENTS_INDEX
from newsletter.store.reports import tracking_event_counts

ISSUE = "2023-09-25-top-ml-papers"


def _indexes(conn: sa.Connection) -> set[str]:
    return {index["name"] for index in sa.inspect(conn).get_indexes("events")}


def test_a_schema_7_store_gets_the_covering_index_and_keeps_its_events(database_url: str) -> None:
    with open_store(database_url) as store, store.engine.begin() as conn:  # made as schema 7 made it
        conn.execute(sa.text(f"DROP INDEX {EVENTS_INDEX}"))
        conn.execute(sa.text("CREATE INDEX ix_events_issue_kind ON events (issue, kind)"))
        conn.execute(sa.text("UPDATE newsletter_schema SET version = 7"))
        conn.execute(
            sa.text(
                "INSERT INTO events (feedback_id, email_hash, kind, subtype, recorded_at, issue, edition) "
                "VALUES ('fb-7', 'h', 'delivery', '', :t, :issue, 'ko')"
            ),
            {"t": now(), "issue": ISSUE},
        )
    with open_store(database_url) as store, store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version FROM newsletter_schema")).scalar_one() == SCHEMA_VERSION == 8
        assert _indexes(conn) == {EVENTS_INDEX}
        assert conn.execute(sa.text("SELECT feedback_id, kind, issue FROM events")).one() == ("fb-7", "delivery", ISSUE)


def test_the_reports_click_counts_read_the_index_alone_on_sqlite(tmp_path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'subscribers.db'}") as store:
        reader = add_subscriber(store, "reader@example.com")
        set_tracking_consent(store, reader.id, True, "preferences page")
        statements: list[tuple[str, object]] = []

        def keep(_conn, _cursor, statement, parameters, _context, _many) -> None:
            if "FROM events" in statement:
                statements.append((statement, parameters))

        sa.event.listen(store.engine, "before_cursor_execute", keep)
        try:
            assert tracking_event_counts(store, ISSUE, ISSUE, "click") == []
        finally:
            sa.event.remove(store.engine, "before_cursor_execute", keep)
        (statement, parameters), *_ = statements
        with store.engine.connect() as conn:
            plan = " | ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters))
    assert f"SEARCH events USING COVERING INDEX {EVENTS_INDEX} (issue=? AND kind=?" in plan, plan
