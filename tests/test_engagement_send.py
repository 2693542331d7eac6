"""Consent first, end to end: the forms store the choice, the SES request of each message turns tracking on only
for those who consented (what the fake SES received), each paper's links carry their SES link tag; and the
reputation guard pauses a real `newsletter send --transport ses` while bounces are applied, resumably."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
import requests

from newsletter.config import load_settings
from newsletter.events import apply_events, parse_envelope
from newsletter.issues import load_issues
from newsletter.link_tags import paper_tag
from newsletter.store import (
    add_subscriber,
    delivery_counts,
    get_subscriber,
    insert_subscribers,
    open_store,
    set_tracking_consent,
    subscriber_by_email,
    tracking_consent_history,
)
from newsletter.tokens import unsubscribe_token
from tests.conftest import ses_process_env
from tests.fake_ses import FakeSes

ISSUE = "2023-09-25-top-ml-papers"
SECRET_KEY = "engagement-send-tests-secret-key-0123456789"
TRACKED = {"OpenTrackingEnabled": "ENABLED", "ClickTrackingEnabled": "ENABLED"}
UNTRACKED = {"OpenTrackingEnabled": "DISABLED", "ClickTrackingEnabled": "DISABLED"}


def _env(ses: FakeSes) -> dict[str, str]:
    return ses_process_env(ses.endpoint_url, SECRET_KEY)


def _send(publication: Path, ses: FakeSes, **kwargs) -> subprocess.Popen:
    command = [sys.executable, "-m", "newsletter", "--root", str(publication), "send", ISSUE, "--yes"]
    return subprocess.Popen(
        [*command, "--transport", "ses"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(ses),
        **kwargs,
    )


def test_the_forms_store_tracking_consent_with_when_and_how(web) -> None:
    server, store, settings, _ = web
    form = requests.get(f"{server.url}/subscribe", timeout=5).text
    assert 'type="checkbox" name="tracking" value="yes"' in form and "checked" not in form  # off unless ticked
    requests.post(f"{server.url}/subscribe", data={"email": "yes@example.com", "tracking": "yes"}, timeout=5)
    requests.post(f"{server.url}/subscribe", data={"email": "no@example.com"}, timeout=5)
    yes, no = subscriber_by_email(store, "yes@example.com"), subscriber_by_email(store, "no@example.com")
    assert yes.tracking and yes.tracking_consent_how == "subscribe form" and yes.tracking_consent_at is not None
    assert not no.tracking
    kim = add_subscriber(store, "kim@example.com", lang="ko")
    from tests.conftest import WEB_SECRET

    url = f"{server.url}/preferences?token={unsubscribe_token(WEB_SECRET, settings.list_id, kim.id)}"
    assert " checked" not in requests.get(url, timeout=5).text.split('name="tracking"', 1)[1].split(">", 1)[0]
    requests.get(f"{url}&tracking=yes&tracking_shown=yes&action=language&lang=ko", timeout=5)  # GET changes nothing
    assert not get_subscriber(store, kim.id).tracking
    data = {"action": "language", "lang": "ko", "tracking_shown": "yes"}
    requests.post(url, data={**data, "tracking": "yes"}, timeout=5)
    given = get_subscriber(store, kim.id)
    assert given.tracking and given.tracking_consent_how == "preferences page"
    assert 'value="yes" checked' in requests.get(url, timeout=5).text
    requests.post(url, data=data, timeout=5)  # unticked: withdrawn, the withdrawal recorded
    withdrawn = get_subscriber(store, kim.id)
    assert not withdrawn.tracking and withdrawn.tracking_consent_withdrawn_at is not None
    changes = tracking_consent_history(store, kim.id)
    assert [(c.given, c.how) for c in changes] == [(True, "preferences page"), (False, "preferences page")]


def test_the_archive_form_offers_the_tracking_choice_unticked(publication: Path, run) -> None:
    assert run("build").exit_code == 0
    page = (publication / "site" / "index.html").read_text("utf-8")
    assert '<input type="checkbox" name="tracking" value="yes">' in page


def test_tracking_is_on_in_the_ses_request_only_for_who_consented(publication: Path) -> None:
    settings = load_settings(publication)
    with open_store(settings.database_url) as store:
        consenting = {add_subscriber(store, f"yes{n}@example.com", lang="en").id for n in range(3)}
        for n in range(4):
            add_subscriber(store, f"no{n}@example.com", lang="ko")
        for subscriber_id in consenting:
            set_tracking_consent(store, subscriber_id, True, "preferences page")
        withdrawn = add_subscriber(store, "withdrawn@example.com").id
        set_tracking_consent(store, withdrawn, True, "preferences page")
        set_tracking_consent(store, withdrawn, False, "preferences page")
    with FakeSes() as ses:
        result = _send(publication, ses)
        _, stderr = result.communicate(timeout=120)
        accepted = ses.accepted
    assert result.returncode == 0, stderr
    tracking = {item.recipient: item.tracking for item in accepted}
    assert len(tracking) == 8
    assert {who for who, overrides in tracking.items() if overrides == TRACKED} == {
        f"yes{n}@example.com" for n in range(3)
    }
    assert all(overrides in (TRACKED, UNTRACKED) for overrides in tracking.values())
    # each paper's links carry its SES link tag in the HTML that SES received
    first = next(item for item in accepted if item.recipient == "yes0@example.com")
    html = BytesParser(policy=policy.default).parsebytes(first.raw).get_body(("html",)).get_content()
    tagged = set(re.findall(r'<a\b[^>]*\bses:tags="paper:([A-Za-z0-9_-]+);"', html))
    (issue,) = load_issues(settings)
    english = next(e for e in issue.editions if e.lang == "en")
    assert tagged == {paper_tag(section.anchor) for section in english.sections}


# ---------------------------------------------------------------- the reputation guard


def _bounce(message_id: str, email: str, n: int) -> dict:
    """An SES Bounce event as SNS delivers it (the SES documentation's example, for one of our messages)."""
    record = {
        "eventType": "Bounce",
        "bounce": {
            "feedbackId": f"0100018b-bounce-{n}-000000",
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {"emailAddress": email, "action": "failed", "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1"}
            ],
            "timestamp": "2023-09-25T01:00:05.000Z",
            "reportingMTA": "dsn; e226-55.smtp-out.us-east-1.amazonses.com",
        },
        "mail": {
            "timestamp": "2023-09-25T01:00:00.000Z",
            "source": "weekly@papers.example.com",
            "messageId": message_id,
            "destination": [email],
            "tags": {"ses:configuration-set": ["newsletter"], "issue": [ISSUE], "edition": ["ko"]},
        },
    }
    return {"Type": "Notification", "MessageId": f"sns-{n}", "Message": json.dumps(record)}


