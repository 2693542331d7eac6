"""`newsletter report ISSUE`: the sample issue sent with the file transport, SES events in SES's own JSON shapes
fed through the real events path (parse_notification → apply_events), and every figure checked against what was
fed: duplicates once, tracking only for consenting recipients, "no events yet" before any event, JSON, the HTML
page outside site/, and one-line errors. On SQLite and on PostgreSQL (a schema of its own)."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import Result

from newsletter.events import apply_events, parse_notification
from newsletter.link_tags import issue_tag, paper_tag
from newsletter.markdown import display_width
from newsletter.store import deliveries, open_store, record_unsubscribe, set_tracking_consent, subscriber_by_email

from .conftest import fresh_postgresql

SLUG = "2023-09-25-top-ml-papers"
KO = [f"k{n}@example.com" for n in range(1, 7)]
EN = [f"e{n}@example.com" for n in range(1, 4)]
CONSENTING = ("k1@example.com", "k2@example.com", "e1@example.com")
# The papers' link tags as the sample's emails carry them (link_tags.py)
KO_PAPER_1 = paper_tag("반전의-저주-the-reversal-curse")
KO_PAPER_3 = paper_tag(
    "대규모-언어-모델을-사용한-그래프-신경망-프롬프트-graph-neural-prompting-with-large-language-models"
)
EN_PAPER_1 = "the-reversal-curse"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, publication: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The publication's store: its SQLite file, or an empty PostgreSQL schema of this run's own (set as
    NEWSLETTER_DATABASE_URL, so the commands use it too)."""
    if request.param == "sqlite":
        return f"sqlite:///{publication / 'subscribers' / 'subscribers.db'}"
    url = fresh_postgresql()
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", url)
    return url


@dataclass
class Sent:
    """The sample issue sent to KO and EN; each recipient's message id and edition from the send log."""

    url: str
    run: Callable[..., Result]
    messages: dict[str, tuple[str, str]]  # email → (message id, edition)


@pytest.fixture
def sent(store_url: str, run: Callable[..., Result]) -> Sent:
    for email in KO:
        assert run("subscribers", "add", email).exit_code == 0
    for email in EN:
        assert run("subscribers", "add", email, "--lang", "en").exit_code == 0
    with open_store(store_url) as store:
        for email in CONSENTING:
            subscriber = subscriber_by_email(store, email)
            assert subscriber is not None
            assert set_tracking_consent(store, subscriber.id, True, "preferences page")
    result = run("send", SLUG, "--yes")
    assert result.exit_code == 0, result.output
    with open_store(store_url) as store, store.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT s.email, d.message_id, d.lang FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id "
                "WHERE d.issue = :issue AND d.state = 'sent'"
            ),
            {"issue": SLUG},
        ).all()
    assert len(rows) == len(KO) + len(EN)
    return Sent(store_url, run, {email: (message_id, lang) for email, message_id, lang in rows})


SECOND = dt.timedelta(seconds=1)


def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ses_event(sent: Sent, event_type: str, email: str, at: dt.datetime, **details: Any) -> str:
    """An SNS notification carrying one SES event-publishing record, as the SES documentation's examples have it."""
    message_id, edition = sent.messages[email]
    mail = {
        "timestamp": _stamp(at - 5 * SECOND),
        "source": "papers@papers.example.com",
        "sendingAccountId": "123456789012",
        "messageId": message_id,
        "destination": [email],
        "headersTruncated": False,
        "tags": {
            "ses:configuration-set": ["newsletter"],
            "ses:from-domain": ["papers.example.com"],
            "issue": [issue_tag(SLUG)],
            "edition": [edition],
        },
    }
    when = _stamp(at)
    body: dict[str, Any] = {
        "Send": {},
        "Delivery": {
            "timestamp": when,
            "processingTimeMillis": 1200,
            "recipients": [email],
            "smtpResponse": "250 2.6.0 Message received",
            "reportingMTA": "a8-70.smtp-out.amazonses.com",
        },
        "Open": {"ipAddress": "192.0.2.1", "timestamp": when, "userAgent": "Mozilla/5.0"},
        "Click": {
            "ipAddress": "192.0.2.1",
            "timestamp": when,
            "userAgent": "Mozilla/5.0",
            "link": details.get("link", "https://papers.example.com/issues/2023-09-25-top-ml-papers/"),
            "linkTags": {"paper": [details["paper"]]} if details.get("paper") else {},
        },
        "Bounce": {
            "bounceType": details.get("bounce_type", "Permanent"),
            "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": email, "action": "failed", "status": "5.1.1"}],
            "timestamp": when,
            "feedbackId": f"bounce-{email}",
            "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
        },
        "Complaint": {
            "complainedRecipients": [{"emailAddress": email}],
            "timestamp": when,
            "feedbackId": f"complaint-{email}",
            "complaintFeedbackType": "abuse",
        },
    }[event_type]
    record = {"eventType": event_type, "mail": mail, event_type.lower(): body}
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": f"sns-{event_type}-{email}-{when}",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:newsletter-events",
            "Message": json.dumps(record),
            "Timestamp": when,
        }
    )


