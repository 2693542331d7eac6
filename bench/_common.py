"""What the benchmarks share: a scratch copy of the sample publication, scratch stores, the machine's load."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_ISSUE = "2023-09-25-top-ml-papers"


def copy_publication(folder: Path, *, issues: bool = True) -> Path:
    """The sample's settings and templates (and issues) in `folder`; returns `folder`."""
    config = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (folder / "pyproject.toml").write_text(config[config.index("[tool.newsletter]") :], encoding="utf-8")
    shutil.copytree(ROOT / "templates", folder / "templates")
    if issues:
        shutil.copytree(ROOT / "issues", folder / "issues")
    return folder


def write_subscribers_csv(path: Path, count: int) -> Path:
    """A CSV of `count` subscribers at example.com, a quarter of them reading English."""
    with path.open("w", encoding="utf-8") as handle:
        handle.write("email,name,lang,source_page\n")
        for n in range(count):
            handle.write(f"reader{n}@example.com,독자 {n},{'en' if n % 4 == 0 else 'ko'},landing\n")
    return path


def add_subscribers(database_url: str, count: int) -> None:
    """`count` active subscribers reader{n}@example.com in the store at `database_url`, a quarter reading English."""
    from newsletter.store import insert_subscribers, open_store

    rows = (
        {"email": f"reader{n}@example.com", "name": f"독자 {n}", "lang": "en" if n % 4 == 0 else "ko"}
        for n in range(count)
    )
    with open_store(database_url) as store:
        insert_subscribers(store, rows, source="bench", chunk=20_000)


def fake_ses() -> ModuleType:
    """tests/fake_ses.py, the fake SES endpoint the tests use (bench/ runs as scripts, so the repository goes on
    the path for it)."""
    if str(ROOT) not in sys.path:
        sys.path.append(str(ROOT))
    import tests.fake_ses

    return tests.fake_ses


def _steps(count: int) -> int:
    total = 0
    for step in range(count):
        total += step * step
    return total


def idle_slowdown(pause: float = 0.05, rounds: int = 40) -> float:
    """How many times longer the same Python work (about 0.2 ms) takes on this thread's CPU clock right after a
    `pause` of sleep than back to back. A send at a low rate runs after such a pause every time (the next slot,
    the answer): on a host whose cores slow down when idle, its CPU a message grows by about this factor."""
    busy = after_pause = 0.0
    for _ in range(rounds):
        started = time.thread_time()
        _steps(3000)
        busy += time.thread_time() - started
        time.sleep(pause)
        started = time.thread_time()
        _steps(3000)
        after_pause += time.thread_time() - started
    return after_pause / busy if busy else 1.0


def machine_load() -> str:
    """The load averages and core count, for the figures' context (the machine is shared)."""
    one, five, _ = os.getloadavg()
    return f"load {one:.2f} / {five:.2f} (1 / 5 min) on {os.cpu_count()} cores"


def send_sample_issue(folder: Path, transport, rate: float | None = None):
    """Run the real send (plan_send + send_issue) of the sample issue over the subscribers already in `folder`'s
    store, through `transport` (a Transport) at `rate` messages per second (None: as fast as it takes them)."""
    from newsletter.config import load_settings
    from newsletter.issues import find_issue
    from newsletter.render.templates import load_templates
    from newsletter.sending import build_templates, plan_send, send_issue
    from newsletter.store import open_store

    settings = load_settings(folder)
    issue = find_issue(settings, SAMPLE_ISSUE)
    messages = build_templates(settings, load_templates(settings), issue)
    with open_store(settings.database_url) as store:
        plan = plan_send(
            settings, store, issue, messages, b"benchmark-secret-benchmark", transport=transport, rate=rate
        )
        return send_issue(plan, store)


class TreeMemory(threading.Thread):
    """Samples a process and all its descendants (forked workers too) until it exits, keeping the peak of
    their summed PSS (shared pages counted once, in proportion) and of their summed RSS (shared pages
    counted in every process: an upper bound). Linux /proc only."""

    def __init__(self, pid: int, interval: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_pss_kb = self.peak_rss_kb = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            pss = rss = 0
            for pid in self.tree():
                try:
                    with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
                        for line in handle:
                            if line.startswith("Pss:"):
                                pss += int(line.split()[1])
                            elif line.startswith("Rss:"):
                                rss += int(line.split()[1])
                except OSError:
                    continue  # it ended between listing and reading
            self.peak_pss_kb, self.peak_rss_kb = max(self.peak_pss_kb, pss), max(self.peak_rss_kb, rss)

    def tree(self) -> list[int]:
        parents: dict[int, int] = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open(f"/proc/{name}/stat", encoding="utf-8", errors="replace") as handle:
                        parents[int(name)] = int(handle.read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
        found, frontier = [self.pid], [self.pid]
        while frontier:
            frontier = [pid for pid, parent in parents.items() if parent in frontier]
            found.extend(frontier)
        return found


def on_each_store(prefix: str, job: Callable[[str, str], None]) -> None:
    """Run `job(label, database_url)` on a scratch SQLite file, then on PostgreSQL in a scratch schema (dropped at
    the end) when NEWSLETTER_BENCH_DATABASE_URL or NEWSLETTER_TEST_DATABASE_URL names a server."""
    import sqlalchemy as sa

    with tempfile.TemporaryDirectory(prefix=f"{prefix}-db-") as scratch:
        job("SQLite", f"sqlite:///{scratch}/subscribers.db")
    base = os.environ.get("NEWSLETTER_BENCH_DATABASE_URL") or os.environ.get("NEWSLETTER_TEST_DATABASE_URL")
    if not base:
        print("PostgreSQL: skipped (set NEWSLETTER_BENCH_DATABASE_URL or NEWSLETTER_TEST_DATABASE_URL)")
        return
    schema = f"{prefix.replace('-', '_')}_{os.getpid()}"
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = base + ("&" if "?" in base else "?") + "options=" + urllib.parse.quote(f"-csearch_path={schema}")
        job("PostgreSQL", url)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()
