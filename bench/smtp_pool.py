"""Benchmark the SMTP transport's pool: an aiosmtpd server on 127.0.0.1 (in a process of its own) that takes
20 ms per message, and the sample issue's real messages handed over through 1 and then 4 reused connections
(as many threads as connections). Prints messages/s for each and the ratio; the target is >= 150/s with 4.

`--whole-send` also runs the whole send (plan_send + send_issue: the send log in SQLite, the dispatcher, the
workers) of the sample issue to that many subscribers through the same server.

Run: `python bench/smtp_pool.py [--messages 600] [--delay 0.02] [--whole-send]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

from _common import SAMPLE_ISSUE, copy_publication, machine_load

from newsletter.config import SmtpSettings, load_settings
from newsletter.issues import find_issue
from newsletter.messages import Recipient
from newsletter.render.templates import load_templates
from newsletter.sending import build_templates
from newsletter.tokens import unsubscribe_token
from newsletter.transports.base import OutgoingMessage, SendStatus
from newsletter.transports.smtp import SmtpTransport

SECRET = b"benchmark-secret-benchmark"


class SlowHandler:
    """Takes `delay` seconds over each message (asyncio: the connections wait side by side), then accepts it."""

    def __init__(self, delay: float, accepted: Synchronized) -> None:
        self.delay = delay
        self.accepted = accepted

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        await asyncio.sleep(self.delay)
        with self.accepted.get_lock():
            self.accepted.value += 1
        return "250 2.0.0 Ok: queued"


def block_reading_server() -> type:
    """aiosmtpd's SMTP, but reading DATA in blocks up to the final dot instead of a line at a time: the stock
    loop costs about 10 ms of CPU for one of the sample's 112 KB messages, which caps the server, not the
    transport, near 100 messages/s (`--stock-server` shows it)."""
    from aiosmtpd.smtp import SMTP, syntax

    class BlockReading(SMTP):
        @syntax("DATA")
        async def smtp_DATA(self, arg: str) -> None:  # noqa: N802 - aiosmtpd's name
            if await self.check_helo_needed():
                return
            assert self.envelope is not None
            if not self.envelope.rcpt_tos or arg:
                await self.push("503 Error: need RCPT command" if arg == "" else "501 Syntax: DATA")
                return
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            received = bytearray(b"\r\n")  # so that a message of no lines ends the same way
            while not received.endswith(b"\r\n.\r\n"):
                block = await self._reader.read(1 << 16)
                if not block:
                    return  # the connection closed
                received += block
            content = bytes(received[2:-3]).replace(b"\r\n..", b"\r\n.")  # RFC 5321 §4.5.2
            self.envelope.content = self.envelope.original_content = content.removeprefix(b".")
            status = await self._call_handler_hook("DATA")
            self._set_post_data_state()
            await self.push(status)

    return BlockReading


def serve(delay: float, port: int, stock: bool, accepted: Synchronized, ready: EventType, done: EventType) -> None:
    """The server's process: its own interpreter, so it never waits for the client's GIL."""
    from aiosmtpd.controller import Controller

    server = None if stock else block_reading_server()

    class Blocks(Controller):
        def factory(self):
            return server(self.handler, **self.SMTP_kwargs) if server else super().factory()

    controller = Blocks(SlowHandler(delay, accepted), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    done.wait()
    controller.stop()


@contextlib.contextmanager
def slow_server(delay: float, *, stock: bool = False) -> Iterator[tuple[Synchronized, int]]:
    """An aiosmtpd server in a process of its own on 127.0.0.1; yields (its count of accepted messages, port)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    accepted = multiprocessing.Value("i", 0)
    ready, done = multiprocessing.Event(), multiprocessing.Event()
    process = multiprocessing.Process(target=serve, args=(delay, port, stock, accepted, ready, done), daemon=True)
    process.start()
    try:
        if not ready.wait(30):
            raise SystemExit("the SMTP server did not start")
        yield accepted, port
    finally:
        done.set()
        process.join(10)


