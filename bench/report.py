"""`newsletter report` of a big issue: N subscribers (100,000), the sample issue's send log to all of them, and
M SES events (1,000,000) for it in the store, then `newsletter report ISSUE --json` timed as a whole process
(five runs; the figure is the median), and build_report alone in this process.

The events are what a real send of that size leaves: a Send and (98 %) a Delivery per message, 1.5 % hard and
0.5 % soft bounces, 0.1 % complaints, 1 % delays, and the rest opens (five in eight) and clicks on the papers'
links by the 40 % who consented to tracking. They are inserted with the store's tables (the events path is timed
by bench/events.py); no ANALYZE is run, as none is on a real store. SQLite in a scratch folder, and PostgreSQL as
well when NEWSLETTER_BENCH_DATABASE_URL or NEWSLETTER_TEST_DATABASE_URL is set (in a schema of its own, dropped
at the end). Run: `python bench/report.py [--subscribers 100000] [--events 1000000] [--runs 5]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from _common import SAMPLE_ISSUE, add_subscribers, copy_publication, machine_load, on_each_store

from newsletter.config import load_settings
from newsletter.issues import find_issue
from newsletter.link_tags import issue_tag
from newsletter.report import build_report, paper_keys
from newsletter.store import deliveries, email_hash, events, open_store, subscribers

CHUNK = 20_000


def fill(url: str, folder: Path, subscriber_count: int, event_count: int) -> None:
    """Subscribers, the send log of the sample issue to all of them, consent for 40 %, and the events."""
    add_subscribers(url, subscriber_count)
    settings = load_settings(folder)
    issue = find_issue(settings, SAMPLE_ISSUE)
    papers = {e.lang: sorted(paper_keys(e)) for e in issue.editions}
    tag = issue_tag(SAMPLE_ISSUE)
    start = dt.datetime(2026, 12, 1, 0, 0, tzinfo=dt.UTC)
    with open_store(url) as store, store.begin() as conn:
        people = conn.execute(sa.select(subscribers.c.id, subscribers.c.email, subscribers.c.lang)).all()
        consent_at = start - dt.timedelta(days=1)
        conn.execute(
            subscribers.update()
            .where(subscribers.c.id % 5 < 2)
            .values(tracking_consent_at=consent_at, tracking_consent_how="bench")
        )
        rows = []
        for n, (sid, _email, lang) in enumerate(people):
            sent_at = start + dt.timedelta(seconds=n * 1800 / len(people))  # half an hour's send
            rows.append(
                {
                    "issue": SAMPLE_ISSUE,
                    "subscriber_id": sid,
                    "lang": lang or "ko",
                    "state": "sent",
                    "attempts": 1,
                    "message_id": f"m-{sid}",
                    "created_at": start,
                    "updated_at": sent_at,
                }
            )
            if len(rows) == CHUNK:
                conn.execute(deliveries.insert(), rows)
                rows = []
        if rows:
            conn.execute(deliveries.insert(), rows)
    hashes = {sid: email_hash(email) for sid, email, _ in people}
    plan = _event_plan(len(people), event_count)
    with open_store(url) as store:
        batch: list[dict[str, object]] = []
        made = 0
        for kind, count, consenting_only in plan:
            chosen = [p for p in people if not consenting_only or p[0] % 5 < 2]
            for n in range(count):
                sid, _email, lang = chosen[n % len(chosen)]
                edition = lang or "ko"
                at = start + dt.timedelta(seconds=(n * 7) % 7200)
                batch.append(
                    {
                        "feedback_id": f"{kind}-{n}",
                        "email_hash": hashes[sid],
                        "kind": kind,
                        "subtype": "",
                        "subscriber_id": sid,
                        "occurred_at": at,
                        "recorded_at": at + dt.timedelta(seconds=3),
                        "issue": tag,
                        "edition": edition,
                        "message_id": f"m-{sid}",
                        "link": None,
                        "paper": papers[edition][n % len(papers[edition])] if kind == "click" else None,
                    }
                )
                if len(batch) == CHUNK:
                    with store.begin() as conn:
                        conn.execute(events.insert(), batch)
                    made += len(batch)
                    batch = []
        if batch:
            with store.begin() as conn:
                conn.execute(events.insert(), batch)
            made += len(batch)
    assert made == event_count, (made, event_count)


def _event_plan(recipients: int, total: int) -> list[tuple[str, int, bool]]:
    """(kind, how many, only consenting recipients) adding up to `total`."""
    facts = [
        ("send", recipients, False),
        ("delivery", recipients * 98 // 100, False),
        ("bounce-permanent", recipients * 15 // 1000, False),
        ("bounce-transient", recipients * 5 // 1000, False),
        ("complaint", recipients // 1000, False),
        ("delivery-delay", recipients // 100, False),
    ]
    rest = total - sum(count for _, count, _ in facts)
    opens = rest * 5 // 8
    return [*facts, ("open", opens, True), ("click", rest - opens, True)]


def time_command(folder: Path, env: dict[str, str], runs: int, *extra: str) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds (user + system, of the process) of each run of `newsletter report ISSUE …`."""
    command = [sys.executable, "-m", "newsletter", "--root", str(folder), "report", SAMPLE_ISSUE, *extra]
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.perf_counter()
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - began)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus


def bench(name: str, url: str, subscriber_count: int, event_count: int, runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-report-") as scratch:
        folder = copy_publication(Path(scratch))
        env = {**os.environ, "NEWSLETTER_DATABASE_URL": url}
        os.environ["NEWSLETTER_DATABASE_URL"] = url
        began = time.perf_counter()
        fill(url, folder, subscriber_count, event_count)
        stored = time.perf_counter() - began
        print(f"{name}: {subscriber_count:,} subscribers, {event_count:,} events stored in {stored:.0f} s")
        settings = load_settings(folder)
        issue = find_issue(settings, SAMPLE_ISSUE)
        library = []
        with open_store(url) as store:
            for _ in range(runs):
                began = time.perf_counter()
                made = build_report(store, issue)
                library.append(time.perf_counter() - began)
        total = made.total
        print(
            f"  counted: sent {total.sent:,}, delivered {total.delivered:,}, opens {total.opens:,}, "
            f"clicks {sum(p.clicks or 0 for p in total.papers):,}, events {made.events.count:,}"
        )
        whole, cpu = time_command(folder, env, runs, "--json")
        table, _ = time_command(folder, env, 1)
        html, _ = time_command(folder, env, 1, "--html")
        print(f"  build_report in this process: median {statistics.median(library):.2f} s ({_spread(library)})")
        print(
            f"  newsletter report --json, whole process: median {statistics.median(whole):.2f} s wall "
            f"({_spread(whole)}), {statistics.median(cpu):.2f} s CPU (target < 2 s)"
        )
        print(f"  newsletter report (the table): {table[0]:.2f} s; with --html: {html[0]:.2f} s")
        print(f"  {machine_load()}")
        del os.environ["NEWSLETTER_DATABASE_URL"]


def _spread(times: list[float]) -> str:
    return f"{min(times):.2f}–{max(times):.2f} s over {len(times)} runs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(machine_load())
    on_each_store("bench-report", lambda label, url: bench(label, url, args.subscribers, args.events, args.runs))
    print(machine_load())


if __name__ == "__main__":
    main()
