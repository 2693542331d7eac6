"""`newsletter events`' rate: SES events (SNS-wrapped, one per SQS message, as SES publishes them) read from SQS
and applied to SQLite and to PostgreSQL, by poll_queue, the loop `newsletter events` runs.

Per store, in one run:
- through the fake SQS of tests/fake_sqs.py in its own process, each API answer `--latency` late (SQS in its
  region answers in 10-50 ms): the queue loaded first (not timed), then drained as `newsletter events --once`
  does, with `--receivers` threads (the default) and with 1 (before concurrent receivers: the ratio);
- through moto's SQS server (its own process), fed while it drains to keep it about DEPTH deep (moto's
  ReceiveMessage scans its whole queue for each message it gives, so a full queue measures moto, not us);
- the apply side alone: the same bodies from an in-memory queue with no round trip (parsing, the transaction):
  the ceiling of what `newsletter events` itself can do.
Each rate counts the events applied up to the last commit (the receivers' last empty long poll, 1 s, is not in
it). The events are a send's mix: per message a Send and a Delivery, some opens and clicks, a few bounces, and 2 %
of the messages delivered twice by SNS. Target: >= 2,000 events/s on each store.

    python bench/events.py [--events 20000] [--latency 0.03] [--receivers 8] [--database-url postgresql://…]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, machine_load  # noqa: E402

TARGET = 2_000  # events per second
ISSUE = "2023-09-25-top-ml-papers"
DEPTH = 200  # messages the moto feeder keeps in the queue ahead of what was applied


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen, str]:
    """moto's standalone server as a process of its own (its work is not this process's)."""
    import urllib.request

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            return process, url
        except OSError:
            time.sleep(0.1)  # the server process is starting: nothing else to wait on
    process.kill()
    raise SystemExit("Error: bench: moto's server did not start within 30 s (check that moto[server] is installed)")


def records(count: int) -> list[str]:
    """`count` SNS envelopes of SES events for subscribers reader{n}@example.com."""
    bodies: list[str] = []
    n = 0
    while len(bodies) < count:
        who = f"reader{n}@example.com"
        mail = {
            "timestamp": "2023-09-25T01:00:00.000Z",
            "messageId": f"0100018b{n:08x}-bench-000000",
            "destination": [who],
            "tags": {"issue": [ISSUE], "edition": ["ko"], "ses:configuration-set": ["newsletter"]},
        }
        kinds: list[dict] = [
            {"eventType": "Send", "mail": mail, "send": {}},
            {
                "eventType": "Delivery",
                "mail": mail,
                "delivery": {"timestamp": "2023-09-25T01:00:02.000Z", "recipients": [who], "smtpResponse": "250"},
            },
        ]
        if n % 3 == 0:
            kinds.append({"eventType": "Open", "mail": mail, "open": {"timestamp": "2023-09-25T02:00:00.000Z"}})
        if n % 5 == 0:
            click = {"link": "https://arxiv.org/abs/2309.12288", "linkTags": {"paper": ["the-reversal-curse"]}}
            kinds.append({"eventType": "Click", "mail": mail, "click": {**click, "timestamp": "2023-09-25T02:01:00Z"}})
        if n % 40 == 0:
            bounce = {"bounceType": "Permanent", "feedbackId": f"fb-{n}", "bouncedRecipients": [{"emailAddress": who}]}
            kinds.append({"eventType": "Bounce", "mail": mail, "bounce": bounce})
        for record in kinds:
            body = json.dumps(
                {"Type": "Notification", "MessageId": f"sns-{len(bodies)}", "Message": json.dumps(record)}
            )
            bodies.append(body)
            if len(bodies) % 50 == 0:
                bodies.append(body)  # SNS delivers some twice
        n += 1
    return bodies[:count]


class Clock:
    """poll_queue's on_batch: the totals and when the last batch was committed; `done` says when to stop."""

    def __init__(self, expected: int | None = None) -> None:
        self.totals: collections.Counter[str] = collections.Counter()
        self.last = 0.0
        self.expected = expected
        self.stop = threading.Event()
        self.applied = threading.Condition()

    def on_batch(self, batch: dict[str, int]) -> None:
        with self.applied:
            self.totals.update(batch)
            self.last = time.perf_counter()
            self.applied.notify_all()
        if self.expected is not None and self.done >= self.expected:
            self.stop.set()

    @property
    def done(self) -> int:
        return sum(self.totals.get(key, 0) for key in ("messages", "unreadable", "refused"))


