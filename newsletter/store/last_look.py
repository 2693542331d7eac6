"""The last look before messages leave: which of a few subscribers are no longer active (or no longer exist).

A send looks every LOOK_FRESH (0.1 s) at the subscribers whose messages are about to leave, so at a low rate there
is a look for almost every message. Through SQLAlchemy's Core each look costs 0.15–1.1 ms of CPU here (a pool
checkout, the statement's cache key, a result object, the reset on return); on the driver's own cursor of a
connection kept for the looks, in autocommit, 0.02–0.23 ms (bench/ses_quota.py's cell at 14/s; the driver's
numbers in the README). The SQL is two fixed statements per number of subscribers, written for the driver's
placeholder style; the driver's errors become SQLAlchemy's, so the send loop waits for a database that went away
as it does for every other step, and the next look opens a new connection.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from typing import Any

import sqlalchemy as sa

from .database import Store, SubscriberStatus


class LastLook:
    """Looks at subscribers on one kept connection; one thread's (the send loop's dispatcher)."""

    def __init__(self, store: Store) -> None:
        self.engine = store.engine
        # SQLite's driver takes ?, PostgreSQL's (psycopg, also psycopg2 and pg8000) take %s
        self.marker = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        self._connection: sa.Connection | None = None

    def gone(self, subscriber_ids: Collection[int]) -> set[int]:
        """Which of these subscribers are no longer active. Counts the active first: when nobody left (nearly
        always), one row comes back."""
        wanted = sorted(set(subscriber_ids))
        if not wanted:
            return set()
        count, active = _statements(self.marker, len(wanted))
        parameters = (SubscriberStatus.ACTIVE.value, *wanted)
        driver = self._driver_connection()
        try:
            cursor = driver.cursor()
            try:
                cursor.execute(count, parameters)
                if cursor.fetchone()[0] == len(wanted):
                    return set()
                cursor.execute(active, parameters)
                return set(wanted) - {row[0] for row in cursor.fetchall()}
            finally:
                cursor.close()
        except self.engine.dialect.loaded_dbapi.Error as err:
            self.close(broken=True)
            raise sa.exc.DBAPIError.instance(count, parameters, err, self.engine.dialect.loaded_dbapi.Error) from None

    def close(self, *, broken: bool = False) -> None:
        """Give the connection back (or drop it, when it failed)."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if broken:
            connection.invalidate()
        connection.close()

    def _driver_connection(self) -> Any:
        if self._connection is None:
            self._connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._connection.connection.driver_connection


@functools.lru_cache(maxsize=256)
def _statements(marker: str, count: int) -> tuple[str, str]:
    """(count the active among `count` ids, the ids of the active among them), the status first."""
    among = f"status = {marker} AND id IN ({', '.join([marker] * count)})"
    return f"SELECT count(*) FROM subscribers WHERE {among}", f"SELECT id FROM subscribers WHERE {among}"
