"""Load benchmark: one-click unsubscribes POSTed to `newsletter serve` on loopback for 60 s.

Starts the real server (waitress) as a subprocess on a SQLite store of N active subscribers, then POSTs
`List-Unsubscribe=One-Click` with a different subscriber's token each time from client threads, as fast as
the server answers. Prints requests/s, p50/p99 latency, and checks that every token POSTed ended
`unsubscribed` (zero lost). Run: `python bench/unsubscribe_load.py [--seconds 60] [--clients 16]`.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import copy_publication

from newsletter.config import load_settings
from newsletter.store import SubscriberStatus, count_subscribers, insert_subscribers, open_store
from newsletter.tokens import DEVELOPMENT_SECRET, unsubscribe_token


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--subscribers", type=int, default=120_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="newsletter-bench-") as tmp:
        folder = copy_publication(Path(tmp))
        settings = load_settings(folder)
        with open_store(settings.database_url) as store:
            insert_subscribers(
                store,
                ({"email": f"r{n}@example.com", "lang": "ko"} for n in range(args.subscribers)),
                source="bench",
                chunk=20_000,
            )
        secret = DEVELOPMENT_SECRET.encode()
        tokens = [unsubscribe_token(secret, settings.list_id, n + 1) for n in range(args.subscribers)]
        port = free_port()
        env = {**os.environ}
        env.pop("NEWSLETTER_SECRET_KEY", None)  # --dev: the public development secret signs and checks the tokens
        server_log = (folder / "server.log").open("wb")  # never a pipe: a full pipe would stall the server
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "newsletter",
                "--root",
                str(folder),
                "serve",
                "--dev",
                "--port",
                str(port),
                "--threads",
                "8",
            ],
            stdout=server_log,
            stderr=server_log,
            env=env,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        latencies: list[float] = []
        posted: list[int] = []
        failures: list[str] = []
        next_token = iter(range(args.subscribers))
        lock = threading.Lock()
        stop_at = time.monotonic() + args.seconds

        def client() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            body = b"List-Unsubscribe=One-Click"
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            while time.monotonic() < stop_at:
                with lock:
                    index = next(next_token, None)
                if index is None:
                    return
                started = time.perf_counter()
                try:
                    connection.request("POST", f"/unsubscribe?token={tokens[index]}", body, headers)
                    answer = connection.getresponse()
                    answer.read()
                except (OSError, http.client.HTTPException) as err:
                    failures.append(f"{type(err).__name__}: {err} at {time.monotonic() - stop_at + args.seconds:.1f} s")
                    connection.close()
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    continue
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    if answer.status == 200:
                        posted.append(index + 1)
                    else:
                        failures.append(f"HTTP {answer.status}")

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        began = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        span = time.monotonic() - began
        server.terminate()
        server.wait(timeout=10)
        server_log.close()
        with open_store(settings.database_url) as store:
            counts = count_subscribers(store)
            with store.engine.connect() as conn:
                import sqlalchemy as sa

                from newsletter.store import subscribers

                unsubscribed = {
                    row[0]
                    for row in conn.execute(
                        sa.select(subscribers.c.id).where(subscribers.c.status == SubscriberStatus.UNSUBSCRIBED)
                    )
                }
        lost = [sid for sid in posted if sid not in unsubscribed]
        ordered = sorted(latencies)
        print(
            f"{len(posted):,} one-click POSTs answered 200 in {span:.1f} s = {len(posted) / span:,.0f} requests/s "
            f"({args.clients} client threads, waitress with 8 threads, SQLite WAL)"
        )
        print(
            f"latency p50 {statistics.median(ordered) * 1000:.1f} ms, "
            f"p99 {ordered[int(len(ordered) * 0.99) - 1] * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms"
        )
        print(
            f"lost: {len(lost)} (answered 200 but not unsubscribed); errors: {len(failures)}"
            + (f" e.g. {failures[0]}" if failures else "")
            + f"; store: {counts['unsubscribed']:,} unsubscribed"
        )


if __name__ == "__main__":
    main()
