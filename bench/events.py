"""`newsletter events`' apply rate: SES events (SNS-wrapped, one per SQS message, as SES publishes them) read
from moto's SQS (its standalone server, in its own process) and applied to SQLite and to PostgreSQL.

The queue is filled first (not timed); then poll_queue, the loop `newsletter events --once` runs, drains it: each
received batch of up to 10 messages applied in one transaction, then deleted in one request. Two figures per store:
end to end through moto's SQS (whose ReceiveMessage costs 0.15–0.7 s here, growing with the queue: moto's own
limit, not ours), and the apply side alone: the same bodies in SQS's message shape from an in-memory queue
(parsing, the transaction, the delete request): what `newsletter events` itself costs per event. The events are a
send's mix: per message a Send and a Delivery, some opens and clicks, a few bounces and complaints, and 2 % of
the messages delivered twice by SNS. Target: ≥ 2,000 events/s on each store.

    python bench/events.py [--events 20000] [--database-url postgresql://…]
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
from _common import machine_load  # noqa: E402

TARGET = 2_000  # events per second
ISSUE = "2023-09-25-top-ml-papers"


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


DEPTH = 20  # messages the feeder keeps in moto's queue ahead of what was applied


class Drained(Exception):
    """Every message fed was applied."""


class Feeder(threading.Thread):
    """Publishes the bodies into moto's queue as SNS would, while `newsletter events` drains it, keeping the queue
    about DEPTH deep: moto's ReceiveMessage scans its whole queue for each message it gives (O(n²) a request), so
    a queue filled with every event first measures moto, not us."""

    def __init__(self, sqs: object, queue_url: str, bodies: list[str]) -> None:
        super().__init__(daemon=True)
        self.sqs, self.queue_url, self.bodies = sqs, queue_url, bodies
        self.ready = threading.Condition()
        self.sent = self.done = 0
        self.totals: collections.Counter[str] = collections.Counter()

    def run(self) -> None:
        while self.sent < len(self.bodies):
            with self.ready:
                self.ready.wait_for(lambda: self.sent - self.done < DEPTH)
            chunk = self.bodies[self.sent : self.sent + 10]
            entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)]
            self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)  # type: ignore[attr-defined]
            with self.ready:
                self.sent += len(chunk)

    def on_batch(self, batch: dict[str, int]) -> None:
        """poll_queue's report of each batch: counted, the feeder woken, and the end told by Drained."""
        self.totals.update(batch)
        with self.ready:
            self.done += batch.get("messages", 0) + batch.get("unreadable", 0) + batch.get("refused", 0)
            self.ready.notify()
        if self.done >= len(self.bodies):
            raise Drained


class ReplayQueue:
    """The SQS client's two calls poll_queue makes, answered from messages received from moto before."""

    def __init__(self, messages: list[dict]) -> None:
        self.messages = messages
        self.deleted = 0

    def receive_message(self, **_: object) -> dict:
        batch, self.messages = self.messages[:10], self.messages[10:]
        return {"Messages": batch}

    def delete_message_batch(self, **request: object) -> dict:
        self.deleted += len(request["Entries"])  # type: ignore[arg-type]
        return {"Successful": request["Entries"], "Failed": []}


def run(database_url: str, label: str, endpoint: str, count: int, replay: bool) -> float:
    import boto3

    from newsletter.events import poll_queue
    from newsletter.store import insert_subscribers, open_store

    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoint)
    queue = sqs.create_queue(QueueName=f"bench-{label}-{os.getpid()}")["QueueUrl"]
    bodies = records(count)
    client: object = sqs
    if replay:
        shaped = [{"MessageId": f"m{n}", "ReceiptHandle": f"r{n}", "Body": body} for n, body in enumerate(bodies)]
        client = ReplayQueue(shaped)
        label += " (apply side, in-memory queue)"
    else:
        label += " (through moto SQS)"
    with open_store(database_url) as store:
        with store.engine.begin() as conn:  # a store of its own each run
            for table in ("events", "tracking_consents", "deliveries", "welcomes", "subscribers"):
                conn.exec_driver_sql(f"DELETE FROM {table}")
        insert_subscribers(
            store, ({"email": f"reader{n}@example.com"} for n in range(count)), source="bench", chunk=20_000
        )
        started = time.perf_counter()
        if replay:
            totals = poll_queue(store, client, queue, once=True)
        else:
            feeder = Feeder(sqs, queue, bodies)
            feeder.start()
            try:
                poll_queue(store, client, queue, wait_seconds=5, on_batch=feeder.on_batch)
            except Drained:
                pass
            totals = feeder.totals
        elapsed = time.perf_counter() - started
        with store.engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT count(*) FROM events").scalar_one()
    applied = sum(v for k, v in totals.items() if k not in {"messages", "unreadable", "refused"})
    rate = applied / elapsed
    duplicates = totals.get("duplicate", 0)
    verdict = "met" if rate >= TARGET else "MISSED"
    print(
        f"{label}: {applied:,} events ({totals['messages']:,} messages, {duplicates:,} duplicates, {rows:,} rows) "
        f"in {elapsed:.2f} s: {rate:,.0f} events/s (target {TARGET:,}: {verdict})"
    )
    assert rows == applied - duplicates, (rows, applied, duplicates)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events applied from the replayed queue")
    parser.add_argument("--moto-events", type=int, default=10_000, help="events applied through moto's SQS")
    parser.add_argument("--database-url", default=os.environ.get("NEWSLETTER_TEST_DATABASE_URL", ""))
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    print(machine_load())
    moto, endpoint = start_moto()
    try:
        stores = [("SQLite", "sqlite:///{folder}/events.db")]
        if args.database_url:
            stores.append(("PostgreSQL", args.database_url))
        with tempfile.TemporaryDirectory() as folder:
            for label, url in stores:
                run(url.format(folder=folder), label, endpoint, args.moto_events, replay=False)
                run(url.format(folder=folder), label, endpoint, args.events, replay=True)
        if not args.database_url:
            print("PostgreSQL: skipped (pass --database-url or set NEWSLETTER_TEST_DATABASE_URL)")
    finally:
        moto.terminate()
        moto.wait(timeout=10)


if __name__ == "__main__":
    main()