class Feeder(threading.Thread):
    """Publishes the bodies into moto's queue as SNS would, while `newsletter events` drains it, keeping the queue
    about DEPTH deep."""

    def __init__(self, sqs: object, queue_url: str, bodies: list[str], clock: Clock) -> None:
        super().__init__(daemon=True)
        self.sqs, self.queue_url, self.bodies, self.clock = sqs, queue_url, bodies, clock
        self.sent = 0

    def run(self) -> None:
        while self.sent < len(self.bodies) and not self.clock.stop.is_set():
            with self.clock.applied:
                self.clock.applied.wait_for(lambda: self.sent - self.clock.done < DEPTH, timeout=1)
            chunk = self.bodies[self.sent : self.sent + 10]
            entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)]
            self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)  # type: ignore[attr-defined]
            self.sent += len(chunk)


class ReplayQueue:
    """The SQS client's calls poll_queue makes, answered from memory at once (thread-safe: receivers share it)."""

    def __init__(self, bodies: list[str]) -> None:
        self.messages = [
            {"MessageId": f"m{n}", "ReceiptHandle": f"r{n}", "Body": body} for n, body in enumerate(bodies)
        ]
        self.lock = threading.Lock()
        self.deleted = 0

    def receive_message(self, **_: object) -> dict:
        with self.lock:
            batch, self.messages = self.messages[:10], self.messages[10:]
        return {"Messages": batch} if batch else {}

    def delete_message_batch(self, **request: object) -> dict:
        with self.lock:
            self.deleted += len(request["Entries"])  # type: ignore[arg-type]
        return {"Successful": request["Entries"], "Failed": []}

    def change_message_visibility_batch(self, **request: object) -> dict:
        return {"Successful": request["Entries"], "Failed": []}


def fresh_store(database_url: str, count: int):
    from newsletter.store import insert_subscribers, open_store

    store = open_store(database_url)
    with store.engine.begin() as conn:  # a store of its own each run
        for table in ("events", "tracking_consents", "deliveries", "welcomes", "subscribers"):
            conn.exec_driver_sql(f"DELETE FROM {table}")
    insert_subscribers(store, ({"email": f"reader{n}@example.com"} for n in range(count)), source="bench", chunk=20_000)
    return store


