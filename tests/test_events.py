"""SES bounces and complaints from SQS through moto's server over HTTP (`newsletter events`); the SNS HTTP
endpoint is tested in test_sns.py, hostile payloads of both in test_events_fuzz.py."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from newsletter.config import load_settings
from newsletter.store import SubscriberStatus, add_subscriber, open_store, subscriber_by_email
from tests.sns_peer import OTHER_TOPIC, TOPIC

BOUNCE = {
    "eventType": "Bounce",
    "mail": {"messageId": "m-1", "tags": {"issue": ["2023-09-25-top-ml-papers"]}},
    "bounce": {
        "bounceType": "Permanent",
        "bounceSubType": "General",
        "feedbackId": "fb-1",
        "timestamp": "2023-09-25T01:00:00.000Z",
        "bouncedRecipients": [{"emailAddress": "gone@example.com", "status": "5.1.1"}],
    },
}


def _transient(n: int) -> dict:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Transient",
            "bounceSubType": "MailboxFull",
            "feedbackId": f"fb-t{n}",
            "bouncedRecipients": [{"emailAddress": "full@example.com"}],
        },
    }


COMPLAINT = {
    "notificationType": "Complaint",
    "complaint": {
        "feedbackId": "fb-c",
        "complaintFeedbackType": "abuse",
        "complainedRecipients": [{"emailAddress": "angry@example.com"}],
    },
}


def _sns_envelope(record: dict | str, topic: str = TOPIC) -> str:
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": "x",
            "TopicArn": topic,
            "Message": record if isinstance(record, str) else json.dumps(record),
            "Timestamp": "2023-09-25T01:00:00.000Z",
        }
    )


def test_events_from_sqs_suppress_addresses(publication: Path, run, ses, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint, _ = ses
    monkeypatch.setenv("NEWSLETTER_SES_ENDPOINT_URL", endpoint)
    settings = load_settings(publication)
    with open_store(settings.database_url) as store:
        for email in ("gone@example.com", "full@example.com", "angry@example.com", "fine@example.com"):
            add_subscriber(store, email)
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoint)
    queue = sqs.create_queue(QueueName="ses-events")["QueueUrl"]
    bodies = [
        _sns_envelope(BOUNCE),
        _sns_envelope(BOUNCE),  # SNS delivers twice at times
        *[_sns_envelope(_transient(n)) for n in range(3)],
        json.dumps(COMPLAINT),  # raw message delivery
        "this is not JSON",
    ]
    for body in bodies:
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    result = run("events", "--queue-url", queue, "--once")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        "Done: 2 bounced, 1 complained, 2 counted, 1 duplicate, 6 messages, 1 unreadable"
    )
    with open_store(settings.database_url) as store:
        status = {
            e: subscriber_by_email(store, e).status
            for e in ("gone@example.com", "full@example.com", "angry@example.com", "fine@example.com")
        }
        assert subscriber_by_email(store, "full@example.com").bounce_count == 3
    assert status == {
        "gone@example.com": SubscriberStatus.BOUNCED,
        "full@example.com": SubscriberStatus.BOUNCED,
        "angry@example.com": SubscriberStatus.COMPLAINED,
        "fine@example.com": SubscriberStatus.ACTIVE,
    }
    # the unreadable message stays for the dead-letter queue; the others were deleted after the commit
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert (
        int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"]) == 1
    )
    # bounced and complained addresses are never mailed again
    assert run("send", "2023-09-25-top-ml-papers", "--dry-run").stdout.count("built 1 ko") == 1


POISON = [  # each once made `newsletter events` crash with a traceback
    {**BOUNCE, "bounce": {**BOUNCE["bounce"], "bouncedRecipients": "gone@example.com"}},
    {**BOUNCE, "bounce": {**BOUNCE["bounce"], "bouncedRecipients": [{"emailAddress": 42}]}},
    {**BOUNCE, "bounce": {**BOUNCE["bounce"], "feedbackId": {"id": 1}}},
    {**BOUNCE, "bounce": ["Permanent"]},
    {**BOUNCE, "mail": "m-1", "bounce": {**BOUNCE["bounce"], "feedbackId": None}},
    {**COMPLAINT, "complaint": {**COMPLAINT["complaint"], "complainedRecipients": ["angry@example.com"]}},
    {**BOUNCE, "bounce": {**BOUNCE["bounce"], "feedbackId": "f" * 201}},  # longer than the store's column
    {**BOUNCE, "bounce": {**BOUNCE["bounce"], "bouncedRecipients": [{"emailAddress": "gone@example.com\x00"}]}},
    {**BOUNCE, "bounce": {**BOUNCE["bounce"], "bouncedRecipients": [{"emailAddress": "gone\ud800@example.com"}]}},
]


@pytest.mark.parametrize("topic_arn", ["", TOPIC])
def test_poisoned_and_foreign_queue_messages_stay_in_the_queue(
    publication: Path, run, ses, monkeypatch: pytest.MonkeyPatch, topic_arn: str
) -> None:
    endpoint, _ = ses
    monkeypatch.setenv("NEWSLETTER_SES_ENDPOINT_URL", endpoint)
    if topic_arn:
        path = publication / "pyproject.toml"
        path.write_text(path.read_text("utf-8") + f'\n[tool.newsletter.ses]\ntopic_arn = "{topic_arn}"\n', "utf-8")
    settings = load_settings(publication)
    with open_store(settings.database_url) as store:
        for email in ("gone@example.com", "angry@example.com"):
            add_subscriber(store, email)
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoint)
    queue = sqs.create_queue(QueueName="ses-events")["QueueUrl"]
    bodies = [
        *(_sns_envelope(record) for record in POISON),
        *(json.dumps(record) for record in POISON),  # raw message delivery
        _sns_envelope(json.dumps([BOUNCE])),  # a Message that is JSON, but a list
        _sns_envelope("[" * 100_000),  # nested deeper than the JSON parser goes
        _sns_envelope(COMPLAINT, topic=OTHER_TOPIC),  # someone else's topic
    ]
    for body in bodies:
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    result = run("events", "--queue-url", queue, "--once")
    assert result.exit_code == 0, result.stderr
    unreadable = 2 * len(POISON) + 2
    # without a topic the queue's access policy is the only guard, so the other topic's complaint is applied
    expected = (
        f"1 refused, {unreadable} unreadable" if topic_arn else f"1 complained, 1 messages, {unreadable} unreadable"
    )
    assert result.stdout.splitlines()[-1] == f"Done: {expected}"
    with open_store(settings.database_url) as store:
        assert subscriber_by_email(store, "gone@example.com").status == SubscriberStatus.ACTIVE
        assert subscriber_by_email(store, "angry@example.com").status == (
            SubscriberStatus.ACTIVE if topic_arn else SubscriberStatus.COMPLAINED
        )
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    left = int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])
    assert left == len(bodies) - (0 if topic_arn else 1)


def test_a_second_bounce_or_complaint_for_a_suppressed_address_changes_nothing(store) -> None:
    from newsletter.events import apply_events, parse_ses_record

    add_subscriber(store, "gone@example.com")
    again = {**BOUNCE, "bounce": {**BOUNCE["bounce"], "feedbackId": "fb-2"}}  # another send, another bounce
    complaint = {
        **COMPLAINT,
        "complaint": {**COMPLAINT["complaint"], "complainedRecipients": BOUNCE["bounce"]["bouncedRecipients"]},
    }
    outcomes = [dict(apply_events(store, parse_ses_record(record))) for record in (BOUNCE, again, complaint)]
    assert outcomes == [{"bounced": 1}, {"already suppressed": 1}, {"already suppressed": 1}]
    assert subscriber_by_email(store, "gone@example.com").status == SubscriberStatus.BOUNCED