class Bouncer:
    """Applies a permanent bounce for each accepted message to a `bad` address, as `newsletter events` would,
    from a thread while the send runs."""

    def __init__(self, ses: FakeSes, database_url: str) -> None:
        self.ses, self.database_url = ses, database_url
        self.done = threading.Event()
        self.applied = 0
        self.seen: set[str] = set()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with open_store(self.database_url) as store:
            while not self.done.wait(0.05):
                fresh = [a for a in self.ses.accepted if a.message_id not in self.seen]
                events = []
                for item in fresh:
                    self.seen.add(item.message_id)
                    if item.recipient.startswith("bad"):
                        events += parse_envelope(_bounce(item.message_id, item.recipient, len(self.seen)))
                if events:
                    apply_events(store, events)
                    self.applied += len(events)

    def __enter__(self) -> Bouncer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(timeout=10)


def test_the_guard_pauses_a_send_whose_bounces_pass_the_threshold_and_the_same_command_resumes(
    publication: Path,
) -> None:
    with (publication / "pyproject.toml").open("a", encoding="utf-8") as config:
        config.write("\n[tool.newsletter.ses]\nmax_in_flight = 8\n")
    text = (publication / "pyproject.toml").read_text("utf-8")
    text = text.replace("[tool.newsletter]\n", '[tool.newsletter]\nguard_minimum = 100\nmax_bounce_rate = "5 %"\n', 1)
    (publication / "pyproject.toml").write_text(text, "utf-8")
    settings = load_settings(publication)
    count = 800  # every tenth address bounces: 10 % against 5 %
    rows = [{"email": f"{'bad' if n % 10 == 0 else 'ok'}{n}@example.com", "lang": "ko"} for n in range(count)]
    with open_store(settings.database_url) as store:
        insert_subscribers(store, rows, source="test")
    with FakeSes(rate=100, latency=0.02, keep_raw=False) as ses:
        with Bouncer(ses, settings.database_url) as bouncer:
            paused = _send(publication, ses)
            _, stderr = paused.communicate(timeout=120)
        sent_before = ses.sent
        assert bouncer.applied > 0
        assert paused.returncode == 1, stderr
        last = stderr.strip().splitlines()[-1]
        assert re.fullmatch(
            r"Error: send: paused: [0-9.]+ % of [0-9,]+ messages bounced \(over max_bounce_rate 5 %\) "
            r"\(check the list's source.*, then run 'newsletter send 2023-09-25-top-ml-papers --transport ses' to resume "
            r"\([0-9,]+ left\), or raise max_bounce_rate\)",
            last,
        ), last
        assert stderr.count("Error: ") == 1 and "Traceback" not in stderr, stderr
        with open_store(settings.database_url) as store:
            counts = delivery_counts(store, ISSUE)
        assert counts["sent"] == sent_before < count  # paused early; the send log says what left
        assert counts["pending"] == count - sent_before and counts["failed"] == counts["sending"] == 0
        # the list's source checked (no more bounces come): the same command goes on from where it paused
        resumed = _send(publication, ses)
        _, stderr = resumed.communicate(timeout=120)
        stats = ses.snapshot()
    assert resumed.returncode == 0, stderr
    with open_store(settings.database_url) as store:
        counts = delivery_counts(store, ISSUE)
        bounced = sum(
            1 for n in range(0, count, 10) if subscriber_by_email(store, f"bad{n}@example.com").status == "bounced"
        )
    assert stats.duplicates() == {}  # nobody got it twice
    assert counts["sent"] + counts["skipped"] == count
    assert bounced == bouncer.applied


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('"150 %"', '150 % is not above 0 and at most 100 % (use "5 %")'),
        ('"five"', "'five' is not a percentage (write it like max_bounce_rate = \"5 %\")"),
        ("0", '0 % is not above 0 and at most 100 % (use "5 %")'),
        ("true", 'is true or false, not a percentage (write it like max_bounce_rate = "5 %")'),
    ],
)
def test_a_wrong_guard_threshold_is_one_line(publication: Path, value: str, problem: str) -> None:
    from newsletter.errors import ConfigError

    text = (publication / "pyproject.toml").read_text("utf-8")
    (publication / "pyproject.toml").write_text(
        text.replace("[tool.newsletter]\n", f"[tool.newsletter]\nmax_bounce_rate = {value}\n", 1), "utf-8"
    )
    with pytest.raises(ConfigError) as refused:
        load_settings(publication)
    assert str(refused.value) == f"pyproject.toml [tool.newsletter] max_bounce_rate: {problem}"


