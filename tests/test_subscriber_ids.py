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
