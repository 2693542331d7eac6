"""`newsletter events` with concurrent receivers (newsletter/event_queue.py), against the fake SQS of
tests/fake_sqs.py and moto's server, on SQLite and PostgreSQL: every event once in the store whatever the
receivers' interleaving, a repeat counted once, and a message deleted only after its events were committed (a
failed apply, a SIGKILL and a SIGTERM each leave the rest for the next run, which finishes the job; failed
deletes stop the run with one line, and their events count once when the messages come again).

The events are the SES documentation's shapes (tests/test_engagement_events.py), one per SNS notification.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import sqlalchemy as sa

from newsletter.event_queue import poll_queue
from newsletter.store import open_store
from tests.conftest import ses_process_env, wait_until
from tests.fake_sqs import FakeSqs
from tests.sns_peer import TOPIC
from tests.test_engagement_events import ses_events

SECRET_KEY = "event-queue-tests-secret-key-0123456789"


def bodies_of(sets: int, repeat_every: int = 7) -> tuple[list[str], int]:
    """SNS notifications of `sets` messages' events (one of each type SES publishes), every `repeat_every`-th
    delivered twice as SNS does at times; (bodies, the number of distinct events)."""
    bodies: list[str] = []
    distinct = 0
    for n in range(sets):
        for record in ses_events(f"0100018b-q{n:05d}-000000"):
            if "complaint" in record:  # one complaint per message: its own feedbackId
                record = {**record, "complaint": {**record["complaint"], "feedbackId": f"0100018b-c{n:05d}"}}
            body = json.dumps(
                {
                    "Type": "Notification",
                    "MessageId": f"sns-{len(bodies)}",
                    "TopicArn": TOPIC,
                    "Message": json.dumps(record),
                    "Timestamp": "2023-09-25T03:00:00.000Z",
                }
            )
            bodies.append(body)
            distinct += 1
            if distinct % repeat_every == 0:
                bodies.append(body)
    return bodies, distinct


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test credentials for boto3 (the peers check none)."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


class Peer:
    """An SQS endpoint and a boto3 client of it, with what the tests ask of a queue."""

    def __init__(self, name: str, endpoint_url: str, fake: FakeSqs | None = None) -> None:
        self.name, self.endpoint_url, self.fake = name, endpoint_url, fake
        self.client = boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoint_url)

    def queue(self, name: str, bodies: list[str]) -> str:
        url = self.client.create_queue(QueueName=name)["QueueUrl"]
        for start in range(0, len(bodies), 10):
            entries = [{"Id": str(n), "MessageBody": b} for n, b in enumerate(bodies[start : start + 10])]
            self.client.send_message_batch(QueueUrl=url, Entries=entries)
        return url

    def left(self, url: str) -> tuple[int, int]:
        """(visible, in flight) messages of the queue: what was not deleted."""
        got = self.client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return int(got["ApproximateNumberOfMessages"]), int(got["ApproximateNumberOfMessagesNotVisible"])


@pytest.fixture(params=["fake", "moto"])
def peer(request: pytest.FixtureRequest) -> Iterator[Peer]:
    if request.param == "fake":
        with FakeSqs(latency=0.005) as fake:
            yield Peer("fake", fake.endpoint_url, fake)
    else:
        moto_server = request.getfixturevalue("moto_server")
        import requests

        requests.post(f"{moto_server}/moto-api/reset", timeout=10)
        yield Peer("moto", moto_server)


def _events_stored(database_url: str) -> tuple[int, int]:
    """(rows, distinct keys) of the events table."""
    with open_store(database_url) as store, store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one()
        keys = conn.execute(
            sa.text("SELECT count(*) FROM (SELECT DISTINCT feedback_id, email_hash FROM events) AS k")
        ).scalar_one()
    return rows, keys


def _counted(line: str) -> dict[str, int]:
    """'Done: 1 clicks, 2 duplicate, 11 messages' → {'clicks': 1, 'duplicate': 2, 'messages': 11}."""
    counts = {}
    for part in line.split(": ", 1)[1].split(", "):
        number, what = part.split(" ", 1)
        counts[what] = int(number)
    return counts


def _rerun_once(run, monkeypatch: pytest.MonkeyPatch, fake: FakeSqs, database_url: str, url: str) -> tuple[Any, Any]:
    """`newsletter events --once` over what a stopped run left in the queue: its result, and the fake's counters."""
    monkeypatch.setenv("NEWSLETTER_SES_ENDPOINT_URL", fake.endpoint_url)
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", database_url)
    result = run("events", "--queue-url", url, "--once")
    assert result.exit_code == 0, result.stderr
    return result, fake.snapshot()