def sample_messages(folder: Path, count: int) -> list[OutgoingMessage]:
    """`count` real messages of the sample issue, a quarter in English, personalised as a send does."""
    settings = load_settings(folder)
    issue = find_issue(settings, SAMPLE_ISSUE)
    templates = build_templates(settings, load_templates(settings), issue)
    sender = settings.from_address.addr_spec
    messages = []
    for n in range(count):
        lang = "en" if n % 4 == 0 and "en" in templates else settings.language
        email = f"reader{n}@example.com"
        raw, _ = templates[lang].personalise(
            Recipient(email, f"독자 {n}", unsubscribe_token(SECRET, settings.list_id, n + 1))
        )
        messages.append(OutgoingMessage(sender, email, (raw,), issue.slug, lang))
    return messages


def hand_over(port: int, messages: list[OutgoingMessage], connections: int) -> float:
    """Seconds to send `messages` through a pool of `connections`, from as many threads."""
    transport = SmtpTransport(
        SmtpSettings(host="127.0.0.1", port=port, security="none", timeout=30, connections=connections)
    )
    statuses: list[SendStatus] = []
    lock = threading.Lock()
    start = threading.Barrier(connections + 1)

    def work(share: list[OutgoingMessage]) -> None:
        start.wait()
        for message in share:
            status = transport.send(message).status
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=work, args=(messages[i::connections],)) for i in range(connections)]
    for thread in threads:
        thread.start()
    start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    transport.close()
    if statuses.count(SendStatus.SENT) != len(messages):
        raise SystemExit(f"not all sent: {sorted(set(statuses))}")
    return elapsed


def whole_send(folder: Path, port: int, count: int) -> None:
    """plan_send + send_issue of the sample issue to `count` subscribers over the slow server, 4 connections."""
    from newsletter.sending import plan_send, send_issue
    from newsletter.store import insert_subscribers, open_store

    settings = load_settings(folder)
    rows = (
        {"email": f"reader{n}@example.com", "name": f"독자 {n}", "lang": "en" if n % 4 == 0 else "ko"}
        for n in range(count)
    )
    with open_store(settings.database_url) as store:
        insert_subscribers(store, rows, source="bench")
        issue = find_issue(settings, SAMPLE_ISSUE)
        messages = build_templates(settings, load_templates(settings), issue)
        transport = SmtpTransport(SmtpSettings(host="127.0.0.1", port=port, security="none", timeout=30, connections=4))
        plan = plan_send(settings, store, issue, messages, SECRET, transport=transport)
        started = time.perf_counter()
        outcome = send_issue(plan, store)
        elapsed = time.perf_counter() - started
    progress = outcome.progress
    print(
        f"whole send (plan_send + send_issue, SQLite log, 4 connections): {progress.sent:,} of {count:,} sent in "
        f"{elapsed:.2f} s = {progress.sent / elapsed:.0f} messages/s; peak in flight {progress.peak_in_flight}, "
        f"failed {progress.failed}, deferred {progress.deferred}, ambiguous {progress.ambiguous}"
        + (f"; stopped: {outcome.stopped}" if outcome.stopped else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--delay", type=float, default=0.02, help="seconds the server takes per message")
    parser.add_argument("--whole-send", action="store_true", help="also run plan_send + send_issue")
    parser.add_argument("--stock-server", action="store_true", help="aiosmtpd's own line-at-a-time DATA reading")
    args = parser.parse_args()
    print(machine_load())
    with tempfile.TemporaryDirectory() as scratch, slow_server(args.delay, stock=args.stock_server) as (accepted, port):
        folder = copy_publication(Path(scratch))
        messages = sample_messages(folder, args.messages)
        size = sum(len(m.raw) for m in messages) / len(messages) / 1024
        print(
            f"{len(messages):,} sample messages of {size:.0f} KB each; the server takes {args.delay * 1000:g} ms each"
        )
        rates = {}
        for connections in (1, 4):
            elapsed = hand_over(port, messages, connections)
            rates[connections] = len(messages) / elapsed
            print(
                f"{connections} connection{'s' if connections > 1 else ''}, {connections} thread"
                f"{'s' if connections > 1 else ''}: {len(messages):,} in {elapsed:.2f} s = "
                f"{rates[connections]:.0f} messages/s (ideal {connections / args.delay:.0f}/s)"
            )
        print(f"4 connections / 1 connection: {rates[4] / rates[1]:.2f}x")
        if args.whole_send:
            whole_send(folder, port, args.messages)
        print(f"server accepted {accepted.value:,}; {machine_load()}")


if __name__ == "__main__":
    main()
