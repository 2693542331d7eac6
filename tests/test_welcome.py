"""The welcome mail: one per confirmed web sign-up, however often and however concurrently confirm is posted
(real waitress, real aiosmtpd, SQLite and PostgreSQL), an issue's kind of message, never for imports."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from newsletter.config import load_settings
from newsletter.confirmations import ConfirmationWorker
from newsletter.render.templates import load_templates
from newsletter.signup_mails import latest_edition, welcome_message
from newsletter.store import (
    SCHEMA_VERSION,
    SubscriberStatus,
    add_subscriber,
    claim_welcome,
    confirm_subscription,
    open_store,
    record_unsubscribe,
    request_subscription,
    resubscribe,
    subscriber_by_email,
    welcome_outcomes,
    welcomes,
)
from newsletter.tokens import confirm_token, unsubscribe_token, verify_unsubscribe_token
from newsletter.web import CONFIRMATIONS, create_app

from .conftest import REPO, WEB_SECRET, WebServer, smtp_settings, wait_until, write_issue

SECRET = b"a-secret-for-the-welcome-mail-tests"
SAMPLE = "2023-09-25-top-ml-papers"
SUBSCRIBERS = 100  # each confirm link double-clicked: 200 concurrent POSTs


def _parse(raw: bytes):
    return BytesParser(policy=policy.default).parsebytes(raw)


def double_clicks(database_url: str, publication: Path, smtp_port: int, count: int = SUBSCRIBERS) -> list[str]:
    """`count` pending sign-ups, each confirm link POSTed twice at once (every third by two different links, as
    two sign-ups a second apart make), 2 × `count` POSTs from as many threads to the app under waitress, with
    two workers (as two `serve` processes) sending; returns the addresses, once every welcome mail is out."""
    settings = smtp_settings(publication, smtp_port, database_url)
    addresses = [f"reader{n}@example.com" for n in range(count)]
    with open_store(database_url) as store, open_store(database_url) as other_store:
        pending = [
            request_subscription(store, address, ("ko", "en")[n % 2], consent="web form", confirm=False)[0]
            for n, address in enumerate(addresses)
        ]
        issued = int(time.time()) + 1  # no earlier than the rows (a token older than its row confirms nothing)
        app = create_app(settings, store, secret=SECRET, clock=lambda: issued + 1.0)
        workers = [
            app.extensions[CONFIRMATIONS],
            ConfirmationWorker(settings, other_store, load_templates(settings), SECRET),
        ]
        server = WebServer(app)
        links = []
        for n, subscriber in enumerate(pending):
            assert subscriber is not None
            first = confirm_token(SECRET, settings.list_id, subscriber.id, issued)
            second = confirm_token(SECRET, settings.list_id, subscriber.id, issued + 1) if n % 3 == 0 else first
            links += [f"{server.url}/confirm?token={first}", f"{server.url}/confirm?token={second}"]
        start = threading.Barrier(len(links))

        def click(url: str) -> int:
            start.wait(timeout=30)
            return requests.post(url, timeout=60).status_code

        for worker in workers:
            worker.start()
        try:
            with ThreadPoolExecutor(max_workers=len(links)) as pool:
                codes = list(pool.map(click, links))
            assert codes == [200] * len(links)
            wait_until(lambda: len([o for o in welcome_outcomes(store).values() if o]) == count, 60, "every welcome")
        finally:
            for worker in workers:
                worker.stop()
            server.close()
        for worker in workers:  # nothing is left to send, by either
            assert worker.send_due() == 0
        assert set(welcome_outcomes(store).values()) == {"sent"}
        assert {subscriber_by_email(store, a).status for a in addresses} == {SubscriberStatus.ACTIVE}
    return addresses


def test_100_concurrent_double_clicks_send_each_subscriber_one_welcome(
    database_url: str, publication: Path, smtp_server
) -> None:
    handler, port = smtp_server
    expected = double_clicks(database_url, publication, port)
    assert all(".welcome@" in _parse(e.content)["Message-ID"] for e in handler.envelopes)  # nothing else was sent
    sent = Counter(address for envelope in handler.envelopes for address in envelope.rcpt_tos)
    assert sent == Counter(expected)  # each once: 0 duplicates, 0 missing
    subjects = {_parse(e.content)["Subject"] for e in handler.envelopes}
    assert subjects == {"이번 주의 주요 ML 논문에 오신 것을 환영합니다", "Welcome to Top ML Papers of the Week"}


def test_the_welcome_mail_is_an_issue_kind_of_message_in_their_language(web, publication: Path) -> None:
    """Confirmed through the app: From, List-Id, List-Archive, Precedence and one-click List-Unsubscribe as an
    issue has them, links to the newest issue in their language and the archive; its one-click link works."""
    from newsletter.transports.file import file_name

    server, store, settings, clock = web
    kim = add_subscriber(store, "kim@example.com", lang="en", status=SubscriberStatus.PENDING, source="web")
    token = confirm_token(WEB_SECRET, settings.list_id, kim.id, clock[0])
    assert requests.get(f"{server.url}/confirm?token={token}", timeout=5).status_code == 200
    worker = server.app.extensions[CONFIRMATIONS]
    assert worker.send_due() == 0  # a GET confirms nothing, so nothing is due
    assert requests.post(f"{server.url}/confirm?token={token}", timeout=5).status_code == 200
    assert worker.send_due() == 1
    raw = (publication / "outbox" / "welcome" / file_name("kim@example.com")).read_bytes()
    message = _parse(raw)
    assert message["Subject"] == "Welcome to Top ML Papers of the Week"
    assert message["From"] == str(settings.from_address) and message["To"] == "kim@example.com"
    assert message["Reply-To"] == "editor@papers.example.com" and message["Precedence"] == "bulk"
    assert message["List-Id"] == f"Top ML Papers of the Week <{settings.list_id}>"
    assert message["List-Archive"] == "<https://papers.example.com/>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert b"\r\nList-Unsubscribe: <https://papers.example.com/unsubscribe?token=" in raw  # never RFC 2047-encoded
    assert message["Message-ID"].endswith("@papers.example.com>") and message["Date"]
    assert message.get_content_type() == "text/plain" and "Auto-Submitted" not in message
    link = str(message["List-Unsubscribe"]).strip("<>")
    assert verify_unsubscribe_token(WEB_SECRET, settings.list_id, link.rsplit("=", 1)[1]) == kim.id
    body = message.get_content()
    assert f"https://papers.example.com/en/issues/{SAMPLE}/" in body and "Top ML Papers" in body
    assert "https://papers.example.com/en/\n" in body and link in body  # the archive, and the same one-click URL
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    one_click = server.url + link.removeprefix(settings.app_url)
    assert requests.post(one_click, data="List-Unsubscribe=One-Click", headers=form, timeout=5).ok
    assert subscriber_by_email(store, "kim@example.com").status == SubscriberStatus.UNSUBSCRIBED
    assert welcome_outcomes(store) == {kim.id: "sent"}


def test_a_language_with_no_edition_out_is_linked_to_the_home_page_not_a_listing_the_build_never_made(
    publication: Path,
) -> None:
    """A language gets its listing with its first edition: until then an English subscriber is sent to the home
    page (the default language's listing, always built), not to /en/, which would be a 404."""
    (publication / "issues" / f"{SAMPLE}.en.md").unlink()
    settings = load_settings(publication)
    latest = latest_edition(settings, "en", _now())
    assert latest is not None and latest.lang == "ko"
    message, _ = welcome_message(
        settings, load_templates(settings), SECRET, subscriber_id=8, email="kim@example.com", name="", lang="en",
        latest=latest,
    )  # fmt: skip
    body = _parse(message.raw).get_content()
    assert "https://papers.example.com/\n" in body and "/en/" not in body


def test_welcome_mail_false_confirms_without_a_welcome(publication: Path, run) -> None:
    """An editor who wants no welcome mail sets welcome_mail = false: confirming still works, nothing is due."""
    config = publication / "pyproject.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            "[tool.newsletter]\n", "[tool.newsletter]\nwelcome_mail = false\n", 1
        ),
        encoding="utf-8",
    )
    assert run("build").exit_code == 0
    settings = load_settings(publication)
    assert settings.welcome_mail is False
    clock = [1_800_000_000.0]
    with open_store(settings.database_url) as store:
        app = create_app(settings, store, clock=lambda: clock[0], secret=WEB_SECRET)
        server = WebServer(app)
        try:
            kim = add_subscriber(store, "kim@example.com", lang="en", status=SubscriberStatus.PENDING, source="web")
            token = confirm_token(WEB_SECRET, settings.list_id, kim.id, clock[0])
            assert requests.post(f"{server.url}/confirm?token={token}", timeout=5).status_code == 200
            assert subscriber_by_email(store, "kim@example.com").status == SubscriberStatus.ACTIVE
            assert app.extensions[CONFIRMATIONS].send_due() == 0
            assert welcome_outcomes(store) == {}
        finally:
            server.close()
    assert not (publication / "outbox" / "welcome").exists()


