"""Confirmation mails leave after the answer: the pending row is the queue, each mail goes out once, and the
sign-up takes as long for a new address as for a known one (real waitress, real aiosmtpd, SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import statistics
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from newsletter.config import load_settings
from newsletter.confirmations import ConfirmationWorker
from newsletter.render.templates import load_templates
from newsletter.store import (
    SCHEMA_VERSION,
    SubscriberStatus,
    add_subscriber,
    open_store,
    request_subscription,
    subscriber_by_email,
    subscribers,
)
from newsletter.web import CONFIRMATIONS, create_app

from .conftest import RecordingHandler, WebServer, free_port, running_smtp, smtp_settings, wait_until

SECRET = b"a-secret-for-the-confirmation-tests"
SMTP_DELAY = 0.2  # seconds the slow server takes per message


class SlowHandler(RecordingHandler):
    """An SMTP server that takes SMTP_DELAY to accept each message, like a busy relay."""

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        import asyncio

        await asyncio.sleep(SMTP_DELAY)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def slow_smtp():
    handler = SlowHandler()
    with running_smtp(handler) as port:
        yield handler, port


def _due(store) -> int:
    with store.engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).where(subscribers.c.confirmation_due_at.is_not(None))
        ).scalar_one()


def test_a_version_2_store_gains_the_confirmation_queue(database_url: str) -> None:
    with open_store(database_url) as store, store.begin() as conn:
        conn.execute(sa.text("DROP INDEX ix_subscribers_confirmation_due_at"))
        conn.execute(sa.text("ALTER TABLE subscribers DROP COLUMN confirmation_due_at"))
        conn.execute(sa.text("UPDATE newsletter_schema SET version = 2"))
    with open_store(database_url) as store:
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version FROM newsletter_schema")).scalar_one() == SCHEMA_VERSION
        pending, _ = request_subscription(store, "new@example.com", "en", consent="web form", confirm=True)
        assert pending is not None and _due(store) == 1


def test_several_workers_send_each_confirmation_once(database_url: str, publication: Path, slow_smtp) -> None:
    """Three workers, each with its own connections (as three `serve` processes have), drain one queue."""
    handler, port = slow_smtp
    settings = smtp_settings(publication, port, database_url)
    templates = load_templates(settings)
    addresses = [f"once{n}@example.com" for n in range(24)]
    with open_store(database_url) as store:
        for address in addresses:
            request_subscription(store, address, "en", consent="web form", confirm=True)
    stores = [open_store(database_url) for _ in range(3)]
    workers = [ConfirmationWorker(settings, one, templates, SECRET, poll_seconds=0.2) for one in stores]
    try:
        for worker in workers:
            worker.start()
        wait_until(lambda: len(handler.envelopes) >= len(addresses), 60, "every confirmation mail")
        wait_until(lambda: _due(stores[0]) == 0, 10, "the queue to be empty")
    finally:
        for worker in workers:
            worker.stop()
        for one in stores:
            one.close()
    sent = Counter(address for envelope in handler.envelopes for address in envelope.rcpt_tos)
    assert sent == Counter(addresses)  # each once, none twice


def test_a_claim_left_by_a_crash_is_sent_after_its_lease(database_url: str, publication: Path, smtp_server) -> None:
    from newsletter.store import claim_confirmations

    handler, port = smtp_server
    settings = smtp_settings(publication, port, database_url)
    with open_store(database_url) as store:
        request_subscription(store, "crash@example.com", "en", consent="web form", confirm=True)
        [(_, lease_until)] = claim_confirmations(store, lease=dt.timedelta(hours=1))  # claimed, then "killed"
        worker = ConfirmationWorker(settings, store, load_templates(settings), SECRET)
        assert worker.send_due() == 0 and handler.envelopes == []  # another worker holds the lease
        with store.begin() as conn:  # an hour later: the lease has run out
            conn.execute(
                subscribers.update()
                .where(subscribers.c.confirmation_due_at == lease_until)
                .values(confirmation_due_at=lease_until - dt.timedelta(hours=2))
            )
        assert worker.send_due() == 1
        assert [e.rcpt_tos for e in handler.envelopes] == [["crash@example.com"]] and _due(store) == 0


SIGN_UP_ROUNDS = 400  # pairs of sign-ups: one new address, one known
BEST_GUESS = 0.60  # the most either classifier below may get right; 0.5 is a coin


def _median_split_accuracy(timings: list[tuple[str, float]]) -> float:
    """How often "slower than the pooled median means new" is right: 0.5 when time says nothing."""
    cut = statistics.median(t for _, t in timings)
    right = sum((kind == "new") == (took > cut) for kind, took in timings)
    return right / len(timings)


def _paired_accuracy(timings: list[tuple[str, float]]) -> float:
    """How often "the slower of two adjacent sign-ups is the new one" is right: 0.5 when time says nothing."""
    pairs = [(timings[i], timings[i + 1]) for i in range(0, len(timings), 2)]
    return sum((first[1] > second[1]) == (first[0] == "new") for first, second in pairs) / len(pairs)


def test_sign_up_time_does_not_tell_new_addresses_from_known_ones(publication: Path, smtp_server, run) -> None:
    """An attacker's two simple classifiers get no more than 60 % of new-or-known right (a coin gets 50 %).

    The report's attack: one timed POST /subscribe per address, over real waitress, with SMTP confirmations.
    Here 400 new and 400 known (active) addresses are signed up in adjacent pairs, the order within each
    pair drawn at random (fixed seed), so the worker's sending after an earlier new address falls on either
    kind alike. Why these statistics on a loaded 2-core machine: both use only the order of times, so a
    50 ms stall moves one vote, not a mean; the paired one compares requests ~10 ms apart, so the load of
    other processes, which drifts over seconds, hits both of a pair and cancels. With no difference they
    are binomial: spreads of 2.5 % (400 pairs) and 1.8 % (800 times), so 60 % is four spreads away or more.
    Measured here under load (medians 4-8 ms): before, pooled 54-65 %, paired 63-71 %; a store write that
    differed by 0.3-0.4 ms gave paired 57-74 %; now 47-54 %. Load only adds noise, which lowers both.
    """
    import random

    handler, port = smtp_server
    assert run("build").exit_code == 0
    settings = smtp_settings(publication, port, load_settings(publication).database_url)
    draw = random.Random(8)
    with open_store(settings.database_url) as store:
        known = [add_subscriber(store, f"known{n}@example.com").email for n in range(SIGN_UP_ROUNDS)]
        app = create_app(settings, store, secret=SECRET, sign_ups_per_client=10_000)
        worker = app.extensions[CONFIRMATIONS]
        worker.start()
        server = WebServer(app)
        try:
            timings: list[tuple[str, float]] = []
            session = requests.Session()
            for _ in range(20):  # warm up: connections, caches, the worker's first mails
                session.post(f"{server.url}/subscribe", data={"email": known[0], "lang": "en"}, timeout=10)
            for n in range(SIGN_UP_ROUNDS):
                pair = [("new", f"new{n}@example.com"), ("known", known[n])]
                draw.shuffle(pair)
                for kind, address in pair:
                    started = time.perf_counter()
                    answer = session.post(f"{server.url}/subscribe", data={"email": address, "lang": "en"}, timeout=10)
                    timings.append((kind, time.perf_counter() - started))
                    assert answer.status_code == 200 and "Check your inbox" in answer.text
            wait_until(lambda: len(handler.envelopes) == SIGN_UP_ROUNDS, 60, "the confirmation mails")
        finally:
            server.close()
            worker.stop()
        pooled, paired = _median_split_accuracy(timings), _paired_accuracy(timings)
        medians = {k: statistics.median(t for kind, t in timings if kind == k) * 1000 for k in ("new", "known")}
        print(f"median sign-up: new {medians['new']:.2f} ms, known {medians['known']:.2f} ms; ", end="")
        print(f"told apart: pooled {pooled:.1%}, paired {paired:.1%}")
        assert pooled <= BEST_GUESS and paired <= BEST_GUESS, (pooled, paired, medians)
        assert sorted(a for e in handler.envelopes for a in e.rcpt_tos) == sorted(
            f"new{n}@example.com" for n in range(SIGN_UP_ROUNDS)
        )
        for n in range(SIGN_UP_ROUNDS):
            assert subscriber_by_email(store, f"new{n}@example.com").status == SubscriberStatus.PENDING


def test_the_worker_thread_survives_a_transport_that_is_down(
    publication: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = smtp_settings(publication, free_port(), f"sqlite:///{tmp_path / 'down.db'}")  # nothing listens
    with open_store(settings.database_url) as store:
        request_subscription(store, "wait@example.com", "en", consent="web form", confirm=True)
        worker = ConfirmationWorker(
            settings, store, load_templates(settings), SECRET, poll_seconds=0.05, lease=dt.timedelta(0)
        )
        worker.start()
        try:
            wait_until(lambda: caplog.text.count("confirmation mails not sent") >= 3, 10, "three failed tries")
            assert worker.alive() and _due(store) == 1  # still due: nothing was lost
        finally:
            worker.stop()


def test_a_sign_up_marks_due_only_those_who_may_confirm(database_url: str) -> None:
    """The one INSERT … ON CONFLICT statement keeps each case's meaning, on SQLite and PostgreSQL."""
    from newsletter.store import record_unsubscribe, remove_subscriber

    with open_store(database_url) as store:
        active = add_subscriber(store, "active@example.com")
        gone = add_subscriber(store, "gone@example.com")
        record_unsubscribe(store, gone.id, "page")
        bounced = add_subscriber(store, "bounced@example.com", status=SubscriberStatus.BOUNCED)
        add_subscriber(store, "removed@example.com")
        assert remove_subscriber(store, "removed@example.com")

        new, was_new = request_subscription(store, "New@Example.com", "ko", consent="web form", confirm=True)
        assert was_new and new is not None and new.status == SubscriberStatus.PENDING and new.lang == "ko"
        again, was_new = request_subscription(store, "new@example.com", "en", consent="web form", confirm=False)
        assert not was_new and again is not None and again.id == new.id
        back, _ = request_subscription(store, "gone@example.com", "en", consent="web form", confirm=True)
        assert back is not None and back.id == gone.id
        for address in ["active@example.com", "bounced@example.com", "removed@example.com"]:
            assert request_subscription(store, address, "en", consent="web form", confirm=True) == (None, False)
        assert subscriber_by_email(store, "removed@example.com") is None  # a removed address gets no row again
        with store.engine.connect() as conn:
            due = dict(conn.execute(sa.select(subscribers.c.email, subscribers.c.confirmation_due_at)).all())
        assert due["active@example.com"] is None and due["bounced@example.com"] is None
        assert due["New@Example.com"] is not None and due["gone@example.com"] is not None
        assert subscriber_by_email(store, "active@example.com").status == SubscriberStatus.ACTIVE
        assert subscriber_by_email(store, "bounced@example.com").id == bounced.id and active.id


def test_a_confirmation_whose_answer_was_lost_is_not_mailed_again(database_url: str, publication: Path) -> None:
    """The server took the mail and the connection dropped before its reply (ambiguous): no second copy."""
    from tests.transports.test_smtp import CountingHandler, serving

    handler = CountingHandler()
    with serving(handler) as (port, _controller):
        settings = smtp_settings(publication, port, database_url)
        with open_store(database_url) as store:
            request_subscription(store, "lost@example.com", "en", consent="web form", confirm=True)
            worker = ConfirmationWorker(settings, store, load_templates(settings), SECRET)
            assert worker.send_due() == 1
            assert _due(store) == 0  # finished: the lease running out will not send it again
            assert worker.send_due() == 0
    assert [address for envelope in handler.envelopes for address in envelope.rcpt_tos] == ["lost@example.com"]