def test_concurrent_receivers_store_every_event_once(
    peer: Peer, database_url: str, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies, distinct = bodies_of(24)
    url = peer.queue("ses-events", bodies)
    monkeypatch.setenv("NEWSLETTER_SES_ENDPOINT_URL", peer.endpoint_url)
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", database_url)
    result = run("events", "--queue-url", url, "--once", "--receivers", "8")
    assert result.exit_code == 0, result.stderr
    done = _counted(result.stdout.splitlines()[-1])
    assert result.stdout.splitlines()[-1].startswith("Done: ")
    # each message applied (moto's server may hand one message to two concurrent receives: it counts again,
    # as a duplicate), and each distinct event counted once
    assert done["messages"] >= len(bodies)
    assert done["duplicate"] == done["messages"] - distinct
    assert sum(n for what, n in done.items() if what not in {"messages", "duplicate"}) == distinct
    assert _events_stored(database_url) == (distinct, distinct)
    assert peer.left(url) == (0, 0)  # every message deleted after its commit
    if peer.fake is not None:
        stats = peer.fake.snapshot()
        assert stats.received == len(bodies) and stats.redelivered == 0 and stats.deleted == len(bodies)
        assert stats.max_concurrent > 2  # the receives (and deletes) overlapped


def test_a_failed_apply_deletes_only_the_committed_batches_and_a_rerun_applies_the_rest(
    peer: Peer, database_url: str
) -> None:
    bodies, distinct = bodies_of(24)
    url = peer.queue("ses-events", bodies)
    committed: list[int] = []

    def break_the_store_after_two(batch: dict[str, int]) -> None:
        committed.append(batch["messages"])
        if len(committed) == 2:  # the next batch's transaction fails: its table is gone
            with store.engine.begin() as conn:
                conn.execute(sa.text("ALTER TABLE events RENAME TO events_elsewhere"))

    with open_store(database_url) as store:
        with pytest.raises(sa.exc.DBAPIError, match="events"):
            poll_queue(store, peer.client, url, once=True, receivers=4, on_batch=break_the_store_after_two)
        assert len(committed) == 2
        # only the two committed batches were deleted; the rest, the failed batch's too, is made visible again
        # for a rerun at once (not hidden for the 60 s of its receives' visibility timeout). moto's server may hand
        # one message to two concurrent receives, so there a committed batch may have deleted fewer messages.
        rest = len(bodies) - sum(committed)

        def visible_again() -> bool:
            visible, hidden = peer.left(url)
            return hidden == 0 and (visible == rest if peer.fake is not None else rest <= visible <= rest + 2)

        wait_until(visible_again, 10, "the rest to be visible again")
        with store.engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE events_elsewhere RENAME TO events"))
        again = poll_queue(store, peer.client, url, once=True, receivers=4)
    assert again["messages"] == rest if peer.fake is not None else again["messages"] >= rest
    assert _events_stored(database_url) == (distinct, distinct)
    assert peer.left(url) == (0, 0)


def _events_process(publication: Path, fake: FakeSqs, database_url: str, url: str, *args: str) -> subprocess.Popen:
    env = ses_process_env(fake.endpoint_url, SECRET_KEY, database_url)
    command = [sys.executable, "-m", "newsletter", "--root", str(publication), "events", "--queue-url", url, *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _rows(database_url: str) -> int:
    return _events_stored(database_url)[0]


def test_sigkill_mid_run_then_a_rerun_stores_every_event_once(
    publication: Path, database_url: str, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies, distinct = bodies_of(120)
    # a killed process cannot release what it held: those messages come back 1 s after their receive
    with FakeSqs(latency=0.05, visibility_cap=1.0) as fake:
        url = fake.create_queue("ses-events")
        fake.load(url, bodies)
        process = _events_process(publication, fake, database_url, url, "--receivers", "2")
        try:
            wait_until(lambda: _rows(database_url) >= distinct // 4, 60, "a quarter of the events in the store")
        finally:
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=30)
        assert fake.snapshot().left > 0  # killed mid-run
        result, stats = _rerun_once(run, monkeypatch, fake, database_url, url)
    assert _events_stored(database_url) == (distinct, distinct)
    assert stats.left == 0 and stats.deleted == len(bodies)
    # what the killed run committed and had not deleted came again and counted as duplicates, nothing more
    done = _counted(result.stdout.splitlines()[-1])
    assert done["messages"] - done.get("duplicate", 0) == sum(
        n for what, n in done.items() if what not in {"messages", "duplicate"}
    )


def test_sigterm_stops_after_the_batch_in_hand_with_one_line_and_releases_the_rest(
    publication: Path, database_url: str, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies, distinct = bodies_of(120)
    with FakeSqs(latency=0.05) as fake:  # SQS's own 60 s visibility: only a release brings messages back soon
        url = fake.create_queue("ses-events")
        fake.load(url, bodies)
        process = _events_process(publication, fake, database_url, url, "--receivers", "4")
        try:
            wait_until(lambda: _rows(database_url) >= distinct // 4, 60, "a quarter of the events in the store")
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=10)  # a long poll in flight is not waited for
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode == 0, err
        assert err == ""
        last = out.splitlines()[-1]
        assert last.startswith("Stopped by SIGTERM: ") and " messages" in last, out
        assert fake.snapshot().left > 0  # stopped mid-run
        result, stats = _rerun_once(run, monkeypatch, fake, database_url, url)
    assert _events_stored(database_url) == (distinct, distinct)
    assert stats.left == 0 and stats.deleted == len(bodies)
    stopped, done = _counted(last), _counted(result.stdout.splitlines()[-1])
    assert stopped["messages"] + done["messages"] == len(bodies)  # each deleted once: nothing came twice


def test_receivers_out_of_range_is_a_usage_error(run) -> None:
    result = run("events", "--queue-url", "http://127.0.0.1:9/q", "--receivers", "33")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: newsletter events --receivers: 33 is not in the range 1<=x<=32 (see 'newsletter events --help')\n"
    )


def test_a_queue_that_does_not_exist_is_one_line_and_exit_1(run, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeSqs() as fake:
        monkeypatch.setenv("NEWSLETTER_SES_ENDPOINT_URL", fake.endpoint_url)
        url = fake.url_of("no-such-queue")
        result = run("events", "--queue-url", url, "--once")  # 16 receivers, each refused
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: sqs {url}: An error occurred (AWS.SimpleQueueService.NonExistentQueue) when calling the "
        "ReceiveMessage operation (reached max retries: 0): The specified queue does not exist. (check the queue "
        "URL, region and credentials)\n"
    )


def test_failed_deletes_stop_with_one_line_and_their_events_count_once_when_they_come_again(
    database_url: str, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies, distinct = bodies_of(6)
    with FakeSqs(latency=0.005, visibility_cap=1.0) as fake:
        url = fake.create_queue("ses-events")
        fake.load(url, bodies)
        fake.fail_deletes = True
        monkeypatch.setenv("NEWSLETTER_SES_ENDPOINT_URL", fake.endpoint_url)
        monkeypatch.setenv("NEWSLETTER_DATABASE_URL", database_url)
        failed = run("events", "--queue-url", url, "--once")
        assert failed.exit_code == 1
        assert failed.stderr.startswith(f"Error: sqs {url}: An error occurred (InternalError) when calling the ")
        assert failed.stderr.count("\n") == 1
        stored = _events_stored(database_url)
        assert 0 < stored[0] == stored[1]  # the first batch was committed before its delete failed
        assert fake.snapshot().deleted == 0 and fake.snapshot().left == len(bodies)
        fake.fail_deletes = False
        again = run("events", "--queue-url", url, "--once")
        assert again.exit_code == 0, again.stderr
        stats = fake.snapshot()
    assert _events_stored(database_url) == (distinct, distinct)
    done = _counted(again.stdout.splitlines()[-1])
    assert done["messages"] == len(bodies)
    assert done["duplicate"] == len(bodies) - distinct + stored[0]  # what the first run committed counts once
    assert stats.left == 0
