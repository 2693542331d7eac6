"""Scheduled sends: an issue's publication instant (its date at publish_time, or publish_at), `schedule` under an
injected clock against a real send log (SQLite and PostgreSQL), `newsletter send --due` end to end with issue
times relative to the real clock (file transport, SMTP, SQLite), and the systemd units it ships with."""

from __future__ import annotations

import configparser
import dataclasses
import datetime as dt
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import zoneinfo
from pathlib import Path

import click
import jinja2
import pytest

from newsletter.cli import cli
from newsletter.config import Settings, load_settings
from newsletter.errors import IssueError
from newsletter.issues import Issue, load_issues, parse_issue, publication_instant
from newsletter.render.templates import load_templates
from newsletter.schedule import Scheduled, Standing, schedule
from newsletter.sending import build_templates, plan_send, send_issue
from newsletter.store import add_subscriber, delivery_counts, open_store, record_unsubscribe, subscriber_by_email
from newsletter.tokens import DEVELOPMENT_SECRET
from newsletter.transports.file import FileTransport
from tests.conftest import REPO, fresh_postgresql, missing_system_package, wait_until, write_issue

SAMPLE = "2023-09-25-top-ml-papers"  # in the sample publication, never sent: an archive issue
SEOUL = zoneinfo.ZoneInfo("Asia/Seoul")  # the sample's timezone, publish_time 09:00
UTC = dt.UTC
DEPLOY = REPO / "newsletter" / "scaffold" / "deploy"
MISSED_SAMPLE = (
    f"1 missed, never sent and more than 24 h past its time (the newest: {SAMPLE}; "
    f"'newsletter send {SAMPLE}' sends one anyway)"
)


def _issue(
    publication: Path,
    name: str,
    day: dt.date,
    *,
    publish_at: str | None = None,
    draft: bool = False,
    lang: str | None = None,
) -> str:
    """Write an issue file (a paper with a link, so `check` is content); returns the slug."""
    lines = ["---", f'title: "Issue {name}"', f"date: {day.isoformat()}", 'summary: "One paper."']
    if publish_at is not None:
        lines.append(f"publish_at: {publish_at}")
    if draft:
        lines.append("draft: true")
    lines += ["---", "", "Intro.", "", "## A paper", "", "Body.", "", "- [Paper](https://arxiv.org/abs/1)", ""]
    slug = f"{day.isoformat()}-{name}"
    write_issue(publication, f"{slug}{'.' + lang if lang else ''}.md", "\n".join(lines))
    return slug


def _utc(moment: dt.datetime) -> str:
    """`moment` as publish_at in UTC, to the second."""
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%S}Z"


def _shown(moment: dt.datetime) -> str:
    """How `send --due` shows a moment of the sample (Asia/Seoul)."""
    return f"{moment.astimezone(SEOUL):%Y-%m-%d %H:%M} KST"


def _set(publication: Path, line: str) -> None:
    """Add a `[tool.newsletter]` setting to the publication's pyproject.toml."""
    config = publication / "pyproject.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace('publish_time = "09:00"\n', f'publish_time = "09:00"\n{line}\n'), encoding="utf-8")


def _import(run, tmp_path: Path, rows: int) -> None:
    path = tmp_path / "subscribers.csv"
    path.write_text("email,lang\n" + "".join(f"user{n}@example.com,ko\n" for n in range(rows)), encoding="utf-8")
    assert run("subscribers", "import", str(path)).exit_code == 0


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """Each .eml in `folder` with (inode, mtime in ns): a file written again (a second copy) gets a new inode."""
    if not folder.exists():
        return {}
    return {path.name: (path.stat().st_ino, path.stat().st_mtime_ns) for path in folder.glob("*.eml")}


def _standings(entries: list[Scheduled]) -> dict[str, Standing]:
    return {entry.issue.slug: entry.standing for entry in entries}


def _today() -> dt.date:
    return dt.datetime.now(SEOUL).date()


# ---------------------------------------------------------------- the publication instant


