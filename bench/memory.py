"""Benchmark memory: a send to 1,000,000 subscribers keeps peak RSS flat (the audience is streamed).

Fills a SQLite store with N subscribers, then runs the real send loop in a child process whose transport
discards each message after counting it (no disk holds a million .eml files), and prints that child's
wall time and peak RSS. Run: `python bench/memory.py [--subscribers 1000000]`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import copy_publication, send_sample_issue

from newsletter.config import load_settings
from newsletter.store import insert_subscribers, open_store
from newsletter.transports.base import OutgoingMessage, SendResult, SendStatus


class CountingTransport:
    """Accepts every message and keeps only a count and a byte total."""

    name = "count"
    max_in_flight = 1  # the loop calls send from this many threads at most

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0

    def quota(self) -> None:
        return None  # no account quota

    def send(self, message: OutgoingMessage) -> SendResult:
        self.messages += 1
        self.bytes += len(message.raw)
        return SendResult(SendStatus.SENT, message_id=str(self.messages))

    def close(self) -> None:
        return None


def fill(folder: Path, count: int) -> None:
    settings = load_settings(folder)
    rows = (
        {"email": f"reader{n}@example.com", "name": f"독자 {n}", "lang": "en" if n % 4 == 0 else "ko"}
        for n in range(count)
    )
    with open_store(settings.database_url) as store:
        insert_subscribers(store, rows, source="bench", chunk=20_000)


def send(folder: Path) -> None:
    transport = CountingTransport()
    outcome = send_sample_issue(folder, transport)
    print(
        f"sent {outcome.progress.sent:,} messages ({transport.bytes / 1e9:.1f} GB of MIME) "
        f"at {outcome.progress.rate:,.0f}/s",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="newsletter-bench-") as tmp:
        folder = copy_publication(Path(tmp))
        started = time.perf_counter()
        fill(folder, args.subscribers)
        print(f"stored {args.subscribers:,} subscribers in {time.perf_counter() - started:.0f} s", flush=True)
        started = time.perf_counter()
        child = os.fork()
        if child == 0:
            send(folder)
            os._exit(0)
        _, status, usage = os.wait4(child, 0)
        if status:
            sys.exit("the send failed")
        print(f"send: {time.perf_counter() - started:.0f} s wall, peak RSS {usage.ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
