"""The last look before messages leave: which of a few subscribers are no longer active (or no longer exist).

A send looks every LOOK_FRESH (0.1 s) at the subscribers whose messages are about to leave, so at a low rate there
is a look for almost every message. Through SQLAlchemy's Core each look costs 0.15–1.1 ms of CPU here (a pool
checkout, the statement's cache key, a result object, the reset on return); on the driver's own cursor of a
connection kept for the looks, in autocommit, 0.02–0.23 ms (bench/ses_quota.py's cell at 14/s; the driver's
numbers in the README). The SQL is written for the driver's placeholder style: on PostgreSQL one statement with
the ids as an array, elsewhere one fixed statement per number of subscribers. The driver's errors become
SQLAlchemy's, so the send loop waits for a database that went away as it does for every other step, and the next
look opens a new connection.
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
        self._arrays = self.engine.dialect.name == "postgresql"
        self._connection: sa.Connection | None = None

    def gone(self, subscriber_ids: Collection[int]) -> set[int]:
        """Which of these subscribers are no longer active: the statuses of the few asked for, by primary key.
        Not `status = 'active' AND id IN (…)`: a planner without statistics yet (a list imported just before its
        first send) reads the whole status index for that, which held two senders at 30–50 % of the quota for
        the 10–45 s until autovacuum analysed the table (bench/two_senders.py)."""
        wanted = sorted(set(subscriber_ids))
        if not wanted:
            return set()
        statement, parameters = self._statement(wanted)
        driver = self._driver_connection()
        try:
            cursor = driver.cursor()
            try:
                cursor.execute(statement, parameters)
                active = {row[0] for row in cursor.fetchall() if row[1] == SubscriberStatus.ACTIVE.value}
            finally:
                cursor.close()
        except self.engine.dialect.loaded_dbapi.Error as err:
            self.close(broken=True)
            raise sa.exc.DBAPIError.instance(statement, wanted, err, self.engine.dialect.loaded_dbapi.Error) from None
        return set(wanted) - active

    def _statement(self, wanted: list[int]) -> tuple[str, list[Any]]:
        """The look and its parameters: on PostgreSQL the ids as one array (one statement for any count, parsed
        once by the driver and prepared by the server), elsewhere one parameter each."""
        if self._arrays:
            return _BY_ARRAY, [wanted]
        return _statement(self.marker, len(wanted)), list(wanted)

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


_BY_ARRAY = "SELECT id, status FROM subscribers WHERE id = ANY(CAST(%s AS integer[]))"


@functools.lru_cache(maxsize=256)
def _statement(marker: str, count: int) -> str:
    """The id and status of `count` subscribers, by id."""
    return f"SELECT id, status FROM subscribers WHERE id IN ({', '.join([marker] * count)})"