def test_an_issues_instant_is_its_date_at_publish_time_in_the_timezone(publication: Path) -> None:
    settings = load_settings(publication)
    (issue,) = load_issues(settings)
    assert issue.publish_at is None
    assert publication_instant(issue, settings) == dt.datetime(2023, 9, 25, 0, 0, tzinfo=UTC)  # 09:00 KST


@pytest.mark.parametrize(
    "written",
    [
        "2026-12-02T09:30+09:00",
        "2026-12-02T09:30:00+0900",
        "2026-12-02T00:30:00Z",
        '"2026-12-02 00:30Z"',
        "2026-12-02 09:30",  # no offset: a time on the publication's clock (Asia/Seoul)
        "2026-12-02T09:30:00",
    ],
)
def test_publish_at_takes_an_offset_or_the_publications_clock(publication: Path, written: str) -> None:
    settings = load_settings(publication)
    _issue(publication, "timed", dt.date(2026, 12, 2), publish_at=written)
    issue = next(issue for issue in load_issues(settings) if issue.slug == "2026-12-02-timed")
    assert publication_instant(issue, settings) == dt.datetime(2026, 12, 2, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("written", "problem"),
    [
        ("2026-12-02", "publish_at '2026-12-02' is not a date and time"),
        ("tomorrow", "publish_at 'tomorrow' is not a date and time"),
        ("2026-13-02T09:00+09:00", "publish_at '2026-13-02T09:00+09:00' is not a date and time"),
        ("2026-12-02T25:00Z", "publish_at '2026-12-02T25:00Z' is not a date and time"),
        ("2026-12-02T09:00+9", "publish_at '2026-12-02T09:00+9' is not a date and time"),
        ("[2026-12-02T09:00Z]", "publish_at must be one date and time"),
    ],
)
def test_a_bad_publish_at_is_an_error_of_check_with_its_line(
    publication: Path, run, written: str, problem: str
) -> None:
    _issue(publication, "timed", dt.date(2026, 12, 2), publish_at=written)
    result = run("check")
    assert result.exit_code == 1
    hint = (
        "use YYYY-MM-DDTHH:MM with an offset, such as 2026-12-02T09:00+09:00, or without one for a time in the "
        "timezone setting"
    )
    assert f"error: issues/2026-12-02-timed.md:5: {problem} ({hint})\n" in result.stderr
    assert result.stderr.endswith("Error: checked 2 edition file(s): 1 error(s), 0 warning(s)\n")  # 2 parsed


def test_a_wall_clock_publish_at_that_daylight_saving_skips_is_refused(publication: Path) -> None:
    settings = dataclasses.replace(load_settings(publication), timezone=zoneinfo.ZoneInfo("America/New_York"))
    path = publication / "issues" / "2026-03-08-spring.md"
    path.write_text('---\ntitle: "Spring"\ndate: 2026-03-08\npublish_at: 2026-03-08 02:30\n---\n', encoding="utf-8")
    with pytest.raises(IssueError) as raised:
        parse_issue(path, settings)
    assert str(raised.value) == (
        "issues/2026-03-08-spring.md:4: publish_at 2026-03-08 02:30 does not exist in America/New_York "
        "(the clocks skip it) (pick another time, or give an offset such as +09:00)"
    )
    path = publication / "issues" / "2026-11-01-fall.md"
    path.write_text('---\ntitle: "Fall"\ndate: 2026-11-01\npublish_at: 2026-11-01 01:30\n---\n', encoding="utf-8")
    repeated = parse_issue(path, settings).publish_at  # 01:30 comes twice: the first one (EDT)
    assert repeated is not None and repeated.isoformat() == "2026-11-01T01:30:00-04:00"


