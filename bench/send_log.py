"""Benchmark the send log's hot path in one process, without a transport: claim a batch of 100, take the last
look at its subscribers, record the results in groups of 50, until every delivery is sent.

Prints the CPU and wall time a delivery for each store (SQLite in a temporary file; PostgreSQL, in a scratch
schema, when NEWSLETTER_BENCH_DATABASE_URL or NEWSLETTER_TEST_DATABASE_URL names a server). Wall includes the
database server's work; on PostgreSQL that server shares the machine's cores with the senders in
bench/two_senders.py. To compare two trees, run this script from each (it imports the `newsletter` of the tree
it is in).

Run: `python bench/send_log.py [--rows 30000] [--runs 3]`
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import machine_load, on_each_store

from newsletter.store import DeliveryState, Result, SendLog, insert_subscribers, open_store, register_sender
from newsletter.store.deliveries import snapshot_audience

BATCH = 100
GROUP = 50


def run_once(url: str, rows: int) -> tuple[float, float]:
    """(CPU ms, wall ms) a delivery for one send log of `rows` deliveries at `url`."""
    with open_store(url) as store:
        people = ({"email": f"reader{n}@example.com", "name": f"독자 {n}", "lang": "ko"} for n in range(rows))
        insert_subscribers(store, people, source="bench", chunk=20_000)
        snapshot_audience(store, "bench", ["ko"], "ko")
        sender = register_sender(store, "bench", exclusive=store.engine.dialect.name == "sqlite")
        log = SendLog(store, "bench", sender.sender_id, "ses", dt.datetime.now(dt.UTC))
        cpu, wall, done = time.process_time(), time.monotonic(), 0
        try:
            while batch := log.claim(BATCH):
                log.gone([d.subscriber_id for d in batch])
                for start in range(0, len(batch), GROUP):
                    group = batch[start : start + GROUP]
                    log.record([Result(d.id, DeliveryState.SENT, f"0100018c-{d.id:012d}-000000") for d in group])
                done += len(batch)
        finally:
            log.close()
        return (time.process_time() - cpu) * 1000 / done, (time.monotonic() - wall) * 1000 / done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.rows:,} deliveries, claims of {BATCH}, groups of {GROUP}; {machine_load()}", flush=True)
    for run in range(1, args.runs + 1):

        def job(label: str, url: str, run: int = run) -> None:
            cpu, wall = run_once(url, args.rows)
            print(f"{label} run {run}: {cpu:.3f} ms CPU, {wall:.3f} ms wall a delivery", flush=True)

        on_each_store("newsletter-bench-send-log", job)


if __name__ == "__main__":
    main()
