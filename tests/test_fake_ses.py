"""The fake SES endpoint the benches and send tests rely on, driven by boto3's sesv2 client as the transport is:
what it records, its quota, its strict window, its latency, its faults, and one write per answer."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from tests.conftest import wait_until
from tests.fake_ses import FakeSes, FakeSesProcess

RAW = b"From: weekly@papers.example.com\r\nTo: kim@example.com\r\nSubject: hi\r\n\r\nbody\r\n"


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "fake")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake")


def _client(url: str, pool: int = 10):
    config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, max_pool_connections=pool)
    return boto3.client("sesv2", region_name="us-east-1", endpoint_url=url, config=config)


def _send(client, recipient: str = "kim@example.com") -> dict:
    return client.send_email(
        FromEmailAddress="weekly@papers.example.com",
        Destination={"ToAddresses": [recipient]},
        Content={"Raw": {"Data": RAW}},
        EmailTags=[{"Name": "issue", "Value": "2023-09-25"}, {"Name": "edition", "Value": "ko"}],
    )


def _error(err: ClientError) -> tuple[int, str, str]:
    return (
        err.response["ResponseMetadata"]["HTTPStatusCode"],
        err.response["Error"]["Code"],
        err.response["Error"]["Message"],
    )


def test_send_email_is_recorded_with_its_raw_message_destination_and_tags() -> None:
    with FakeSes() as ses:
        client = _client(ses.endpoint_url)
        before = time.monotonic()
        answer = _send(client)
        after = time.monotonic()
        _send(client, "lee@example.com")
        _send(client, "kim@example.com")
    assert answer["MessageId"]
    first = ses.accepted[0]
    assert (first.recipient, first.raw, first.tags) == (
        "kim@example.com",
        RAW,
        {"issue": "2023-09-25", "edition": "ko"},
    )
    assert before <= first.at <= after
    stats = ses.snapshot()
    assert stats.sent == 3 and stats.throttled == [] and stats.duplicates() == {"kim@example.com": 2}
    assert ses.connections_opened == 1  # boto3 kept the one connection alive


def test_get_account_gives_the_quota_and_counts_what_was_sent() -> None:
    with FakeSes(rate=14, max_24_hour_send=50_000, sent_last_24_hours=100) as ses:
        client = _client(ses.endpoint_url)
        _send(client)
        account = client.get_account()
    assert account["SendQuota"] == {"Max24HourSend": 50_000.0, "MaxSendRate": 14.0, "SentLast24Hours": 101.0}
    assert account["SendingEnabled"] and account["ProductionAccessEnabled"]


def test_the_strict_window_throttles_exactly_the_excess_and_frees_slots_a_second_later() -> None:
    rate, extra = 10, 3
    with FakeSes(rate=rate) as ses:
        client = _client(ses.endpoint_url)
        refused = []
        for n in range(rate + extra):  # back to back: well within one second
            try:
                _send(client, f"r{n}@example.com")
            except ClientError as err:
                refused.append(_error(err))
        assert ses.sent == rate and ses.throttled == extra
        assert refused == [(429, "TooManyRequestsException", "Maximum sending rate exceeded.")] * extra
        first = ses.accepted[0].at
        wait_until(lambda: time.monotonic() > first + 1.0, what="the first arrival to leave the window")
        _send(client, "later@example.com")  # one slot came free
        stats = ses.snapshot()
    assert stats.sent == rate + 1 and len(stats.throttled) == extra
    assert stats.busiest_window() == rate and stats.busiest_window(include_throttled=True) == rate + extra
    assert "r10@example.com" not in stats.recipients()  # a throttled message is not sent


def test_the_window_is_exact_when_requests_arrive_at_once_on_many_connections() -> None:
    rate, threads, each = 20, 8, 8
    with FakeSes(rate=rate) as ses:
        client = _client(ses.endpoint_url, pool=threads)
        barrier = threading.Barrier(threads)

        def burst(n: int) -> None:
            barrier.wait()
            for k in range(each):
                try:
                    _send(client, f"b{n}-{k}@example.com")
                except ClientError:
                    pass

        workers = [threading.Thread(target=burst, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        stats = ses.snapshot()
    span = stats.throttled[-1] - stats.accepted[0][0]
    assert span < 1.0, span  # all within one window, so exactly `rate` could be taken
    assert (stats.sent, len(stats.throttled)) == (rate, threads * each - rate)


def test_latency_is_waited_before_each_answer_and_requests_overlap() -> None:
    with FakeSes(latency=0.2) as ses:
        client = _client(ses.endpoint_url, pool=8)
        started = time.monotonic()
        _send(client)
        one = time.monotonic() - started
        assert one >= 0.2

        started = time.monotonic()
        threads = [threading.Thread(target=_send, args=(client, f"p{n}@example.com")) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        eight = time.monotonic() - started
        assert ses.max_concurrent == 8
        wait_until(lambda: ses.in_flight == 0, what="the handlers to count their answers out")  # just after the write
    assert 0.2 <= eight < 8 * 0.2 / 2, eight  # in flight together, not one after another


def test_without_latency_an_answer_takes_no_40_ms_stall() -> None:
    """Nagle + delayed ACK would hold a second write of each answer for ~40 ms."""
    with FakeSes() as ses:
        client = _client(ses.endpoint_url)
        _send(client)  # the connection is open
        times = []
        for n in range(30):
            started = time.monotonic()
            _send(client, f"q{n}@example.com")
            times.append(time.monotonic() - started)
    assert sorted(times)[len(times) // 2] < 0.02, times


def test_each_answer_arrives_whole_in_one_segment_on_a_kept_alive_connection() -> None:
    with FakeSes(latency=0.05) as ses, socket.create_connection(("127.0.0.1", ses.port)) as sock:
        sock.settimeout(5)
        for _ in range(3):
            sock.sendall(b"GET /v2/email/account HTTP/1.1\r\nHost: fake\r\n\r\n")
            data = sock.recv(65536)  # the first segment that comes; a two-write answer brings only its head
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
            )
            assert head.startswith(b"HTTP/1.1 200 OK") and len(body) == length, data
            assert json.loads(body)["SendQuota"]["MaxSendRate"] > 0
        assert ses.connections_opened == 1


def test_a_lost_answer_is_sent_a_reset_is_sent_and_a_500_is_not() -> None:
    faults = {2: "drop", 3: "error", 4: "reset"}
    with FakeSes(fault=lambda n, _recipient: faults.get(n)) as ses:  # type: ignore[arg-type,return-value]
        client = _client(ses.endpoint_url)
        _send(client, "one@example.com")
        with pytest.raises(ConnectionClosedError):
            _send(client, "two@example.com")
        with pytest.raises(ClientError) as failed:
            _send(client, "three@example.com")
        with pytest.raises((ConnectionClosedError, EndpointConnectionError, ConnectionResetError)):
            _send(client, "four@example.com")
        _send(client, "five@example.com")
        stats = ses.snapshot()
    assert _error(failed.value)[:2] == (500, "InternalFailure")
    assert [who for _, who in stats.accepted] == [f"{n}@example.com" for n in ("one", "two", "four", "five")]
    assert (stats.dropped, stats.errors) == (2, 1)


def test_the_daily_quota_and_a_paused_account_refuse() -> None:
    with FakeSes(max_24_hour_send=2) as ses:
        client = _client(ses.endpoint_url)
        _send(client)
        _send(client)
        with pytest.raises(ClientError) as over:
            _send(client)
        ses.paused = True
        with pytest.raises(ClientError) as paused:
            _send(client)
    assert "Daily message quota exceeded" in _error(over.value)[2]
    assert _error(paused.value)[:2] == (400, "SendingPausedException")
    assert ses.sent == 2


def test_the_fake_in_its_own_process_prints_its_url_and_reports_its_counters() -> None:
    with FakeSesProcess(rate=5, latency=0.01) as ses:
        assert ses.process is not None and ses.process.pid != os.getpid()
        client = _client(ses.endpoint_url)
        for n in range(7):
            try:
                _send(client, f"x{n}@example.com")
            except ClientError:
                pass
        stats = ses.snapshot()
        assert client.get_account()["SendQuota"]["MaxSendRate"] == 5.0
    assert stats.sent == 5 and len(stats.throttled) == 2 and stats.rate() > 0
    assert ses.process.returncode is not None  # it stopped with the block