def test_editions_that_disagree_on_publish_at_are_an_error_of_check(publication: Path, run) -> None:
    day = dt.date(2026, 12, 2)
    _issue(publication, "both", day, publish_at="2026-12-02T09:00+09:00")
    _issue(publication, "both", day, publish_at="2026-12-02T00:00Z", lang="en")  # the same instant
    _issue(publication, "half", day, publish_at="2026-12-02T10:00+09:00")
    _issue(publication, "half", day, lang="en")  # none: the translation follows the default edition
    settings = load_settings(publication)
    issues = {issue.slug: issue for issue in load_issues(settings)}
    assert publication_instant(issues["2026-12-02-both"], settings) == dt.datetime(2026, 12, 2, 0, 0, tzinfo=UTC)
    assert publication_instant(issues["2026-12-02-half"], settings) == dt.datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
    assert run("check").exit_code == 0

    _issue(publication, "both", day, publish_at="2026-12-02T09:05+09:00", lang="en")
    result = run("check")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: issues/2026-12-02-both.en.md:5: publish_at 2026-12-02T09:05:00+09:00 differs from "
        "issues/2026-12-02-both.md:5's 2026-12-02T09:00:00+09:00 (give every edition the same, or leave it out "
        "of the translations)\n"
        "Error: checked 6 edition file(s): 1 error(s), 0 warning(s)\n"
    )


# ---------------------------------------------------------------- schedule, with an injected clock


def _send_part(settings: Settings, store, issue: Issue, outbox: Path, *, stop_after: int | None) -> int:
    """Send `issue` from the library with the file transport, stopping once `stop_after` were sent; the count."""
    messages = build_templates(settings, load_templates(settings), issue)
    plan = plan_send(settings, store, issue, messages, DEVELOPMENT_SECRET.encode(), transport=FileTransport(outbox))
    stop = threading.Event()

    def progress(p) -> None:
        if stop_after is not None and p.sent >= stop_after:
            stop.set()

    return send_issue(plan, store, stop=stop, on_progress=progress).progress.sent


def test_schedule_under_an_injected_clock(publication: Path, store, tmp_path: Path) -> None:
    """Every standing, on SQLite and PostgreSQL: scheduled until the instant, due from it until max_late after it
    (both ends included), then missed; a stopped send resumable, then unfinished; drafts never due."""
    settings = load_settings(publication)
    daily = _issue(publication, "daily", dt.date(2026, 12, 1))  # 2026-12-01 09:00 KST = 00:00 UTC
    timed = _issue(publication, "timed", dt.date(2026, 12, 1), publish_at="2026-12-01T12:00Z")
    draft = _issue(publication, "draft", dt.date(2026, 11, 20), draft=True)
    for n in range(20):
        add_subscriber(store, f"user{n}@example.com")
    issues = load_issues(settings)

    def at(text: str) -> dict[str, Standing]:
        return _standings(schedule(settings, issues, store, dt.datetime.fromisoformat(text)))

    assert at("2026-11-30T23:59:59Z") == {
        SAMPLE: Standing.MISSED,
        draft: Standing.DRAFT,
        daily: Standing.SCHEDULED,
        timed: Standing.SCHEDULED,
    }
    assert at("2026-12-01T09:00+09:00")[daily] == Standing.DUE  # its very instant, on another clock
    assert at("2026-12-02T00:00Z")[daily] == Standing.DUE  # max_late (24 h) after it
    late = at("2026-12-02T00:00:01Z")
    assert (late[daily], late[timed]) == (Standing.MISSED, Standing.DUE)
    entries = schedule(settings, issues, store, dt.datetime(2026, 12, 2, tzinfo=UTC))
    assert [entry.issue.slug for entry in entries] == [SAMPLE, draft, daily, timed]  # oldest instant first
    assert [entry.is_due() for entry in entries] == [False, False, True, True]
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule(settings, issues, store, dt.datetime(2026, 12, 2))

    by_slug = {issue.slug: issue for issue in issues}
    sent = _send_part(settings, store, by_slug[timed], tmp_path / "outbox", stop_after=3)
    assert 3 <= sent < 20
    (entry,) = [
        e for e in schedule(settings, issues, store, dt.datetime(2026, 12, 2, tzinfo=UTC)) if e.issue is by_slug[timed]
    ]
    assert (entry.standing, entry.left, entry.logged) == (Standing.RESUMABLE, 20 - sent, 20)
    (entry,) = [
        e for e in schedule(settings, issues, store, dt.datetime(2026, 12, 3, tzinfo=UTC)) if e.issue is by_slug[timed]
    ]
    assert entry.standing == Standing.UNFINISHED and not entry.is_due() and entry.is_due(late_ok=True)

    # Those left leave the list: nothing is left that a send would hand over, so the issue counts as sent.
    for n in range(20):
        subscriber = subscriber_by_email(store, f"user{n}@example.com")
        assert subscriber is not None
        record_unsubscribe(store, subscriber.id, "page")
    assert at("2026-12-02T00:00Z")[timed] == Standing.SENT
    assert delivery_counts(store, timed)["pending"] == 20 - sent  # still in the log, for nobody active