def test_the_guard_thresholds_are_read_as_percentages(publication: Path) -> None:
    settings = load_settings(publication)
    assert (settings.max_bounce_rate, settings.max_complaint_rate, settings.guard_minimum) == (0.05, 0.001, 200)
    text = (publication / "pyproject.toml").read_text("utf-8")
    extra = '[tool.newsletter]\nmax_bounce_rate = 2.5\nmax_complaint_rate = "0.05%"\nguard_minimum = 1000\n'
    (publication / "pyproject.toml").write_text(text.replace("[tool.newsletter]\n", extra, 1), "utf-8")
    settings = load_settings(publication)
    assert (settings.max_bounce_rate, settings.max_complaint_rate, settings.guard_minimum) == (0.025, 0.0005, 1000)


def test_the_guard_judges_this_runs_share_of_bounces_and_complaints_over_its_minimum() -> None:
    from newsletter.reputation import ReputationGuard
    from newsletter.store import SendFeedback

    counts = [SendFeedback(1_000, 200, 0)]  # an earlier run's history: not this run's to answer for
    guard = ReputationGuard(lambda: counts[0], 0.05, 0.001, 200)
    guard.start()
    counts[0] = SendFeedback(1_199, 230, 0)  # 199 sent: under the minimum, however many bounced
    assert guard.check() is None
    counts[0] = SendFeedback(1_500, 210, 0)  # 10 of 500: 2 %
    assert guard.check() is None
    counts[0] = SendFeedback(1_500, 210, 1)  # 1 complaint of 500: 0.2 % against 0.1 %
    pause = guard.check()
    assert pause is not None and pause.setting == "max_complaint_rate"
    assert pause.reason == "paused: 0.2 % of 500 messages drew a complaint (over max_complaint_rate 0.1 %)"
    counts[0] = SendFeedback(1_500, 231, 1)  # 31 of 500: 6.2 %; bounces are said first
    pause = guard.check()
    assert pause is not None and pause.reason == "paused: 6.2 % of 500 messages bounced (over max_bounce_rate 5 %)"