def measure(database_url: str, label: str, how: str, count: int, receivers: int, peer: dict) -> float:
    """One drain of `count` events through `how` (fake, moto, memory); prints and returns events/s."""
    import boto3

    from newsletter.event_queue import poll_queue

    bodies = records(count)
    clock = Clock()
    name = f"bench-{how}-{label}-{receivers}-{os.getpid()}".lower()
    fake_before = None
    with fresh_store(database_url, count) as store:
        if how == "memory":
            client: object = ReplayQueue(bodies)
            started = time.perf_counter()
            poll_queue(store, client, "memory", once=True, receivers=receivers, on_batch=clock.on_batch)
            where = "apply side alone, in-memory queue"
        elif how == "fake":
            fake = peer["fake"]
            url = fake.load(name, bodies)
            fake_before = fake.snapshot()
            client = boto3.client("sqs", region_name="us-east-1", endpoint_url=fake.endpoint_url, config=peer["config"])
            started = time.perf_counter()
            poll_queue(store, client, url, once=True, receivers=receivers, on_batch=clock.on_batch)
            where = f"fake SQS, {peer['latency'] * 1000:.0f} ms a round trip"
        else:
            client = boto3.client("sqs", region_name="us-east-1", endpoint_url=peer["moto"], config=peer["config"])
            url = client.create_queue(QueueName=name)["QueueUrl"]  # type: ignore[attr-defined]
            clock.expected = count
            feeder = Feeder(client, url, bodies, clock)
            started = time.perf_counter()
            feeder.start()
            poll_queue(
                store, client, url, wait_seconds=1, receivers=receivers, on_batch=clock.on_batch, stop=clock.stop
            )
            where = "moto's SQS server, fed while it drains"
        elapsed = clock.last - started
        with store.engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT count(*) FROM events").scalar_one()
    totals = clock.totals
    applied = sum(v for k, v in totals.items() if k not in {"messages", "unreadable", "refused"})
    duplicates = totals.get("duplicate", 0)
    rate = applied / elapsed
    verdict = "met" if rate >= TARGET else "MISSED"
    extra = ""
    if fake_before is not None:
        after = peer["fake"].snapshot()
        calls = after.requests - fake_before.requests
        extra = (
            f"; {calls['ReceiveMessage']:,} receives, {calls['DeleteMessageBatch']:,} delete batches, "
            f"{after.redelivered - fake_before.redelivered} redelivered, {after.left} left in the queue"
        )
        assert after.left == 0, after
    print(
        f"{label}, {where}, {receivers} receiver(s): {applied:,} events ({totals['messages']:,} messages, "
        f"{duplicates:,} duplicates, {rows:,} rows) in {elapsed:.2f} s: {rate:,.0f} events/s "
        f"(target {TARGET:,}: {verdict}){extra}",
        flush=True,
    )
    if totals["messages"] > count:  # moto's server can hand one message to two concurrent receives
        print(f"  ({totals['messages'] - count} of the {count:,} messages came twice: counted once, as duplicates)")
    assert totals["messages"] >= count and rows == applied - duplicates, (totals, rows, applied, duplicates)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events through the fake SQS and from memory")
    parser.add_argument("--single-events", type=int, default=4_000, help="events through the fake with 1 receiver")
    parser.add_argument("--moto-events", type=int, default=6_000, help="events applied through moto's SQS")
    parser.add_argument("--latency", type=float, default=0.03, help="the fake SQS's round trip, seconds")
    parser.add_argument("--receivers", type=int, default=None, help="receiver threads (default: poll_queue's)")
    parser.add_argument("--database-url", default=os.environ.get("NEWSLETTER_TEST_DATABASE_URL", ""))
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    from botocore.config import Config

    from newsletter.event_queue import RECEIVERS

    sys.path.append(str(ROOT))
    from tests.fake_sqs import FakeSqsProcess

    receivers = args.receivers or RECEIVERS
    # as `newsletter events` makes its client (aws_client): no retries, a connection per receive and delete
    config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, max_pool_connections=2 * receivers)
    print(machine_load(), flush=True)
    moto, moto_url = start_moto()
    try:
        with FakeSqsProcess(latency=args.latency) as fake, tempfile.TemporaryDirectory() as folder:
            peer = {"fake": fake, "moto": moto_url, "config": config, "latency": args.latency}
            stores = [("SQLite", f"sqlite:///{folder}/events.db")]
            if args.database_url:
                stores.append(("PostgreSQL", args.database_url))
            for label, url in stores:
                many = measure(url, label, "fake", args.events, receivers, peer)
                one = measure(url, label, "fake", args.single_events, 1, peer)
                print(
                    f"{label}: {receivers} receivers / 1 receiver through the fake SQS: {many / one:.1f}x", flush=True
                )
                measure(url, label, "moto", args.moto_events, receivers, peer)
                measure(url, label, "memory", args.events, receivers, peer)
            if not args.database_url:
                print("PostgreSQL: skipped (pass --database-url or set NEWSLETTER_TEST_DATABASE_URL)")
            print(machine_load())
    finally:
        moto.terminate()
        moto.wait(timeout=10)


if __name__ == "__main__":
    main()