def test_a_fully_sent_issue_is_never_due_again(publication: Path, store, tmp_path: Path) -> None:
    settings = load_settings(publication)
    add_subscriber(store, "kim@example.com")
    issues = load_issues(settings)
    (sample,) = issues
    assert _send_part(settings, store, sample, tmp_path / "outbox", stop_after=None) == 1
    for moment in ("2023-09-25T00:00Z", "2023-09-25T12:00Z", "2026-12-02T00:00Z"):
        assert _standings(schedule(settings, issues, store, dt.datetime.fromisoformat(moment))) == {
            SAMPLE: Standing.SENT
        }


# ---------------------------------------------------------------- `newsletter send --due`, on the real clock


def test_send_due_sends_what_is_due_once_and_then_says_nothing_is_due(publication: Path, run) -> None:
    assert run("subscribers", "import", str(REPO / "subscribers" / "example.csv")).exit_code == 0
    now = dt.datetime.now(UTC)
    at = now - dt.timedelta(minutes=10)
    due = _issue(publication, "due", _today(), publish_at=_utc(at))
    future_day = _today() + dt.timedelta(days=3)
    future = _issue(publication, "future", future_day)
    draft = _issue(publication, "draft", _today(), publish_at=_utc(now - dt.timedelta(minutes=5)), draft=True)
    result = run("send", "--due")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert re.fullmatch(
        rf"Due       {due}, {_shown(at)} \(1[01] min ago\): starting, 10 message\(s\) in the ko edition\(s\)", lines[0]
    ), lines[0]
    assert lines[1].startswith("Sent 10, failed 0, deferred 0, skipped 0 in ")
    assert re.fullmatch(
        rf"Checked at .* KST: 1 due \(above\), 0 sent already, 1 scheduled \(next: {future} at {future_day} 09:00 KST, "
        rf"in \d d( \d+ h)?\), 1 draft\(s\), {re.escape(MISSED_SAMPLE)}",
        lines[2],
    ), lines[2]
    assert len(lines) == 3
    written = _files(publication / "outbox" / due)
    assert len(written) == 10
    assert sorted(p.name for p in (publication / "outbox").iterdir()) == [due]  # not the draft, future, or 2023

    again = run("send", "--due")
    assert again.exit_code == 0 and again.stderr == ""
    (line,) = again.stdout.splitlines()  # one line: nothing to do, and what stands where
    assert re.fullmatch(
        rf"Nothing due at .* KST: 1 sent already, 1 scheduled \(next: {future} at {future_day} 09:00 KST, in \d d( \d+ h)?\), "
        rf"1 draft\(s\), {re.escape(MISSED_SAMPLE)}",
        line,
    ), line
    assert _files(publication / "outbox" / due) == written  # no file written again
    assert draft and not (publication / "outbox" / draft).exists()


def test_sending_an_issue_by_name_before_its_time_says_so(publication: Path, run) -> None:
    assert run("subscribers", "import", str(REPO / "subscribers" / "example.csv")).exit_code == 0
    day = _today() + dt.timedelta(days=3)
    slug = _issue(publication, "early", day)
    result = run("send", slug, "--yes")
    assert result.exit_code == 0, result.output
    assert re.search(
        rf"^Note      its time is {day} 09:00 KST, in \d d( \d+ h)?: this sends it now "
        r"\('newsletter send --due' would wait for it\)$",
        result.stdout,
        re.M,
    ), result.stdout
    assert "Sent 10, failed 0" in result.stdout
    assert "Note      its time" not in run("send", SAMPLE, "--yes").stdout  # a past issue: no note