def test_a_korean_subscriber_gets_the_korean_edition_and_the_default_archive(publication: Path, tmp_path: Path) -> None:
    settings = load_settings(publication)
    latest = latest_edition(settings, "ko", _now())
    message, message_id = welcome_message(
        settings,
        load_templates(settings),
        SECRET,
        subscriber_id=7,
        email="minji@example.com",
        name="김민지",
        lang="ko",
        latest=latest,
    )
    parsed = _parse(message.raw)
    body = parsed.get_content()
    assert (
        parsed["Subject"] == "이번 주의 주요 ML 논문에 오신 것을 환영합니다"
        and parsed["To"].addresses[0].display_name == "김민지"
    )
    assert f"https://papers.example.com/issues/{SAMPLE}/" in body and "/en/" not in body
    assert "가장 최근 호:" in body and "https://papers.example.com/\n" in body
    assert unsubscribe_token(SECRET, settings.list_id, 7) in body and parsed["Message-ID"] == message_id
    assert message.issue == "welcome" and message.lang == "ko"


def _now():
    import datetime as dt

    return dt.datetime.now(dt.UTC)


def test_the_latest_issue_is_the_newest_one_out(publication: Path) -> None:
    """Drafts, issues still to come and files that do not parse are passed over; before any issue, none."""
    import datetime as dt

    settings = load_settings(publication)
    sample = latest_edition(settings, "en", _now())
    assert sample is not None and (sample.slug, sample.lang) == (SAMPLE, "en")
    write_issue(
        publication,
        "2030-01-06-draft.md",
        "---\ntitle: 초안\ndate: 2030-01-06\ndraft: true\n---\n\n## A\n\n[x](https://x.example)\n",
    )
    write_issue(publication, "2030-01-07-broken.md", "---\ntitle: [unclosed\n---\n")
    write_issue(
        publication,
        "2030-01-05-later.md",
        "---\ntitle: 나중 호\ndate: 2030-01-05\n---\n\n## A\n\n[x](https://x.example)\n",
    )
    assert latest_edition(settings, "en", _now()).slug == SAMPLE  # 2030's are still to come
    then = dt.datetime(2030, 1, 8, tzinfo=dt.UTC)
    later = latest_edition(settings, "en", then)
    assert (later.slug, later.lang) == ("2030-01-05-later", "ko")  # no English edition: the default language's
    for path in (publication / "issues").glob("*.md"):
        path.unlink()
    assert latest_edition(settings, "en", then) is None
    message, _ = welcome_message(
        settings,
        load_templates(settings),
        SECRET,
        subscriber_id=1,
        email="a@example.com",
        name="",
        lang="en",
        latest=None,
    )
    body = _parse(message.raw).get_content()
    assert "The latest issue" not in body and "Every issue so far is in the archive:" in body