def feed(sent: Sent, notifications: list[str]) -> dict[str, int]:
    """Apply the notifications through the events path `newsletter events` uses."""
    with open_store(sent.url) as store:
        return apply_events(store, [event for body in notifications for event in parse_notification(body)])


def everything(sent: Sent) -> list[str]:
    """The events of one send; what the report must then say is in EXPECTED."""
    t0 = dt.datetime.now(dt.UTC)
    notes = [ses_event(sent, "Send", email, t0) for email in KO + EN]
    delivered = ["k1", "k2", "k3", "k4", "k5", "e1", "e2"]
    notes += [ses_event(sent, "Delivery", f"{who}@example.com", t0 + 2 * SECOND) for who in delivered]
    notes += [
        ses_event(sent, "Bounce", "k6@example.com", t0 + 3 * SECOND),
        ses_event(sent, "Bounce", "e3@example.com", t0 + 3 * SECOND, bounce_type="Transient"),
        ses_event(sent, "Complaint", "k5@example.com", t0 + 60 * SECOND),
        ses_event(sent, "Open", "k1@example.com", t0 + 10 * SECOND),
        ses_event(sent, "Open", "k1@example.com", t0 + 90 * SECOND),  # a second open by the same reader
        ses_event(sent, "Open", "k2@example.com", t0 + 11 * SECOND),
        ses_event(sent, "Open", "e1@example.com", t0 + 12 * SECOND),
        ses_event(sent, "Open", "k3@example.com", t0 + 13 * SECOND),  # no consent: never counted
        ses_event(sent, "Click", "k1@example.com", t0 + 20 * SECOND, paper=KO_PAPER_1),
        ses_event(sent, "Click", "k1@example.com", t0 + 95 * SECOND, paper=KO_PAPER_1),
        ses_event(sent, "Click", "k2@example.com", t0 + 21 * SECOND, paper=KO_PAPER_1),
        ses_event(sent, "Click", "k2@example.com", t0 + 22 * SECOND, paper=KO_PAPER_3),
        ses_event(sent, "Click", "e1@example.com", t0 + 23 * SECOND, paper=EN_PAPER_1),
        ses_event(sent, "Click", "e1@example.com", t0 + 24 * SECOND, link="https://papers.example.com/"),  # no paper
        ses_event(sent, "Click", "k3@example.com", t0 + 25 * SECOND, paper=KO_PAPER_1),  # no consent
    ]
    return notes


# edition → figure → value; clicks as {position: (clickers, clicks)}, 0 = links outside the papers
EXPECTED: dict[str, dict[str, Any]] = {
    "ko": {
        "sent": 6,
        "delivered": 5,
        "bounced": {"hard": 1, "soft": 0},
        "complained": 1,
        "rejected": 0,
        "unsubscribed": 1,
        "consenting": 2,
        "opens": {"unique": 2, "total": 3},
        "clicks": {1: (2, 3), 3: (1, 1)},
    },
    "en": {
        "sent": 3,
        "delivered": 2,
        "bounced": {"hard": 0, "soft": 1},
        "complained": 0,
        "rejected": 0,
        "unsubscribed": 0,
        "consenting": 1,
        "opens": {"unique": 1, "total": 1},
        "clicks": {1: (1, 1), 0: (1, 1)},
    },
    "total": {
        "sent": 9,
        "delivered": 7,
        "bounced": {"hard": 1, "soft": 1},
        "complained": 1,
        "rejected": 0,
        "unsubscribed": 1,
        "consenting": 3,
        "opens": {"unique": 3, "total": 4},
        "clicks": {1: (3, 4), 3: (1, 1), 0: (1, 1)},
    },
}


