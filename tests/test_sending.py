"""`newsletter send` end to end: the file transport, SMTP (aiosmtpd) and SES (moto), resume after a stop or a
SIGKILL, unsubscribes during a send, drafts, and the rate limiter."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import NamedTuple

import pytest

from newsletter.config import Settings, load_settings
from newsletter.issues import Issue, find_issue
from newsletter.messages import MessageTemplate
from newsletter.ratelimit import QuotaExhausted, RateLimiter
from newsletter.render.templates import load_templates
from newsletter.sending import TO_SEND, build_templates, send_edition, start_send
from newsletter.store import (
    DeliveryState,
    delivery_counts,
    next_deliveries,
    open_store,
    record_unsubscribe,
    subscriber_by_email,
)
from newsletter.tokens import DEVELOPMENT_SECRET, verify_unsubscribe_token
from newsletter.transports.file import FileTransport, file_name
from tests.conftest import REPO, wait_until, write_issue

ISSUE = "2023-09-25-top-ml-papers"
EXAMPLE = REPO / "subscribers" / "example.csv"


def _import(run, rows: int | None = None, tmp: Path | None = None, unsubscribed: int = 0) -> Path:
    if rows is None:
        path = EXAMPLE
    else:
        assert tmp is not None
        path = tmp / "many.csv"
        lines = ["email,name,lang"] + [
            f"user{n}@example.com,User {n},{'en' if n % 3 == 0 else 'ko'}" for n in range(rows)
        ]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert run("subscribers", "import", str(path)).exit_code == 0
    return path


def _outbox(publication: Path) -> Path:
    return publication / "outbox" / ISSUE


def _parse(path: Path):
    return BytesParser(policy=policy.default).parsebytes(path.read_bytes())


def test_file_send_gives_each_subscriber_their_edition(run, publication: Path) -> None:
    _import(run)
    result = run("send", ISSUE, "--yes")
    assert result.exit_code == 0, result.output
    assert "  en: 4 recipient(s)\n  ko: 6 recipient(s)\n" in result.stdout
    assert "Sent 10, failed 0, deferred 0, skipped 0" in result.stdout
    files = sorted(_outbox(publication).glob("*.eml"))
    assert len(files) == 10
    settings = load_settings(publication)
    with open_store(settings.database_url) as store:
        for path in files:
            message = _parse(path)
            address = message["To"].addresses[0].addr_spec
            subscriber = subscriber_by_email(store, address)
            assert path.name == file_name(address)
            english = subscriber.lang == "en"
            assert ("Top ML Papers of the Week" in message["Subject"]) is english
            token = message["List-Unsubscribe"].split("token=")[1].rstrip(">")
            assert verify_unsubscribe_token(DEVELOPMENT_SECRET.encode(), settings.list_id, token) == subscriber.id
    again = run("send", ISSUE, "--yes")
    assert again.exit_code == 1
    assert again.stderr.endswith(
        f"Error: {ISSUE}: was sent already (10 sent, 0 failed) (pass --resend to send it to everyone again)\n"
    )
    assert run("send", ISSUE, "--yes", "--resend").exit_code == 0
    assert len(list(_outbox(publication).glob("*.eml"))) == 10
    status = run("status", ISSUE)
    assert "sent            10" in status.stdout


class _Prepared(NamedTuple):
    """What driving send_edition directly needs, made once per test."""

    settings: Settings
    issue: Issue
    messages: dict[str, MessageTemplate]


def _prepared(publication: Path) -> _Prepared:
    settings = load_settings(publication)
    issue = find_issue(settings, ISSUE)
    return _Prepared(settings, issue, build_templates(settings, load_templates(settings), issue))


def _send(prepared: _Prepared, store, transport, total: int, *, limiter: RateLimiter | None = None, **options):
    """send_edition of the sample issue with the development secret, unlimited unless `limiter` says."""
    settings, issue, messages = prepared
    limiter = limiter or RateLimiter(None)
    secret = DEVELOPMENT_SECRET.encode()
    return send_edition(settings, store, issue, transport, messages, secret, limiter=limiter, total=total, **options)


def test_unsubscribed_never_get_mail_even_mid_send(publication: Path, run) -> None:
    _import(run)
    prepared = _prepared(publication)
    settings, issue, _ = prepared
    with open_store(settings.database_url) as store:
        record_unsubscribe(store, subscriber_by_email(store, "bob.jones@example.com").id, "page")
        late = subscriber_by_email(store, "eun.han@example.com")  # the last in the send order
        total = start_send(store, issue, settings, resend=False)
        transport = FileTransport(_outbox(publication))
        original = transport.send
        calls = []

        def send_then_unsubscribe(message):  # an unsubscribe lands while the send is running
            calls.append(message.recipient)
            if len(calls) == 1:
                record_unsubscribe(store, late.id, "one-click")
            return original(message)

        transport.send = send_then_unsubscribe
        reported: list[int] = []
        outcome = _send(prepared, store, transport, total, on_progress=lambda p: reported.append(p.done))
        counts = delivery_counts(store, ISSUE)
    names = {p.name for p in _outbox(publication).glob("*.eml")}
    assert total == 9  # bob had left before the snapshot
    assert file_name("bob.jones@example.com") not in names and file_name("eun.han@example.com") not in names
    assert "eun.han@example.com" not in calls
    assert counts["skipped"] == 1 and outcome.progress.skipped == 1 and counts["sent"] == len(names) == 8
    assert reported == list(range(1, 10))  # the progress bar moves for every delivery, the skipped one too


def test_an_unsubscribe_recorded_during_the_rate_limit_wait_is_honoured(publication: Path, run) -> None:
    """The last look at the subscriber comes after the wait for the rate-limit slot, right before the hand-over."""
    _import(run)
    prepared = _prepared(publication)
    settings, issue, _ = prepared
    with open_store(settings.database_url) as store:
        total = start_send(store, issue, settings, resend=False)
        second = next_deliveries(store, ISSUE, 0, 2, TO_SEND)[1]  # the first message that has to wait
        now = [0.0]
        waits: list[float] = []

        def sleep(seconds: float) -> None:  # the wait for the slot: the subscriber leaves meanwhile
            if not waits:
                record_unsubscribe(store, second.subscriber_id, "one-click")
            waits.append(seconds)
            now[0] += seconds

        transport = FileTransport(_outbox(publication))
        handed_over: list[str] = []
        original = transport.send
        transport.send = lambda message: handed_over.append(message.recipient) or original(message)
        limiter = RateLimiter(0.5, clock=lambda: now[0], sleep=sleep)
        outcome = _send(prepared, store, transport, total, limiter=limiter)
        counts = delivery_counts(store, ISSUE)
        states = {d.subscriber_id: d.state for d in next_deliveries(store, ISSUE, 0, 100, tuple(DeliveryState))}
    assert waits and waits[0] == pytest.approx(2.0)  # --rate 0.5: the second message waited 2 s
    assert second.email not in handed_over and len(handed_over) == total - 1
    assert not (_outbox(publication) / file_name(second.email)).exists()
    assert states[second.subscriber_id] == DeliveryState.SKIPPED
    assert counts["skipped"] == outcome.progress.skipped == 1 and counts["sent"] == total - 1


def test_stop_then_resume_sends_the_rest_once(publication: Path, run, tmp_path: Path) -> None:
    _import(run, rows=30, tmp=tmp_path)
    prepared = _prepared(publication)
    settings, issue, _ = prepared
    with open_store(settings.database_url) as store:
        total = start_send(store, issue, settings, resend=False)
        stop = threading.Event()
        first = _send(
            prepared,
            store,
            FileTransport(_outbox(publication)),
            total,
            stop=stop,
            on_progress=lambda p: stop.set() if p.sent == 12 else None,
        )
        assert first.stopped == "stopped on request" and first.progress.sent == 12
        assert delivery_counts(store, ISSUE)["pending"] == 18
    result = run("send", ISSUE, "--yes")
    assert result.exit_code == 0
    assert "Resuming  18 message(s) left of 30 (12 sent)" in result.stdout
    assert len(list(_outbox(publication).glob("*.eml"))) == 30


def test_drafts_cannot_be_sent(publication: Path, run) -> None:
    write_issue(publication, "2023-10-02-draft.md", "---\ntitle: d\ndate: 2023-10-02\ndraft: true\n---\n")
    _import(run)
    result = run("send", "2023-10-02-draft", "--yes")
    assert result.exit_code == 1
    assert result.stderr.endswith(
        "Error: issues/2023-10-02-draft.md: is a draft (set draft: false in its front matter to send it)\n"
    )


def test_dry_run_and_test_send_record_nothing(publication: Path, run) -> None:
    _import(run)
    assert run("subscribers", "remove", "bob.jones@example.com").exit_code == 0
    dry = run("send", ISSUE, "--dry-run")
    assert dry.exit_code == 0
    assert "Dry run   built 6 ko, 3 en message(s); 0 address(es) could not be used; nothing was sent" in dry.stdout
    test = run("send", ISSUE, "--test", "editor@example.com")
    assert test.stdout == "ko: sent to editor@example.com\nen: sent to editor@example.com\n"
    assert [p.name for p in _outbox(publication).glob("*.eml")] == [file_name("editor@example.com")]
    assert "total            0" in run("status", ISSUE).stdout


def test_smtp_send_with_refusals(
    publication: Path, run, smtp_server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    handler, port = smtp_server
    monkeypatch.setenv("NEWSLETTER_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("NEWSLETTER_SMTP_PORT", str(port))
    config = publication / "pyproject.toml"
    config.write_text(
        config.read_text(encoding="utf-8") + '\n[tool.newsletter.smtp]\nsecurity = "none"\n', encoding="utf-8"
    )
    csv_path = tmp_path / "smtp.csv"
    csv_path.write_text(
        "email,lang\nkim@example.com,ko\nreject.me@example.com,ko\ndefer.me@example.com,en\nalice@example.com,en\n",
        encoding="utf-8",
    )
    assert run("subscribers", "import", str(csv_path)).exit_code == 0
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    refused = run("send", ISSUE, "--yes", "--transport", "smtp")
    assert refused.exit_code == 1
    assert refused.stderr == (
        "Error: NEWSLETTER_SECRET_KEY: is not set; the smtp transport sends real mail with links "
        "signed by it (export NEWSLETTER_SECRET_KEY=<a long random string>)\n"
    )
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "a-real-secret-for-this-test")
    result = run("send", ISSUE, "--yes", "--transport", "smtp")
    assert result.exit_code == 1
    assert "Sent 2, failed 1, deferred 1" in result.stdout
    assert result.stderr.endswith(f"Error: {ISSUE}: 1 message(s) failed for good (see 'newsletter status {ISSUE}')\n")
    shown = run("status", ISSUE).stdout  # the hint's promise: status names who failed, and why
    assert "Not sent (2 of 2; failed is for good, deferred is retried by a resumed send):" in shown
    assert "failed   reject.me@example.com\tSMTP 550 5.1.1 <reject.me@example.com>: Recipient address rejected" in shown
    assert "deferred defer.me@example.com\tSMTP 451 4.3.0 Mailbox temporarily unavailable" in shown
    received = {
        e.rcpt_tos[0]: BytesParser(policy=policy.default).parsebytes(e.original_content) for e in handler.envelopes
    }
    assert set(received) == {"kim@example.com", "alice@example.com"}
    assert "Top ML Papers" in received["alice@example.com"]["Subject"]
    assert received["kim@example.com"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_ses_send_respects_the_daily_quota(
    publication: Path, run, ses, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    endpoint, sent = ses
    monkeypatch.setenv("NEWSLETTER_SES_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "a-real-secret-for-this-test")
    rows = tmp_path / "ses.csv"
    rows.write_text("email\n" + "".join(f"r{n}@example.com\n" for n in range(201)), encoding="utf-8")
    assert run("subscribers", "import", str(rows)).exit_code == 0
    refused = run("send", ISSUE, "--yes", "--transport", "ses")
    assert refused.exit_code == 1
    assert refused.stderr.endswith(
        f"Error: {ISSUE}: needs 201 messages but only 200 are left of the 24-hour quota "
        "(pass --allow-partial to send those now and the rest later)\n"
    )
    assert "rate 1/s (SES allows 1/s; 24-hour quota: 200 left of 200)" in refused.stdout
    assert len(sent) == 0


def test_ses_send_over_moto(publication: Path, run, ses, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    endpoint, sent = ses
    monkeypatch.setenv("NEWSLETTER_SES_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "a-real-secret-for-this-test")
    rows = tmp_path / "ses.csv"
    rows.write_text("email,lang\nkim@example.com,ko\nalice@example.com,en\n", encoding="utf-8")
    assert run("subscribers", "import", str(rows)).exit_code == 0
    started = time.monotonic()
    result = run("send", ISSUE, "--yes", "--transport", "ses")
    assert result.exit_code == 0, result.stderr
    assert time.monotonic() - started >= 1.0  # moto's quota says 1 message per second
    messages = {
        BytesParser(policy=policy.default).parsebytes(m.raw_data.encode())["To"].addresses[0].addr_spec: m for m in sent
    }
    assert set(messages) == {"kim@example.com", "alice@example.com"}
    with open_store(load_settings(publication).database_url) as store:
        counts = delivery_counts(store, ISSUE)
    assert counts["sent"] == 2


def test_rate_limiter_spaces_messages_and_stops_at_the_cap() -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(50, cap=120, clock=lambda: now[0], sleep=sleep)
    stamps = []
    for _ in range(120):
        limiter.acquire()
        stamps.append(now[0])
    with pytest.raises(QuotaExhausted):
        limiter.acquire()
    for start in stamps:  # no one-second window holds more than 50
        assert sum(1 for s in stamps if start <= s < start + 1) <= 50
    assert stamps[-1] == pytest.approx(119 / 50)


def test_killed_sends_resume_and_everyone_gets_exactly_one(publication: Path, run, tmp_path: Path) -> None:
    """SIGKILL a real `newsletter send` at random moments, several times, then let it finish."""
    _import(run, rows=400, tmp=tmp_path)
    assert run("subscribers", "remove", "user7@example.com").exit_code == 0
    settings = load_settings(publication)
    with open_store(settings.database_url) as store:
        record_unsubscribe(store, subscriber_by_email(store, "user8@example.com").id, "page")
    command = [sys.executable, "-m", "newsletter", "--root", str(publication), "send", ISSUE, "--yes", "--rate", "250"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    chooser = random.Random()
    kills = []  # (moment, messages sent by then)
    for _ in range(4):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        moment = chooser.uniform(0.5, 1.2)
        time.sleep(moment)  # the kill moment itself is the random input of this test
        process.send_signal(signal.SIGKILL)
        process.wait()
        with open_store(settings.database_url) as store:
            kills.append((round(moment, 2), delivery_counts(store, ISSUE)["sent"]))
    assert sum(1 for _, sent in kills if 0 < sent < 398) >= 2, kills  # most kills landed mid-send
    final = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert final.returncode == 0 or "was sent already (398 sent, 0 failed)" in final.stderr, (kills, final.stderr)
    with open_store(settings.database_url) as store:
        counts = delivery_counts(store, ISSUE)
    expected = {file_name(f"user{n}@example.com") for n in range(400) if n not in (7, 8)}
    files = {p.name for p in _outbox(publication).glob("*.eml")}
    assert files == expected, kills
    assert not list(_outbox(publication).glob(".*.tmp"))
    assert counts["sent"] == 398 and counts[DeliveryState.PENDING] == 0 and counts["sending"] == 0
    for path in list(_outbox(publication).glob("*.eml"))[:20]:
        assert _parse(path)["To"].addresses[0].addr_spec in path.name.replace("_at_", "@")


def test_quota_cap_and_a_paused_account_leave_the_rest_resumable(publication: Path, run, ses, tmp_path: Path) -> None:
    import boto3
    from botocore.config import Config

    from newsletter.transports.ses import SesTransport
    from tests.transports.test_ses import FaultProxy

    _import(run, rows=6, tmp=tmp_path)
    prepared = _prepared(publication)
    settings, issue, _ = prepared
    with open_store(settings.database_url) as store:
        total = start_send(store, issue, settings, resend=False)
        capped = _send(prepared, store, FileTransport(_outbox(publication)), total, limiter=RateLimiter(None, cap=2))
        assert capped.stopped == "the 24-hour sending quota is used up" and capped.progress.sent == 2
        assert delivery_counts(store, ISSUE)["pending"] == 4

        endpoint, sent = ses
        proxy = FaultProxy(endpoint, lambda n: (400, "SendingPausedException", "Sending paused.") if n > 1 else None)
        try:
            client = boto3.client(
                "sesv2",
                region_name="us-east-1",
                endpoint_url=proxy.url,
                config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
            )
            paused = _send(prepared, store, SesTransport(client), 4)
        finally:
            proxy.close()
        assert paused.progress.sent == 1 and len(sent) == 1
        assert paused.stopped.startswith("ses: sending is paused for this account or configuration set")
        counts = delivery_counts(store, ISSUE)
    assert (counts["sent"], counts["pending"], counts["sending"]) == (3, 3, 0)


def test_ctrl_c_stops_after_the_message_in_flight_and_says_how_to_resume(
    publication: Path, run, tmp_path: Path
) -> None:
    _import(run, rows=200, tmp=tmp_path)
    command = [sys.executable, "-m", "newsletter", "--root", str(publication), "send", ISSUE, "--yes", "--rate", "50"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    settings = load_settings(publication)

    def some_sent() -> bool:
        with open_store(settings.database_url) as store:
            return delivery_counts(store, ISSUE)["sent"] >= 10

    wait_until(some_sent, what="the first messages")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 1
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("Error: send: stopped after ") and "of 200: stopped on request" in last
    assert f"(run 'newsletter send {ISSUE}' again to resume;" in last
    with open_store(settings.database_url) as store:
        counts = delivery_counts(store, ISSUE)
    assert counts["sending"] == 0 and counts["sent"] + counts["pending"] == 200
    assert counts["sent"] == len(list(_outbox(publication).glob("*.eml")))


def test_the_store_and_the_outbox_are_private_after_a_send(publication: Path, run) -> None:
    import stat

    old = os.umask(0o022)  # the usual default: plain creation would make them 0644 and 0755
    try:
        _import(run)
        assert run("send", ISSUE, "--yes").exit_code == 0
        db = publication / "subscribers" / "subscribers.db"
        files = [db, *_outbox(publication).glob("*.eml")]
        with open_store(load_settings(publication).database_url) as store:
            assert delivery_counts(store, ISSUE)["sent"] == 10  # open: SQLite's -wal and -shm files exist
            files += [db.with_name("subscribers.db-wal"), db.with_name("subscribers.db-shm")]
            modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in files}
    finally:
        os.umask(old)
    assert len(modes) == 13 and set(modes.values()) == {0o600}, modes
    for folder in (db.parent, publication / "outbox", _outbox(publication)):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_an_issue_name_longer_than_the_send_log_keeps_is_one_line(
    publication: Path, run, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", database_url)
    slug = "2023-10-02-" + "long" * 55  # 231 characters: the file system allows it, the send log keeps 200
    text = (publication / "issues" / f"{ISSUE}.md").read_text(encoding="utf-8").replace("2023-09-25", "2023-10-02")
    write_issue(publication, f"{slug}.md", text)
    _import(run)
    result = run("send", slug, "--yes")
    assert result.exit_code == 1
    assert result.stderr.endswith(
        f"\nError: issues/{slug}.md: has a name of 231 characters; the send log keeps 200 "
        "(rename the file with a shorter slug)\n"
    )
