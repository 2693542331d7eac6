"""The fake SQS of tests/fake_sqs.py behaves as SQS does where `newsletter events` depends on it, through boto3:
a received message is hidden for its visibility timeout and then comes again with a new receipt handle, a delete
with an old handle deletes nothing, a long poll answers as soon as a message arrives, and each answer is late by
the latency."""

from __future__ import annotations

import threading
import time

import boto3
import pytest

from tests.fake_sqs import FakeSqs


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def _client(fake: FakeSqs):
    return boto3.client("sqs", region_name="us-east-1", endpoint_url=fake.endpoint_url)


def test_a_message_comes_again_after_its_visibility_timeout_and_only_the_newest_handle_deletes_it() -> None:
    with FakeSqs() as fake:
        sqs = _client(fake)
        url = sqs.create_queue(QueueName="q")["QueueUrl"]
        assert sqs.get_queue_url(QueueName="q")["QueueUrl"] == url
        sqs.send_message(QueueUrl=url, MessageBody="one")
        first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=1)["Messages"]
        assert [m["Body"] for m in first] == ["one"]
        assert "Messages" not in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)  # hidden
        began = time.monotonic()
        again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=5)["Messages"]
        assert 0.5 < time.monotonic() - began < 3  # when its second ended, not after the whole wait
        assert again[0]["MessageId"] == first[0]["MessageId"] and again[0]["ReceiptHandle"] != first[0]["ReceiptHandle"]
        old = {"Id": "0", "ReceiptHandle": first[0]["ReceiptHandle"]}
        assert sqs.delete_message_batch(QueueUrl=url, Entries=[old])["Successful"] == [{"Id": "0"}]  # as SQS says
        assert fake.snapshot().left == 1 and fake.snapshot().stale_deletes == 1
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": "0", "ReceiptHandle": again[0]["ReceiptHandle"]}])
        stats = fake.snapshot()
    assert stats.left == 0 and stats.deleted == 1 and stats.redelivered == 1


def test_a_long_poll_answers_when_a_message_arrives_and_every_answer_waits_the_latency() -> None:
    with FakeSqs(latency=0.05) as fake:
        sqs = _client(fake)
        url = fake.create_queue("q")
        began = time.monotonic()
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
        assert time.monotonic() - began >= 0.05
        timer = threading.Timer(0.3, fake.load, args=(url, ["late"]))
        timer.start()
        began = time.monotonic()
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=10)["Messages"]
        waited = time.monotonic() - began
        timer.join()
    assert [m["Body"] for m in got] == ["late"]
    assert 0.35 <= waited < 3


def test_a_batch_of_more_than_ten_is_refused_as_sqs_refuses_it() -> None:
    with FakeSqs() as fake:
        sqs = _client(fake)
        url = fake.create_queue("q")
        entries = [{"Id": str(n), "MessageBody": "x"} for n in range(11)]
        with pytest.raises(sqs.exceptions.ClientError, match="TooManyEntriesInBatchRequest"):
            sqs.send_message_batch(QueueUrl=url, Entries=entries)