def report_json(sent: Sent) -> dict[str, Any]:
    result = sent.run("report", SLUG, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _check(figures: dict[str, Any], expected: dict[str, Any]) -> None:
    for name in ("sent", "delivered", "bounced", "complained", "rejected", "unsubscribed"):
        assert figures[name] == expected[name], name
    assert figures["tracking"]["consenting"] == expected["consenting"]
    assert figures["tracking"]["opens"] == expected["opens"]
    clicks = {row["position"]: (row["clickers"], row["clicks"]) for row in figures["tracking"]["clicks"]}
    for position, counted in clicks.items():
        assert counted == expected["clicks"].get(position, (0, 0)), f"paper {position}"
    assert set(expected["clicks"]) <= set(clicks)


def test_every_count_equals_the_events_fed_in_and_duplicates_count_once(sent: Sent) -> None:
    with open_store(sent.url) as store:
        k4 = subscriber_by_email(store, "k4@example.com")
        assert k4 is not None and record_unsubscribe(store, k4.id, "one-click")
    notifications = everything(sent)
    feed(sent, notifications)
    first = report_json(sent)
    again = feed(sent, notifications + notifications[:5])  # SQS delivers at least once: all of it again
    assert again.get("duplicate", 0) == len(notifications) + 5
    report = report_json(sent)
    assert {k: v for k, v in report.items() if k != "generated_at"} == {
        k: v for k, v in first.items() if k != "generated_at"
    }
    # the shape README documents
    assert report["format"] == 1
    assert set(report) == {"format", "issue", "title", "generated_at", "events", "editions", "total", "timeline"}
    edition_keys = {"edition", "sent", "first_sent", "last_sent", "delivered", "bounced", "complained", "rejected"}
    assert set(report["total"]) == edition_keys | {"unsubscribed", "tracking"}
    assert set(report["total"]["tracking"]) == {"consenting", "opens", "clicks"}
    assert set(report["total"]["tracking"]["clicks"][0]) == {"position", "paper", "title", "clickers", "clicks"}
    assert set(report["timeline"]) == {"start", "bucket_seconds", "sent", "delivered"}
    editions = {e["edition"]: e for e in report["editions"]}
    assert list(editions) == ["ko", "en"]  # the issue's order: the default language first
    for lang in ("ko", "en"):
        _check(editions[lang], EXPECTED[lang])
    _check(report["total"], EXPECTED["total"])
    assert report["events"]["count"] == len(notifications) - 2  # k3's open and click: no consent, not counted
    titles = [row["title"] for row in editions["en"]["tracking"]["clicks"]]
    assert titles[:2] == ["The Reversal Curse", "Effective Long-Context Scaling of Foundation Models"]  # page order
    assert titles[-1] == "other links"
    timeline = report["timeline"]
    assert sum(timeline["sent"]) == 9 and sum(timeline["delivered"]) == 7


def test_tracking_counts_only_recipients_who_had_consented(sent: Sent) -> None:
    t0 = dt.datetime.now(dt.UTC)
    feed(
        sent,
        [
            ses_event(sent, "Open", email, t0)  # every recipient opens (as if SES tracked them all)
            for email in KO + EN
        ]
        + [ses_event(sent, "Click", email, t0, paper=EN_PAPER_1) for email in EN],
    )
    report = report_json(sent)
    editions = {e["edition"]: e["tracking"] for e in report["editions"]}
    assert editions["ko"]["consenting"] == 2 and editions["ko"]["opens"] == {"unique": 2, "total": 2}
    assert editions["en"]["consenting"] == 1 and editions["en"]["opens"] == {"unique": 1, "total": 1}
    assert editions["en"]["clicks"][0]["clicks"] == 1
    assert all(row["clicks"] == 0 for row in editions["ko"]["clicks"])  # click events came: 0 is a real zero
    assert report["events"]["first_recorded"] is not None  # no send or delivery event: asked of the events
    assert report["total"]["delivered"] is None
    text = sent.run("report", SLUG).stdout
    assert "consenting recipients: 3 of 9" in text


def test_no_events_yet_before_any_event_not_zeros(sent: Sent) -> None:
    result = sent.run("report", SLUG)
    assert result.exit_code == 0, result.output
    assert "No events seen for this issue yet" in result.stdout
    delivered = next(line for line in result.stdout.splitlines() if line.startswith("delivered"))
    assert delivered.split()[1:] == ["no", "events", "yet"] * 3
    report = report_json(sent)
    for figures in (*report["editions"], report["total"]):
        assert figures["delivered"] is None and figures["complained"] is None
        assert figures["bounced"] == {"hard": None, "soft": None}
        assert figures["tracking"]["opens"] == {"unique": None, "total": None}
        assert all(row["clicks"] is None for row in figures["tracking"]["clicks"])
        assert figures["unsubscribed"] == 0  # from the store, not from events: known
    assert report["total"]["sent"] == 9 and report["total"]["tracking"]["consenting"] == 3
    assert report["events"] == {"count": 0, "first_recorded": None, "last_recorded": None, "kinds": []}
    # A bounce alone: delivery stays unknown, bounces and complaints are now counted
    feed(sent, [ses_event(sent, "Bounce", "k6@example.com", dt.datetime.now(dt.UTC))])
    report = report_json(sent)
    assert report["total"]["delivered"] is None
    assert report["total"]["bounced"] == {"hard": 1, "soft": 0} and report["total"]["complained"] == 0
    assert report["events"]["first_recorded"] is not None
    assert "Events seen since" in sent.run("report", SLUG).stdout


def test_the_table_lines_up_in_terminal_columns(sent: Sent) -> None:
    feed(sent, everything(sent))
    text = sent.run("report", SLUG).stdout
    lines = text.splitlines()
    figures = lines[lines.index("") + 1 : lines.index("", lines.index("") + 1)]
    widths = {display_width(line) for line in figures if not line.startswith("tracking")}
    assert len(widths) == 1, figures  # right-aligned columns: every row ends in the same column
    papers = lines[lines.index(next(line for line in lines if line.startswith("Clicks per paper"))) + 1 :]
    assert {display_width(line) for line in papers} == {display_width(papers[0])}, papers
    assert any("반전의 저주" in line and line.rstrip().endswith("3 / 4") for line in papers)


def test_the_html_page_is_written_beside_the_preview_with_its_charts(sent: Sent, publication: Path) -> None:
    feed(sent, everything(sent))
    result = sent.run("report", SLUG, "--html")
    assert result.exit_code == 0, result.output
    page = publication / "preview" / SLUG / "report.html"
    assert page.is_file() and "report.html" in result.stdout
    text = page.read_text(encoding="utf-8")
    assert 'class="bars chart clicks-per-paper"' in text and "<svg" in text and "deliveries-over-time" in text
    assert "반전의 저주 / The Reversal Curse" in text
    assert not re.search(r"<script|<link|src=|url\(", text)  # self-contained: nothing fetched
    assert not (publication / "site").exists() or not list((publication / "site").rglob("report.html"))
    private = publication.parent / "private-reports"
    result = sent.run("report", SLUG, "--html", "--out", str(private), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["issue"] == SLUG  # the "Wrote" line goes to stderr
    assert (private / "report.html").is_file()


@pytest.mark.parametrize(
    ("out", "what"),
    [
        ("site", "is inside the public site/, which anyone can read"),
        ("site/reports", "is inside the public site/, which anyone can read"),
        ("issues", "holds the publication's issues/"),
        ("templates/x", "is inside the publication's templates/"),
        (".", "holds the public site/"),
    ],
)
def test_the_html_page_is_never_written_into_site_or_the_sources(
    sent: Sent, publication: Path, out: str, what: str
) -> None:
    folder = (publication / out).resolve()
    result = sent.run("report", SLUG, "--html", "--out", str(folder))
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: --out {folder}: {what} (write the report into a private folder, such as preview/)\n"
    )
    assert not list(publication.rglob("report.html"))


def test_errors_are_one_line(run: Callable[..., Result], publication: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = run("report", SLUG)  # no store yet: none is made
    database = publication / "subscribers" / "subscribers.db"
    assert missing.exit_code == 1
    assert missing.stderr == (
        f"Error: {database}: no subscriber store here yet (send the issue first: newsletter send {SLUG})\n"
    )
    assert not database.exists()
    unknown = run("report", "2099-01-01-nothing")
    assert unknown.exit_code == 1
    assert unknown.stderr == "Error: 2099-01-01-nothing: no such issue (the newest: 2023-09-25-top-ml-papers)\n"
    assert run("subscribers", "add", "a@example.com").exit_code == 0
    never = run("report", SLUG)
    assert never.exit_code == 1
    assert never.stderr == (
        f"Error: {SLUG}: was never sent: the send log has no message of it (send it first: newsletter send {SLUG})\n"
    )
    database.unlink()
    database.write_text("not a database")
    broken = run("report", SLUG)
    assert broken.exit_code == 1
    assert broken.stderr.startswith(f"Error: {database}: is not a SQLite database (") and broken.stderr.count("\n") == 1
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", f"sqlite:///{publication / 'issues'}")
    folder = run("report", SLUG)
    assert folder.exit_code == 1
    assert folder.stderr == (
        f"Error: {publication / 'issues'}: is a folder, not a SQLite database (check NEWSLETTER_DATABASE_URL)\n"
    )
    usage = run("report", SLUG, "--out", str(publication.parent / "r"))
    assert usage.exit_code == 1 and "--out is for --html" in usage.stderr


def test_report_reads_the_send_log_not_a_second_store(sent: Sent) -> None:
    """The sent figure is the send log's: a message the transport refused is not sent."""
    with open_store(sent.url) as store, store.begin() as conn:
        conn.execute(
            deliveries.update()
            .where(deliveries.c.issue == SLUG, deliveries.c.lang == "en")
            .values(state="failed", error="SMTP 550")
        )
    report = report_json(sent)
    editions = {e["edition"]: e for e in report["editions"]}
    assert editions["en"]["sent"] == 0 and editions["ko"]["sent"] == 6 and report["total"]["sent"] == 6