def test_imports_adds_and_resubscribes_never_get_a_welcome_and_a_reconfirmation_gets_none_again(
    database_url: str, publication: Path, smtp_server, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler, port = smtp_server
    settings = smtp_settings(publication, port, database_url)
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", database_url)
    imported = run("subscribers", "import", str(REPO / "subscribers" / "example.csv"))
    assert imported.exit_code == 0, imported.output
    with open_store(database_url) as store:
        assert subscriber_by_email(store, "minji.kim@example.com").status == SubscriberStatus.ACTIVE
        added = add_subscriber(store, "added@example.com")
        record_unsubscribe(store, added.id, "page")
        assert resubscribe(store, added.id)
        worker = ConfirmationWorker(settings, store, load_templates(settings), SECRET)
        assert worker.send_due() == 0 and welcome_outcomes(store) == {}
        pending, _ = request_subscription(store, "web@example.com", "en", consent="web form")
        issued = int(time.time()) + 1
        assert confirm_subscription(store, pending.id, issued)[1]
        assert worker.send_due() == 1
        record_unsubscribe(store, pending.id, "page")
        request_subscription(store, "web@example.com", "en", consent="web form")  # signs up again, confirms again
        assert confirm_subscription(store, pending.id, issued + 2)[1]
        worker.send_due()
        assert welcome_outcomes(store) == {pending.id: "sent"}
    welcomed = [a for e in handler.envelopes for a in e.rcpt_tos if ".welcome@" in _parse(e.content)["Message-ID"]]
    assert welcomed == ["web@example.com"]  # the re-confirmation welcomed nobody again


def test_a_claim_cut_short_by_a_crash_is_never_sent_and_a_leaver_is_skipped(
    database_url: str, publication: Path, smtp_server
) -> None:
    handler, port = smtp_server
    settings = smtp_settings(publication, port, database_url)
    with open_store(database_url) as store:
        crashed, _ = request_subscription(store, "crash@example.com", "en", consent="web form")
        left, _ = request_subscription(store, "left@example.com", "en", consent="web form")
        issued = int(time.time()) + 1
        for subscriber in (crashed, left):
            assert confirm_subscription(store, subscriber.id, issued)[1]
        assert claim_welcome(store, crashed.id) is not None  # claimed, then the worker was killed
        assert claim_welcome(store, crashed.id) is None  # nobody claims it again
        record_unsubscribe(store, left.id, "one-click")  # left before the worker came to it
        worker = ConfirmationWorker(settings, store, load_templates(settings), SECRET)
        assert worker.send_due() == 1 and worker.send_due() == 0
        assert welcome_outcomes(store) == {crashed.id: None, left.id: "skipped"}
    assert handler.envelopes == []


def test_a_version_5_store_gains_the_welcome_table(database_url: str) -> None:
    """An older store is upgraded in place: its active subscribers get no welcome, a new confirmation does."""
    with open_store(database_url) as store:
        old = add_subscriber(store, "old@example.com")
        with store.begin() as conn:
            conn.execute(sa.text("DROP TABLE welcomes"))
            conn.execute(sa.text("UPDATE newsletter_schema SET version = 5"))
    with open_store(database_url) as store:
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version FROM newsletter_schema")).scalar_one() == SCHEMA_VERSION
            assert sa.inspect(conn).has_table("welcomes")
            assert {i["name"] for i in sa.inspect(conn).get_indexes("welcomes")} == {"ix_welcomes_claimed_at_due_at"}
        pending, _ = request_subscription(store, "new@example.com", "en", consent="web form")
        assert confirm_subscription(store, pending.id, int(time.time()) + 1)[1]
        assert welcome_outcomes(store) == {pending.id: None} and old.id != pending.id
        with store.begin() as conn:  # a removed subscriber takes their welcome row along
            conn.execute(sa.text("DELETE FROM subscribers WHERE id = :id"), {"id": pending.id})
            assert conn.execute(sa.select(sa.func.count()).select_from(welcomes)).scalar_one() == 0


def test_a_welcome_the_server_defers_is_given_back_and_tried_again_later(
    database_url: str, publication: Path, smtp_server
) -> None:
    """451 (surely not taken): the claim is given back, due a minute later, not recorded as sent or lost."""
    import datetime as dt

    handler, port = smtp_server
    settings = smtp_settings(publication, port, database_url)
    with open_store(database_url) as store:
        later, _ = request_subscription(store, "defer@example.com", "en", consent="web form", confirm=False)
        assert confirm_subscription(store, later.id, int(time.time()) + 1)[1]
        worker = ConfirmationWorker(settings, store, load_templates(settings), SECRET)
        assert worker.send_due_welcomes() == 1 and worker.send_due_welcomes() == 0  # not due again at once
        with store.engine.connect() as conn:
            row = conn.execute(sa.select(welcomes)).one()
        due = row.due_at if row.due_at.tzinfo else row.due_at.replace(tzinfo=dt.UTC)
        assert row.claimed_at is None and row.outcome is None
        assert dt.timedelta(seconds=30) < due - dt.datetime.now(dt.UTC) <= dt.timedelta(minutes=1)
        with store.begin() as conn:  # a minute later
            conn.execute(welcomes.update().values(due_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
        assert worker.send_due_welcomes() == 1  # tried again
    assert handler.envelopes == []  # the server took none