def test_an_issue_past_max_late_is_missed_not_sent_unless_named_or_allowed(publication: Path, run) -> None:
    assert run("subscribers", "import", str(REPO / "subscribers" / "example.csv")).exit_code == 0
    now = dt.datetime.now(UTC)
    stale = _issue(publication, "stale", _today() - dt.timedelta(days=1), publish_at=_utc(now - dt.timedelta(hours=25)))
    older = _issue(publication, "older", _today() - dt.timedelta(days=2), publish_at=_utc(now - dt.timedelta(hours=30)))
    result = run("send", "--due")
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    assert line.startswith("Nothing due at ") and line.endswith(
        f"KST: 0 sent already, 3 missed, never sent and more than 24 h past its time (the newest: {stale}; "
        f"'newsletter send {stale}' sends one anyway)"
    )
    assert not (publication / "outbox").exists()

    named = run("send", stale, "--yes")  # naming an issue sends it whatever its time
    assert named.exit_code == 0 and len(_files(publication / "outbox" / stale)) == 10

    _set(publication, 'max_late = "2d"')
    allowed = run("send", "--due")
    assert allowed.exit_code == 0, allowed.output
    assert allowed.stdout.startswith(f"Due       {older}, ")
    assert "starting, 10 message(s)" in allowed.stdout
    assert allowed.stdout.splitlines()[-1].endswith(f"1 sent already, {MISSED_SAMPLE.replace('24 h', '2 d')}")
    assert len(_files(publication / "outbox" / older)) == 10


