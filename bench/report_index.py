"""`newsletter report` with schema 7's events index (issue, kind) against schema 8's covering one (issue, kind,
edition, paper, subscriber_id), on one filled store, alternated: bench/report.py's store (N subscribers, the
sample issue's send log to all, M SES events), then `newsletter report ISSUE --json` as a whole process, two
runs per turn, the turns in A B B A A B order; the figures are medians of wall and CPU seconds, and B/A.

    python bench/report_index.py [--subscribers 100000] [--events 1000000] [--turns 3]

SQLite in a scratch folder; PostgreSQL as well (a schema of its own, dropped at the end) when
NEWSLETTER_BENCH_DATABASE_URL or NEWSLETTER_TEST_DATABASE_URL is set. No ANALYZE or VACUUM, as on a real store.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import copy_publication, machine_load, on_each_store  # noqa: E402
from report import fill, time_command  # noqa: E402

from newsletter.store.database import EVENTS_INDEX  # noqa: E402

SCHEMA_7 = ("CREATE INDEX IF NOT EXISTS ix_events_issue_kind ON events (issue, kind)", f"DROP INDEX {EVENTS_INDEX}")
SCHEMA_8 = (
    f"CREATE INDEX IF NOT EXISTS {EVENTS_INDEX} ON events (issue, kind, edition, paper, subscriber_id)",
    "DROP INDEX IF EXISTS ix_events_issue_kind",
)
VARIANTS = {"A: (issue, kind), schema 7": SCHEMA_7, "B: covering, schema 8": SCHEMA_8}


def compare(name: str, url: str, subscribers: int, events: int, turns: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-report-index-") as scratch:
        folder = copy_publication(Path(scratch))
        env = {**os.environ, "NEWSLETTER_DATABASE_URL": url}
        os.environ["NEWSLETTER_DATABASE_URL"] = url
        began = time.perf_counter()
        fill(url, folder, subscribers, events)
        print(f"{name}: {subscribers:,} subscribers, {events:,} events stored in {time.perf_counter() - began:.0f} s")
        engine = sa.create_engine(url)
        walls: dict[str, list[float]] = {label: [] for label in VARIANTS}
        cpus: dict[str, list[float]] = {label: [] for label in VARIANTS}
        built: list[float] = []
        current = "B: covering, schema 8"  # what the store was made with
        try:
            for turn in range(turns):
                for label in list(VARIANTS) if turn % 2 == 0 else list(VARIANTS)[::-1]:
                    if label != current:
                        began = time.perf_counter()
                        with engine.begin() as conn:
                            for statement in VARIANTS[label]:
                                conn.execute(sa.text(statement))
                        if label.startswith("B"):
                            built.append(time.perf_counter() - began)
                        current = label
                    wall, cpu = time_command(folder, env, 2, "--json")
                    walls[label] += wall
                    cpus[label] += cpu
        finally:
            engine.dispose()
            del os.environ["NEWSLETTER_DATABASE_URL"]
        for label in VARIANTS:
            print(
                f"  {label}: median {statistics.median(walls[label]):.2f} s wall "
                f"({min(walls[label]):.2f}–{max(walls[label]):.2f} s), {statistics.median(cpus[label]):.2f} s CPU, "
                f"{len(walls[label])} runs"
            )
        a, b = (statistics.median(walls[label]) for label in VARIANTS)
        ca, cb = (statistics.median(cpus[label]) for label in VARIANTS)
        print(f"  B/A: {b / a:.2f} wall, {cb / ca:.2f} CPU; the covering index built in {max(built, default=0):.1f} s")
        print(f"  {machine_load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--turns", type=int, default=3)
    args = parser.parse_args()
    print(machine_load())
    on_each_store(
        "bench-report-index", lambda label, url: compare(label, url, args.subscribers, args.events, args.turns)
    )


if __name__ == "__main__":
    main()
