"""`newsletter send` end to end: the file transport, SMTP (aiosmtpd) and SES (moto), resume after a stop or a
SIGKILL, unsubscribes during a send, drafts, and the rate limiter."""

from __future__ import annotations

import os
import random
import re
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
import sqlalchemy as sa

from newsletter.config import Settings, load_settings
from newsletter.issues import Issue, find_issue
from newsletter.messages import MessageTemplate
from newsletter.render.templates import load_templates
from newsletter.sending import SendPlan, build_templates, plan_send, send_issue
from newsletter.store import (
    DeliveryState,
    deliveries,
    delivery_counts,
    iter_subscribers,
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
    """What driving plan_send and send_issue directly needs, made once per test."""

    settings: Settings
    issue: Issue
    messages: dict[str, MessageTemplate]


def _prepared(publication: Path) -> _Prepared:
    settings = load_settings(publication)
    issue = find_issue(settings, ISSUE)
    return _Prepared(settings, issue, build_templates(settings, load_templates(settings), issue))


def _plan(prepared: _Prepared, store, transport, **options) -> SendPlan:
    """plan_send of the sample issue with the development secret."""
    settings, issue, messages = prepared
    return plan_send(settings, store, issue, messages, DEVELOPMENT_SECRET.encode(), transport=transport, **options)


def _send(prepared: _Prepared, store, transport, *, rate: float | None = None, stop=None, on_progress=None):
    """plan_send then send_issue of the sample issue, unlimited unless `rate` says."""
    return send_issue(_plan(prepared, store, transport, rate=rate), store, stop=stop, on_progress=on_progress)


def _states(store) -> dict[int, str]:
    """Each subscriber's delivery state for the sample issue."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(deliveries.c.subscriber_id, deliveries.c.state)).all()
    return {row.subscriber_id: row.state for row in rows}


def _in_send_order(store) -> list[int]:
    """The subscribers of the sample issue's send log, in the order the send takes them (delivery id)."""
    with store.engine.connect() as conn:
        return list(conn.execute(sa.select(deliveries.c.subscriber_id).order_by(deliveries.c.id)).scalars())


def test_unsubscribed_never_get_mail_even_mid_send(publication: Path, run) -> None:
    _import(run)
    prepared = _prepared(publication)
    settings, issue, _ = prepared
    with open_store(settings.database_url) as store:
        record_unsubscribe(store, subscriber_by_email(store, "bob.jones@example.com").id, "page")
        late = subscriber_by_email(store, "eun.han@example.com")  # the last in the send order
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
        plan = _plan(prepared, store, transport, rate=20)  # 9 messages over 0.4 s: the last leaves well after
        outcome = send_issue(plan, store, on_progress=lambda p: reported.append(p.done))
        counts = delivery_counts(store, ISSUE)
    names = {p.name for p in _outbox(publication).glob("*.eml")}
    assert plan.total == 9  # bob had left before the snapshot
    assert file_name("bob.jones@example.com") not in names and file_name("eun.han@example.com") not in names
    assert "eun.han@example.com" not in calls
    assert counts["skipped"] == 1 and outcome.progress.skipped == 1 and counts["sent"] == len(names) == 8
    assert reported == list(range(1, 10))  # the progress bar moves for every delivery, the skipped one too


def test_an_unsubscribe_recorded_during_the_rate_limit_wait_is_honoured(publication: Path, run) -> None:
    """The last look at a subscriber is at most LOOK_FRESH old when the message leaves: an unsubscribe recorded
    after the second message was claimed and first looked at, while it waits for its slot, is honoured."""
    from newsletter.send_loop import LOOK_FRESH

    _import(run)
    prepared = _prepared(publication)
    settings, _, _ = prepared
    with open_store(settings.database_url) as store:
        transport = FileTransport(_outbox(publication))
        handed_over: list[str] = []
        original = transport.send
        second: list[str] = []

        def send(message):
            handed_over.append(message.recipient)
            if len(handed_over) == 1:  # the second delivery is claimed and was looked at with the first
                second.append(_in_send_order(store)[1])
                record_unsubscribe(store, second[0], "one-click")
            return original(message)

        transport.send = send
        rate = 1 / (3 * LOOK_FRESH)  # the second slot comes 3 x LOOK_FRESH after the first
        outcome = _send(prepared, store, transport, rate=rate)
        counts = delivery_counts(store, ISSUE)
        states = _states(store)
        gone = next(s for s in iter_subscribers(store) if s.id == second[0])
    assert gone.email not in handed_over and len(handed_over) == 9
    assert not (_outbox(publication) / file_name(gone.email)).exists()
    assert states[gone.id] == DeliveryState.SKIPPED
    assert counts["skipped"] == outcome.progress.skipped == 1 and counts["sent"] == 9


def test_stop_then_resume_sends_the_rest_once(publication: Path, run, tmp_path: Path) -> None:
    _import(run, rows=30, tmp=tmp_path)
    prepared = _prepared(publication)
    settings, issue, _ = prepared
    with open_store(settings.database_url) as store:
        stop = threading.Event()
        transport = FileTransport(_outbox(publication))
        first = _send(prepared, store, transport, stop=stop, on_progress=lambda p: stop.set() if p.sent == 12 else None)
        sent = first.progress.sent
        assert first.stopped == "stopped on request" and 12 <= sent <= 12 + transport.max_in_flight
        counts = delivery_counts(store, ISSUE)
        assert (counts["sent"], counts["pending"], counts["sending"]) == (sent, 30 - sent, 0)
    result = run("send", ISSUE, "--yes")
    assert result.exit_code == 0
    assert f"Resuming  {30 - sent} message(s) left of 30 ({sent} sent)" in result.stdout
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
    assert not (publication / "outbox").exists()  # a dry run leaves nothing behind, not even an empty folder
    test = run("send", ISSUE, "--test", "editor@example.com")
    assert test.stdout == "ko: sent to editor@example.com\nen: sent to editor@example.com\n"
    copies = sorted(_outbox(publication).glob("*.eml"))  # one file per edition: neither overwrites the other
    assert len(copies) == 2
    subjects = {_parse(path)["Subject"] for path in copies}
    assert len(subjects) == 2 and any("Top ML Papers of the Week" in subject for subject in subjects)
    assert "total            0" in run("status", ISSUE).stdout


def _plan_of(output: str) -> dict[str, int]:
    """Recipients per edition, as the plan printed them."""
    return {
        m.group(1): int(m.group(2).replace(",", "")) for m in re.finditer(r"^  (\w+): ([\d,]+) recipient", output, re.M)
    }


def _built(output: str) -> dict[str, int]:
    """Messages per edition, as the dry run said it built them."""
    line = re.search(r"^Dry run   built (.*) message\(s\)", output, re.M)
    assert line, output
    return {lang: int(n.replace(",", "")) for n, lang in (part.split() for part in line.group(1).split(", "))}


def _sent(output: str) -> tuple[int, int]:
    """(sent, skipped) from the summary line."""
    found = re.search(r"^Sent ([\d,]+), failed 0, deferred 0, skipped ([\d,]+)", output, re.M)
    assert found, output
    return int(found.group(1).replace(",", "")), int(found.group(2).replace(",", ""))


def _left_since(output: str) -> int:
    found = re.search(r"([\d,]+) left since the first run", output)
    return int(found.group(1).replace(",", "")) if found else 0


def _agree(run, *options: str) -> int:
    """The plan, the dry run and the send of the same options name the same messages; returns how many."""
    dry = run("send", ISSUE, "--dry-run", *options)
    assert dry.exit_code == 0, dry.output
    planned = _plan_of(dry.stdout)
    assert _built(dry.stdout) == {lang: n for lang, n in planned.items()} | {
        lang: 0 for lang in ("ko", "en") if lang not in planned
    }
    sent = run("send", ISSUE, "--yes", *options)
    assert sent.exit_code == 0, sent.output
    assert _plan_of(sent.stdout) == planned
    # the planned are sent; those the plan said had left since the first run are marked skipped on the way
    assert _sent(sent.stdout) == (sum(planned.values()), _left_since(dry.stdout))
    return sum(planned.values())


def test_the_plan_the_dry_run_and_the_send_agree(publication: Path, run, tmp_path: Path) -> None:
    """Fresh, resumed (with people who joined and left since the first run), --include-new and --resend."""
    _import(run, rows=30, tmp=tmp_path)
    prepared = _prepared(publication)
    settings = prepared.settings
    with open_store(settings.database_url) as store:
        stop = threading.Event()
        first = _send(prepared, store, FileTransport(_outbox(publication)), stop=stop, on_progress=lambda p: stop.set())
        sent_first = first.progress.sent
        unsent = [sid for sid, state in _states(store).items() if state == DeliveryState.PENDING]
        for subscriber_id in unsent[:2]:  # two who had not been mailed yet leave
            record_unsubscribe(store, subscriber_id, "page")
    for n in range(3):  # three join after the first run
        assert run("subscribers", "add", f"late{n}@example.com", "--lang", "en").exit_code == 0
    dry = run("send", ISSUE, "--dry-run")
    assert f"Resuming  {30 - sent_first - 2} message(s) left of 30 ({sent_first} sent)" in dry.stdout
    assert "2 left since the first run" in dry.stdout
    assert "3 joined since the first run (--include-new sends to them)" in dry.stdout
    assert _agree(run) == 30 - sent_first - 2
    files = {p.name for p in _outbox(publication).glob("*.eml")}
    assert not any(file_name(f"late{n}@example.com") in files for n in range(3))
    again = run("send", ISSUE, "--yes")
    assert (
        again.exit_code == 1
        and "pass --resend to send it to everyone again, or --include-new for the 3 who joined since" in again.stderr
    )
    dry_again = run("send", ISSUE, "--dry-run")  # the dry run meets the refusal the send met
    assert dry_again.exit_code == 1 and dry_again.stderr == again.stderr
    newcomers = run("send", ISSUE, "--dry-run", "--include-new")
    assert f"Resuming  0 message(s) left of 30 ({30 - 2} sent), and 3 for those who joined since" in newcomers.stdout
    assert _agree(run, "--include-new") == 3  # only the newcomers: nobody gets it twice
    assert {file_name(f"late{n}@example.com") for n in range(3)} <= {p.name for p in _outbox(publication).glob("*.eml")}
    assert _agree(run, "--resend") == 31  # everyone active again: 33 minus the two who left


@pytest.mark.parametrize("retries", [0, 1])
def test_answers_lost_after_ses_took_the_message_are_counted_and_tried_again_at_most_as_set(
    publication: Path, run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, retries: int
) -> None:
    """Two requests get no answer (the fake takes them, then drops the connection): with ambiguous_retries 1 each
    is tried once more and may arrive twice, with 0 it is left as outcome unknown; the summary says which."""
    from tests.conftest import ses_process_env
    from tests.fake_ses import FakeSes

    _import(run, rows=20, tmp=tmp_path)
    with FakeSes(rate=100, fault=lambda n, _who: "drop" if n in (3, 7) else None, keep_raw=False) as ses:
        for key, value in ses_process_env(ses.endpoint_url, "ambiguous-outcomes-test-secret-0123456789").items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("NEWSLETTER_AMBIGUOUS_RETRIES", str(retries))
        result = run("send", ISSUE, "--yes", "--transport", "ses")
        accepted = ses.snapshot().recipients()
        again = run("send", ISSUE, "--yes", "--transport", "ses")  # a plain run sends nobody twice
        assert ses.sent == sum(accepted.values())
    assert len(accepted) == 20  # everyone has it, the two whose answers were lost included
    twice = sorted(who for who, times in accepted.items() if times > 1)
    assert len(twice) == (2 if retries else 0) and sum(accepted.values()) == 20 + len(twice)
    if retries:
        assert result.exit_code == 0, result.output
        assert "No answer 2 request(s) of this issue got none: 2 recipient(s) may have it twice\n" in result.stdout
        assert again.exit_code == 1 and "was sent already (20 sent, 0 failed) (pass --resend" in again.stderr
    else:
        assert result.exit_code == 1
        assert "Sent 18, failed 0, deferred 0, skipped 0, outcome unknown 2 in " in result.stdout
        assert (
            "No answer 2 request(s) of this issue got none: "
            "2 may have it once or not at all (outcome unknown, not sent again)\n"
        ) in result.stdout
        assert result.stderr.splitlines()[-1].startswith(f"Error: {ISSUE}: 2 message(s) got no answer and are not sent")
        assert again.exit_code == 1 and "(18 sent, 0 failed, 2 outcome unknown)" in again.stderr


def test_a_peer_that_refuses_everything_stops_the_send_in_one_line_and_the_resume_sends_the_rest_once(
    publication: Path, run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SES answers 500 to every request after the fifth: the send stops once it refused 100 in a row and took
    none for 5 s (send_loop.OUTAGE_REFUSALS, OUTAGE_SECONDS), instead of trying each message until it is
    deferred; once SES is back, the same command sends the rest, each once."""
    from newsletter.send_loop import OUTAGE_REFUSALS
    from tests.conftest import ses_process_env
    from tests.fake_ses import FakeSes

    _import(run, rows=200, tmp=tmp_path)
    with FakeSes(rate=500, fault=lambda n, _who: "error" if n > 5 else None, keep_raw=False) as ses:
        for key, value in ses_process_env(ses.endpoint_url, "outage-test-secret-0123456789abcdef").items():
            monkeypatch.setenv(key, value)
        down = run("send", ISSUE, "--yes", "--transport", "ses")
        refused = ses.snapshot()
        ses.fault = None  # SES is back
        back = run("send", ISSUE, "--yes", "--transport", "ses")
        accepted = ses.snapshot().recipients()
    assert down.exit_code == 1
    last = down.stderr.splitlines()[-1]
    found = re.fullmatch(
        r"Error: send: stopped after \d+ of 200: the peer refused the last (?P<refused>[\d,]+) requests and took "
        rf"none for \d+ s \(.*\): it seems down, so the rest wait for a later run \(run 'newsletter send {ISSUE} "
        r"--transport ses' again to resume; \d+ left\)",
        last,
    )
    assert found, last
    assert int(found["refused"].replace(",", "")) >= OUTAGE_REFUSALS and refused.sent == 5
    assert back.exit_code == 0, back.output
    assert len(accepted) == 200 and set(accepted.values()) == {1}  # everyone once


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
    assert "no answer        0 request(s) left and got no answer, for 0 recipient(s)" in shown
    assert (
        "Not sent (2 of 2; failed is for good, deferred is retried by a resumed send, "
        "unknown may have arrived and is not sent again):"
    ) in shown
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


def test_killed_sends_resume_and_everyone_gets_exactly_one(publication: Path, run, tmp_path: Path) -> None:
    """SIGKILL a real `newsletter send` mid-send, several times, then let it finish. Each kill waits for evidence
    (a chosen number of messages written), never for a time: a slow machine only makes the test slower."""
    _import(run, rows=400, tmp=tmp_path)
    assert run("subscribers", "remove", "user7@example.com").exit_code == 0
    settings = load_settings(publication)
    with open_store(settings.database_url) as store:
        record_unsubscribe(store, subscriber_by_email(store, "user8@example.com").id, "page")
    command = [sys.executable, "-m", "newsletter", "--root", str(publication), "send", ISSUE, "--yes", "--rate", "250"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    chooser = random.Random(11)
    kills = []  # (messages written when killed, messages the send log counted as sent)
    outbox = _outbox(publication)

    def written() -> int:
        return len(list(outbox.glob("*.eml"))) if outbox.exists() else 0

    for _ in range(4):
        target = written() + chooser.randint(5, 60)
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        wait_until(
            lambda target=target, process=process: written() >= target or process.poll() is not None,
            seconds=60,
            what="messages written",
        )
        process.send_signal(signal.SIGKILL)
        process.wait()
        with open_store(settings.database_url) as store:
            kills.append((written(), delivery_counts(store, ISSUE)["sent"]))
    assert all(0 < files < 398 for files, _ in kills), kills  # every kill landed mid-send
    with open_store(settings.database_url) as store:
        claimed = delivery_counts(store, ISSUE)["sending"]
    assert claimed  # the killed send held a claimed batch
    shown = run("status", ISSUE).stdout
    assert f"\n{claimed:,} message(s) in 'sending' belong to a send that stopped or was killed; " in shown
    final = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert final.returncode == 0 or "was sent already (398 sent, 0 failed)" in final.stderr, (kills, final.stderr)
    with open_store(settings.database_url) as store:
        counts = delivery_counts(store, ISSUE)
    expected = {file_name(f"user{n}@example.com") for n in range(400) if n not in (7, 8)}
    files = {p.name for p in outbox.glob("*.eml")}
    assert files == expected, kills
    assert not list(outbox.glob(".*.tmp"))
    assert counts["sent"] == 398 and counts[DeliveryState.PENDING] == 0 and counts["sending"] == 0
    for path in list(outbox.glob("*.eml"))[:20]:
        assert _parse(path)["To"].addresses[0].addr_spec in path.name.replace("_at_", "@")


def test_quota_cap_and_a_paused_account_leave_the_rest_resumable(publication: Path, run, ses, tmp_path: Path) -> None:
    import boto3
    from botocore.config import Config

    from newsletter.transports.base import SendQuota
    from newsletter.transports.ses import SesTransport
    from tests.transports.test_ses import FaultProxy

    _import(run, rows=6, tmp=tmp_path)
    prepared = _prepared(publication)
    settings, issue, _ = prepared
    with open_store(settings.database_url) as store:
        capped_transport = FileTransport(_outbox(publication))
        capped_transport.quota = lambda: SendQuota(100.0, 2.0, 0.0)  # two messages left of the day's
        capped_transport.name = "ses"  # a stand-in for SES with its quota: the resume below goes on with SES
        plan = _plan(prepared, store, capped_transport, allow_partial=True)
        capped = send_issue(plan, store)
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
            v1 = boto3.client("ses", region_name="us-east-1", endpoint_url=endpoint)  # moto answers GetSendQuota
            paused = _send(prepared, store, SesTransport(client, v1_client=v1))
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


def test_a_dry_run_of_a_test_send_sends_nothing(publication: Path, run) -> None:
    _import(run)
    result = run("send", ISSUE, "--test", "editor@example.com", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Dry run   built ko, en test copies for editor@example.com; nothing was sent\n"
    assert not (publication / "outbox").exists()


def test_an_outbox_that_cannot_be_made_stops_the_send_in_one_line_and_it_resumes(publication: Path, run) -> None:
    _import(run)
    (publication / "outbox").write_text("not a folder", encoding="utf-8")
    stopped = run("send", ISSUE, "--yes")
    assert stopped.exit_code == 1
    assert stopped.stderr.splitlines()[-1].startswith(
        f"Error: send: stopped after 0 of 10: file: cannot make {publication / 'outbox' / ISSUE}: Not a directory "
        "(check that its parents are folders you can write)"
    ), stopped.stderr
    (publication / "outbox").unlink()
    resumed = run("send", ISSUE, "--yes")
    assert resumed.exit_code == 0, resumed.stderr
    assert len(list(_outbox(publication).glob("*.eml"))) == 10


def test_a_resume_on_another_transport_is_refused_and_the_hint_names_the_first(
    publication: Path, run, ses, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    endpoint, sent = ses
    _import(run, rows=20, tmp=tmp_path)
    prepared = _prepared(publication)
    with open_store(prepared.settings.database_url) as store:
        stop = threading.Event()
        _send(prepared, store, FileTransport(_outbox(publication)), stop=stop, on_progress=lambda p: stop.set())
    monkeypatch.setenv("NEWSLETTER_SES_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "a-real-secret-for-this-test")
    switched = run("send", ISSUE, "--yes", "--transport", "ses")
    assert switched.exit_code == 1 and len(sent) == 0
    assert switched.stderr.endswith(
        f"Error: {ISSUE}: was started with the file transport; this run would use ses "
        "(pass --transport file to go on with it, or --resend to start again)\n"
    )


def test_a_fast_send_ramps_from_its_first_start_not_from_before_its_wait(
    publication: Path, run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A send that must first wait (here for the last window of a sender that just ended) starts its ramp after
    the wait: a ramp begun before it would be over by the first start, which would then go at the full rate."""
    import newsletter.sending as sending
    from newsletter.ratelimit import RateLimiter
    from newsletter.store.senders import finish_sender, register_sender

    _import(run)
    prepared = _prepared(publication)
    happened: list[str] = []
    monkeypatch.setattr(sending, "_wait", lambda stop, seconds: happened.append(f"wait {seconds > 0}") or True)
    real_ramp = RateLimiter.ramp
    monkeypatch.setattr(RateLimiter, "ramp", lambda self, seconds: happened.append("ramp") or real_ramp(self, 0.01))
    with open_store(prepared.settings.database_url) as store:
        ended = register_sender(store, ISSUE, exclusive=True)
        finish_sender(store, ended.sender_id, ISSUE)  # its last starts still count for a window
        outcome = _send(prepared, store, FileTransport(tmp_path / "outbox"), rate=sending.RAMP_ABOVE * 2)
    assert outcome.stopped is None and outcome.progress.sent == 10
    assert happened == ["wait True", "ramp"]
