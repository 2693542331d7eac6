"""Every SES event type, in the shapes of the SES documentation's examples (event publishing, and the identity
notifications' dialect), through moto's SNS → SQS and `newsletter events`, and through POST /ses/notifications:
attributed to issue and edition by mail.tags, a click to its paper by its link tag, a repeat counted once."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
import sqlalchemy as sa

from newsletter.config import load_settings
from newsletter.store import SubscriberStatus, add_subscriber, open_store, subscriber_by_email
from tests.sns_peer import TOPIC, SnsPeer
from tests.test_sns import SnsSite, configure_topics

ISSUE = "2023-09-25-top-ml-papers"
WHO = "recipient@example.com"


def _mail(message_id: str, edition: str = "en") -> dict:
    """The `mail` object SES publishes, with the tags our transport sends (EmailTags issue, edition)."""
    return {
        "timestamp": "2023-09-25T01:00:00.000Z",
        "source": "weekly@papers.example.com",
        "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/papers.example.com",
        "sendingAccountId": "123456789012",
        "messageId": message_id,
        "destination": [WHO],
        "headersTruncated": False,
        "commonHeaders": {"from": ["weekly@papers.example.com"], "to": [WHO], "subject": "Top ML papers"},
        "tags": {
            "ses:configuration-set": ["newsletter"],
            "ses:source-ip": ["192.0.2.0"],
            "ses:from-domain": ["papers.example.com"],
            "ses:caller-identity": ["newsletter"],
            "issue": [ISSUE],
            "edition": [edition],
        },
    }


def ses_events(message_id: str = "0100018b-m1-000000") -> list[dict]:
    """One of each event type SES publishes, as its documentation's examples show them."""
    mail = _mail(message_id)
    return [
        {"eventType": "Send", "mail": mail, "send": {}},
        {
            "eventType": "Delivery",
            "mail": mail,
            "delivery": {
                "timestamp": "2023-09-25T01:00:02.000Z",
                "processingTimeMillis": 1893,
                "recipients": [WHO],
                "smtpResponse": "250 2.6.0 Message received",
                "reportingMTA": "a8-70.smtp-out.amazonses.com",
            },
        },
        {
            "eventType": "Open",
            "mail": mail,
            "open": {"ipAddress": "192.0.2.1", "timestamp": "2023-09-25T02:00:00.000Z", "userAgent": "Mozilla/5.0"},
        },
        {
            "eventType": "Click",
            "mail": mail,
            "click": {
                "ipAddress": "192.0.2.1",
                "link": "https://arxiv.org/abs/2309.12288",
                "linkTags": {"paper": ["the-reversal-curse"]},
                "timestamp": "2023-09-25T02:00:10.000Z",
                "userAgent": "Mozilla/5.0",
            },
        },
        {
            "eventType": "DeliveryDelay",
            "mail": mail,
            "deliveryDelay": {
                "timestamp": "2023-09-25T01:10:00.000Z",
                "delayType": "TransientCommunicationFailure",
                "expirationTime": "2023-09-25T02:00:00.000Z",
                "delayedRecipients": [
                    {"emailAddress": WHO, "status": "4.4.1", "diagnosticCode": "smtp; 421 4.4.0 Unable to connect"}
                ],
            },
        },
        {"eventType": "Reject", "mail": _mail(message_id + "-r"), "reject": {"reason": "Bad content"}},
        {
            "eventType": "RenderingFailure",
            "mail": _mail(message_id + "-f"),
            "failure": {"errorMessage": "Attribute 'name' is not present in the rendering data.", "templateName": "T"},
        },
        {
            "eventType": "Complaint",
            "mail": mail,
            "complaint": {
                "feedbackId": "0100018b-complaint-000000",
                "complaintSubType": None,
                "complainedRecipients": [{"emailAddress": WHO}],
                "timestamp": "2023-09-25T03:00:00.000Z",
                "userAgent": "Yahoo!-Mail-Feedback/2.0",
                "complaintFeedbackType": "abuse",
            },
        },
        {  # the identity notifications' dialect: notificationType, no tags
            "notificationType": "Delivery",
            "mail": {"timestamp": "2023-09-25T01:00:00.000Z", "messageId": message_id + "-n", "destination": [WHO]},
            "delivery": {"timestamp": "2023-09-25T01:00:03.000Z", "recipients": [WHO], "smtpResponse": "250 ok"},
        },
    ]


