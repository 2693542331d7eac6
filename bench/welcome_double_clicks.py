"""Welcome mails under double clicks: N pending sign-ups, each confirm link POSTed twice at the same instant, to
two `newsletter serve` processes sharing one store, the two clicks of a link going to different processes.

Every third subscriber's two clicks carry two different confirm links (two sign-ups a second apart make two).
All 2 × N POSTs start together from as many client threads; the processes' workers send the welcome mails
through SMTP to an aiosmtpd server here (from the test extra), which counts what it gets. Prints, per round,
the welcome mails per subscriber: 0 duplicates and 0 missing is the figure. Run:
`python bench/welcome_double_clicks.py [--subscribers 100] [--rounds 3] [--database-url postgresql://…]`.
"""

from __future__ import annotations

import argparse
import http.client
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from _common import copy_publication, machine_load

from newsletter.config import load_settings
from newsletter.store import open_store, request_subscription, welcome_outcomes
from newsletter.tokens import confirm_token


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Counting:
    """aiosmtpd handler: the recipients of every message that is a welcome mail (its Message-ID says so)."""

    def __init__(self) -> None:
        self.welcomed: Counter[str] = Counter()
        self.others = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        welcome = b".welcome@" in envelope.content.split(b"\r\n\r\n", 1)[0]
        with self.lock:
            if welcome:
                self.welcomed.update(envelope.rcpt_tos)
            else:
                self.others += 1
        return "250 2.0.0 Ok: queued"


def start_serve(folder: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = (folder / f"serve-{port}.log").open("wb")  # never a pipe: a full pipe would stall the server
    command = [sys.executable, "-m", "newsletter", "--root", str(folder), "serve", "--port", str(port)]
    # Behind a proxy on this machine, as README's deployment has it: the per-address connection limit (50) then
    # applies to each reader's address (X-Forwarded-For), not to the proxy's.
    options = ["--threads", "8", "--trusted-proxy", "127.0.0.1"]
    server = subprocess.Popen([*command, *options], stdout=log, stderr=log, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise SystemExit(f"serve on port {port} did not start: see {log.name}")


def post(port: int, path: str, reader: str, start: threading.Barrier, codes: list[int]) -> None:
    """POST `path` once the barrier lets every click go, from `reader`'s address behind the proxy."""
    start.wait(timeout=60)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", path, b"", {"Content-Length": "0", "X-Forwarded-For": reader})
        answer = connection.getresponse()
        answer.read()
        codes.append(answer.status)
    finally:
        connection.close()


def one_round(folder: Path, ports: list[int], handler: Counting, count: int, number: int) -> tuple[int, int, float]:
    """(duplicates, missing, seconds from the first click to the last welcome) of one round."""
    settings = load_settings(folder)
    secret = os.environ["NEWSLETTER_SECRET_KEY"].encode()
    run = os.environ["BENCH_RUN"]
    addresses = [f"{run}-round{number}-reader{n}@example.com" for n in range(count)]
    with open_store(settings.database_url) as store:
        ids = []
        for n, address in enumerate(addresses):
            subscriber, _ = request_subscription(store, address, ("ko", "en")[n % 2], consent="bench", confirm=False)
            assert subscriber is not None
            ids.append(subscriber.id)
        issued = int(time.time()) + 1  # a confirm link may not be older than its row
        clicks = []
        for n, subscriber_id in enumerate(ids):
            first = confirm_token(secret, settings.list_id, subscriber_id, issued)
            second = confirm_token(secret, settings.list_id, subscriber_id, issued + 1) if n % 3 == 0 else first
            clicks += [(ports[0], f"/confirm?token={first}"), (ports[1], f"/confirm?token={second}")]
        start = threading.Barrier(len(clicks))
        codes: list[int] = []
        threads = [
            threading.Thread(target=post, args=(port, path, f"192.0.2.{n // 2 % 250 + 1}", start, codes))
            for n, (port, path) in enumerate(clicks)
        ]
        began = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert codes == [200] * len(clicks), Counter(codes)
        deadline = time.monotonic() + 120
        wanted = set(ids)
        while time.monotonic() < deadline:
            outcomes = welcome_outcomes(store)
            if all(outcomes.get(i) for i in wanted):
                break
            time.sleep(0.05)
        took = time.monotonic() - began
        outcomes = welcome_outcomes(store)
    assert {outcomes.get(i) for i in ids} == {"sent"}, Counter(outcomes.get(i) for i in ids)
    with handler.lock:
        got = Counter({a: handler.welcomed[a] for a in addresses})
    return sum(n - 1 for n in got.values() if n > 1), sum(1 for a in addresses if got[a] == 0), took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default="", help="a PostgreSQL URL (default: a SQLite file)")
    args = parser.parse_args()
    from aiosmtpd.controller import Controller

    handler = Counting()
    smtp_port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    with tempfile.TemporaryDirectory(prefix="newsletter-bench-") as tmp:
        folder = copy_publication(Path(tmp))
        with (folder / "pyproject.toml").open("a", encoding="utf-8") as config:
            config.write(f'\n[tool.newsletter.smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\n')
        os.environ["NEWSLETTER_SECRET_KEY"] = secrets.token_urlsafe(32)
        os.environ["NEWSLETTER_TRANSPORT"] = "smtp"
        os.environ["BENCH_RUN"] = secrets.token_hex(3)  # fresh addresses, also in a PostgreSQL store used before
        if args.database_url:
            os.environ["NEWSLETTER_DATABASE_URL"] = args.database_url
        with open_store(load_settings(folder).database_url):
            pass  # the schema, made once before two processes open it
        ports = [free_port(), free_port()]
        servers = [start_serve(folder, port, dict(os.environ)) for port in ports]
        try:
            store = "PostgreSQL" if args.database_url else "SQLite"
            print(f"{args.subscribers} subscribers a round, {2 * args.subscribers} concurrent confirm POSTs")
            print(f"to 2 serve processes on {store}; {machine_load()}")
            for number in range(args.rounds):
                duplicates, missing, took = one_round(folder, ports, handler, args.subscribers, number)
                print(f"round {number + 1}: {duplicates} duplicates, {missing} missing; all welcomed in {took:.2f} s")
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=10)
            controller.stop()
    print(f"other mails (confirmations) received: {handler.others}")


if __name__ == "__main__":
    main()