def test_send_due_resumes_a_send_stopped_midway_and_sends_nobody_twice(publication: Path, run, tmp_path: Path) -> None:
    """A `send --due` under a timer stopped with SIGTERM (systemctl stop) after some messages: the next run sends
    the rest; no message written by the first run is written again."""
    _import(run, tmp_path, 200)
    slug = _issue(publication, "big", _today(), publish_at=_utc(dt.datetime.now(UTC) - dt.timedelta(minutes=1)))
    settings = load_settings(publication)
    command = [sys.executable, "-m", "newsletter", "--root", str(publication), "send", "--due", "--rate", "50"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    try:

        def some_sent() -> bool:
            with open_store(settings.database_url) as store:
                return delivery_counts(store, slug)["sent"] >= 10

        wait_until(some_sent, seconds=60, what="the first messages")
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 1, stderr
    with open_store(settings.database_url) as store:
        counts = delivery_counts(store, slug)
    sent, left = counts["sent"], counts["pending"]
    assert counts["sending"] == 0 and sent + left == 200 and 0 < left < 190
    assert f"Due       {slug}, " in stdout and "starting, 200 message(s) in the ko edition(s)" in stdout
    assert stderr.splitlines()[-1] == (
        f"Error: send: stopped after {sent} of 200: stopped on request "
        f"(run 'newsletter send --due' again to resume; {left} left)"
    )
    first = _files(publication / "outbox" / slug)
    assert len(first) == sent

    result = run("send", "--due")
    assert result.exit_code == 0, result.output
    assert f": resuming, {left} message(s) left of 200 ({sent} sent)\n" in result.stdout
    assert f"Sent {left}, failed 0, deferred 0, skipped 0 in " in result.stdout
    after = _files(publication / "outbox" / slug)
    assert len(after) == 200
    assert {name: after[name] for name in first} == first  # the first run's messages were not written again
    with open_store(settings.database_url) as store:
        assert delivery_counts(store, slug)["sent"] == 200
    assert run("send", "--due").stdout.startswith("Nothing due at ")


def test_a_second_send_due_while_one_runs_leaves_the_issue_to_it_on_sqlite(
    publication: Path, run, tmp_path: Path
) -> None:
    _import(run, tmp_path, 200)
    slug = _issue(publication, "big", _today(), publish_at=_utc(dt.datetime.now(UTC) - dt.timedelta(minutes=1)))
    settings = load_settings(publication)
    command = [sys.executable, "-m", "newsletter", "--root", str(publication), "send", "--due", "--rate", "20"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:

        def started() -> bool:
            with open_store(settings.database_url) as store:
                return delivery_counts(store, slug)["sent"] >= 2

        wait_until(started, seconds=60, what="the first sender's messages")
        result = run("send", "--due")
        assert result.exit_code == 0, result.output
        assert re.search(
            rf"^Skipped   {slug}, .*: is being sent by another process \(pid {process.pid} on .*\); "
            "SQLite allows one sender per issue$",
            result.stdout,
            re.M,
        ), result.stdout
        assert "Sent " not in result.stdout
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    assert process.returncode == 1  # stopped on request


def test_two_send_due_runs_share_an_issue_on_postgresql(
    publication: Path, run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two timers (two machines) on one PostgreSQL send log: both take part or the second finds nothing left;
    together they send each message once."""
    url = fresh_postgresql()
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", url)
    _import(run, tmp_path, 600)
    slug = _issue(publication, "shared", _today(), publish_at=_utc(dt.datetime.now(UTC) - dt.timedelta(minutes=1)))
    settings = load_settings(publication)
    command = [sys.executable, "-m", "newsletter", "--root", str(publication), "send", "--due", "--rate", "100"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:

        def started() -> bool:
            with open_store(settings.database_url) as store:
                return delivery_counts(store, slug)["sent"] >= 20

        wait_until(started, seconds=60, what="the first sender's messages")
        second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert (first.returncode, second.returncode) == (0, 0), (err, second.stderr)
    counts = [int(m[1]) for text in (out, second.stdout) for m in re.finditer(r"^Sent (\d+), failed 0", text, re.M)]
    assert sum(counts) == 600, (out, second.stdout)  # nobody twice, nobody left out
    assert "resuming" in second.stdout or second.stdout.startswith("Nothing due")
    with open_store(settings.database_url) as store:
        assert delivery_counts(store, slug)["sent"] == 600
    assert len(_files(publication / "outbox" / slug)) == 600


def test_send_due_retries_deferred_messages_and_never_resends_the_sent(
    publication: Path, run, smtp_server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    handler, port = smtp_server
    monkeypatch.setenv("NEWSLETTER_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("NEWSLETTER_SMTP_PORT", str(port))
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "a-real-secret-for-this-test")
    config = publication / "pyproject.toml"
    config.write_text(config.read_text(encoding="utf-8") + '\n[tool.newsletter.smtp]\nsecurity = "none"\n')
    path = tmp_path / "smtp.csv"
    path.write_text("email,lang\nkim@example.com,ko\ndefer.me@example.com,ko\n", encoding="utf-8")
    assert run("subscribers", "import", str(path)).exit_code == 0
    slug = _issue(publication, "mail", _today(), publish_at=_utc(dt.datetime.now(UTC) - dt.timedelta(minutes=3)))
    first = run("send", "--due", "--transport", "smtp")
    assert first.exit_code == 1
    assert "Sent 1, failed 0, deferred 1, skipped 0" in first.stdout
    assert first.stderr == (
        f"Error: {slug}: 1 message(s) deferred by the server "
        "(run 'newsletter send --due --transport smtp' again later to retry them)\n"
    )
    second = run("send", "--due", "--transport", "smtp")
    assert second.exit_code == 1
    assert ": resuming, 1 message(s) left of 2 (1 sent)\n" in second.stdout
    assert "Sent 0, failed 0, deferred 1, skipped 0" in second.stdout
    assert [envelope.rcpt_tos for envelope in handler.envelopes] == [["kim@example.com"]]


def test_send_due_finishes_an_unfinished_send_past_max_late_only_with_late_ok(
    publication: Path, run, tmp_path: Path
) -> None:
    _import(run, tmp_path, 30)
    at = dt.datetime.now(UTC) - dt.timedelta(hours=30)
    slug = _issue(publication, "slow", _today() - dt.timedelta(days=2), publish_at=_utc(at))
    settings = load_settings(publication)
    issue = next(issue for issue in load_issues(settings) if issue.slug == slug)
    with open_store(settings.database_url) as store:
        sent = _send_part(settings, store, issue, publication / "outbox" / slug, stop_after=5)
    result = run("send", "--due")
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    assert line.startswith("Nothing due at ") and line.endswith(
        f"KST: 0 sent already, 1 unfinished and more than 24 h past its time (the newest: {slug}, {30 - sent} left; "
        f"'newsletter send --due --late-ok' finishes them), {MISSED_SAMPLE}"
    )
    assert len(_files(publication / "outbox" / slug)) == sent
    late = run("send", "--due", "--late-ok")
    assert late.exit_code == 0, late.output
    assert f": resuming, {30 - sent} message(s) left of 30 ({sent} sent)\n" in late.stdout
    assert late.stdout.splitlines()[-1].endswith(f": 1 due (above), 0 sent already, {MISSED_SAMPLE}")
    assert len(_files(publication / "outbox" / slug)) == 30


def test_a_broken_file_holds_back_only_its_own_issue(publication: Path, run) -> None:
    assert run("subscribers", "import", str(REPO / "subscribers" / "example.csv")).exit_code == 0
    at = _utc(dt.datetime.now(UTC) - dt.timedelta(minutes=2))
    good = _issue(publication, "good", _today(), publish_at=at)
    held = _issue(publication, "held", _today(), publish_at=at)
    write_issue(publication, f"{held}.en.md", "---\ntitle: [unclosed\n---\n")  # its translation is broken
    write_issue(publication, "2099-01-01-next.md", "---\ntitle: Next\ndate: 2099-01-02\n---\n")  # a draft half-done
    result = run("send", "--due")
    assert result.exit_code == 1
    assert "Sent 10, failed 0" in result.stdout and f"Due       {good}, " in result.stdout
    assert held not in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert errors == [
        f"Error: issues/{held}.en.md:2: front matter is not valid YAML: while parsing a flow sequence: did not find "
        "expected ',' or ']' (fix the YAML syntax)",
        "Error: issues/2099-01-01-next.md:3: date 2099-01-02 differs from the file name's 2099-01-01 "
        "(make them the same)",
    ], result.stderr
    assert sorted(p.name for p in (publication / "outbox").iterdir()) == [good]


def test_a_dry_run_of_send_due_builds_and_sends_nothing(publication: Path, run) -> None:
    assert run("subscribers", "import", str(REPO / "subscribers" / "example.csv")).exit_code == 0
    slug = _issue(publication, "due", _today(), publish_at=_utc(dt.datetime.now(UTC) - dt.timedelta(minutes=1)))
    result = run("send", "--due", "--dry-run")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"Due       {slug}, ") and lines[0].endswith(
        "starting, 10 message(s) in the ko edition(s)"
    )
    assert lines[1] == "Dry run   built 10 ko message(s); 0 address(es) could not be used; nothing was sent"
    assert re.fullmatch(
        rf"Dry run at .*: 1 due \(above; nothing was sent\), 0 sent already, {re.escape(MISSED_SAMPLE)}", lines[2]
    )
    assert not _files(publication / "outbox" / slug)
    with open_store(load_settings(publication).database_url) as store:
        assert sum(delivery_counts(store, slug).values()) == 0
    assert "Sent 10" in run("send", "--due").stdout


def test_a_due_issue_with_nobody_to_send_to_is_skipped_not_an_error(publication: Path, run) -> None:
    slug = _issue(publication, "lonely", _today(), publish_at=_utc(dt.datetime.now(UTC) - dt.timedelta(minutes=1)))
    result = run("send", "--due", "--yes")  # --yes (as a workflow passes it) is accepted and changes nothing
    assert result.exit_code == 0, result.output
    assert re.match(rf"Skipped   {slug}, .*: nobody to send to \(no active subscribers\)\n", result.stdout)


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ([], "give the ISSUE to send, or --due to send every issue whose time has come"),
        ([SAMPLE, "--due"], "give ISSUE or --due, not both (naming an issue sends it whatever its time)"),
        ([SAMPLE, "--late-ok"], "--late-ok goes with --due (naming an issue sends it whatever its time)"),
        (["--due", "--resend"], "--resend sends one named issue: it does not go with --due"),
        (["--due", "--test", "a@example.com"], "--test sends one named issue: it does not go with --due"),
    ],
)
def test_send_due_usage_mistakes_are_usage_errors(run, args: list[str], problem: str) -> None:
    result = run("send", *args)
    assert result.exit_code == 1
    hint = "" if problem.endswith(")") else " (see 'newsletter send --help')"
    assert result.stderr == f"Error: newsletter send: {problem}{hint}\n"


# ---------------------------------------------------------------- the systemd units


def _units(folder: Path) -> dict[str, Path]:
    """The shipped units, the service rendered as `newsletter init` renders .j2 files (a title with a %)."""
    service = jinja2.Template((DEPLOY / "newsletter-send.service.j2").read_text(encoding="utf-8"))
    context = {
        "title": "Weekly 100% ML",
        "base_url": "https://papers.example.com",
        "app_url": "https://papers.example.com",
        "language": "en",
        "version": "0.1.0",
        "package_spec": "git-newsletter==0.1.0",
    }
    paths = {"service": folder / "newsletter-send.service", "timer": folder / "newsletter-send.timer"}
    paths["service"].write_text(service.render(**context) + "\n", encoding="utf-8")
    shutil.copy(DEPLOY / "newsletter-send.timer", paths["timer"])
    return paths


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",), comment_prefixes=("#", ";"), strict=False)
    parser.optionxform = str  # type: ignore[assignment, method-assign]  # systemd keys are case-sensitive
    parser.read_string(path.read_text(encoding="utf-8"))
    return parser


def test_the_send_units_run_send_due_every_five_minutes_hardened(tmp_path: Path) -> None:
    paths = _units(tmp_path)
    service, timer = _unit(paths["service"]), _unit(paths["timer"])
    assert service.sections() == ["Unit", "Service"] and timer.sections() == ["Unit", "Timer", "Install"]
    run = service["Service"]
    assert run["Type"] == "oneshot"
    assert run["ExecStart"].endswith("/newsletter send --due")
    assert run["EnvironmentFile"] == "/etc/newsletter/newsletter.env"
    assert run["WorkingDirectory"] == "/srv/newsletter"
    assert run["TimeoutStartSec"] == "infinity"
    assert service["Unit"]["Description"] == "Send the issues of Weekly 100%% ML whose time has come"
    for key, value in {
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "UMask": "0077",
    }.items():
        assert run[key] == value, key
    writable = run["ReadWritePaths"].split()
    assert writable == ["-/srv/newsletter/subscribers", "-/srv/newsletter/outbox", "-/srv/newsletter/.cache"]
    assert dict(timer["Timer"]) == {
        "OnCalendar": "*:0/5",
        "Persistent": "true",
        "AccuracySec": "30s",
        "Unit": "newsletter-send.service",
    }
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_systemd_accepts_the_send_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze") or ""
    if not analyze:
        missing_system_package("systemd-analyze is not installed (apt-get install systemd)")
    paths = _units(tmp_path)
    text = paths["service"].read_text(encoding="utf-8")  # verify wants ExecStart's command to exist here
    command = f"{sys.executable} -m newsletter"
    paths["service"].write_text(text.replace("/opt/newsletter/bin/newsletter", command), encoding="utf-8")
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(paths["service"]), str(paths["timer"])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")  # a bad key or value is only a warning
    security = subprocess.run(
        [analyze, "security", "--offline=yes", str(paths["service"])], capture_output=True, text=True, timeout=60
    )
    exposure = float(security.stdout.rsplit("Overall exposure level for", 1)[1].split(":")[1].split()[0])
    assert exposure <= 2.0, security.stdout[-800:]  # systemd's scale: 0 (safe) to 10


def test_the_send_units_command_is_one_the_cli_takes(tmp_path: Path) -> None:
    program, *argv = shlex.split(_unit(_units(tmp_path)["service"])["Service"]["ExecStart"])
    assert program == "/opt/newsletter/bin/newsletter" and argv == ["send", "--due"]
    with click.Context(cli, info_name="newsletter") as root:
        command = cli.get_command(root, argv[0])
        assert isinstance(command, click.Command)
        context = command.make_context(argv[0], argv[1:], parent=root)
    assert context.params["due"] is True