EXPECTED_ROWS = {
    ("send", ISSUE, "en", None, None),
    ("delivery", ISSUE, "en", None, None),
    ("open", ISSUE, "en", None, None),
    ("click", ISSUE, "en", "https://arxiv.org/abs/2309.12288", "the-reversal-curse"),
    ("delivery-delay", ISSUE, "en", None, None),
    ("reject", ISSUE, "en", None, None),
    ("rendering-failure", ISSUE, "en", None, None),
    ("complaint", ISSUE, "en", None, None),
    ("delivery", None, None, None, None),
}


def _rows(database_url: str) -> set[tuple]:
    with open_store(database_url) as store, store.engine.connect() as conn:
        return {tuple(r) for r in conn.execute(sa.text("SELECT kind, issue, edition, link, paper FROM events"))}


def test_every_event_type_through_moto_sns_and_sqs_is_recorded_once(
    publication: Path, run, ses, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, _ = ses
    monkeypatch.setenv("NEWSLETTER_SES_ENDPOINT_URL", endpoint)
    settings = load_settings(publication)
    with open_store(settings.database_url) as store:
        add_subscriber(store, WHO)
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoint)
    sns = boto3.client("sns", region_name="us-east-1", endpoint_url=endpoint)
    queue = sqs.create_queue(QueueName="ses-engagement")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic = sns.create_topic(Name="ses-engagement")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    records = ses_events()
    for record in [*records, records[1], records[3]]:  # SNS delivers a delivery and a click twice
        sns.publish(TopicArn=topic, Message=json.dumps(record))
    result = run("events", "--queue-url", queue, "--once")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        "Done: 1 clicks, 1 complained, 1 delays, 2 deliveries, 2 duplicate, 11 messages, 1 opens, 1 rejects, "
        "1 rendering failures, 1 sends"
    )
    assert _rows(settings.database_url) == EXPECTED_ROWS
    with open_store(settings.database_url) as store:  # the complaint suppresses as before
        assert subscriber_by_email(store, WHO).status == SubscriberStatus.COMPLAINED
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0"  # each deleted after the commit


def test_every_event_type_through_the_sns_http_endpoint_is_recorded_once(
    publication: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "a-test-secret-that-is-long-enough")
    configure_topics(publication, f'"{TOPIC}"')
    peer = SnsPeer()
    site = SnsSite(publication, peer)
    try:
        add_subscriber(site.store, WHO)
        records = ses_events("0100018b-h1-000000")
        for record in [*records, records[2]]:  # an open delivered twice
            assert site.post(peer.notification(record)).status_code == 200
        with site.store.engine.connect() as conn:
            counted = conn.execute(sa.text("SELECT count(*) FROM events WHERE kind = 'open'")).scalar_one()
    finally:
        site.close()
    assert counted == 1
    assert _rows(site.settings.database_url) == EXPECTED_ROWS


@pytest.mark.parametrize(
    "broken",
    [
        {"eventType": "Click", "mail": _mail("m"), "click": {"link": "x" * 2001}},
        {"eventType": "Open", "mail": {**_mail("m"), "tags": {"issue": "not-a-list"}}, "open": {}},
        {"eventType": "Delivery", "mail": _mail("m"), "delivery": {"recipients": "someone@example.com"}},
        {"eventType": "Send", "mail": {**_mail("m"), "messageId": None}, "send": {}},
        {"eventType": "Click", "mail": _mail("m"), "click": {"linkTags": {"paper": [7]}}},
    ],
)
def test_a_record_of_the_wrong_shape_is_refused_whole(broken: dict) -> None:
    from newsletter.events import NotificationError, parse_ses_record

    with pytest.raises(NotificationError):
        parse_ses_record(broken)
