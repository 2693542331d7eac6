"""Benchmark two senders on one send log: two `newsletter send ISSUE --yes --transport ses` processes started at
once on one PostgreSQL, against the fake SES endpoint (tests/fake_ses.py, its own process) at one account quota.

Prints the combined rate (accepted messages over the span from the first arrival to the last) and its share of
the quota, the same rate without the first and last 3 s (the ramp, a sender joining, the last in flight
draining: what a long send keeps up), accepted messages in each second, the busiest sliding second (accepted,
and every arrival: what the two started together), throttled answers, duplicates (recipients accepted more
than once), omissions (subscribers never accepted), each process's exit and the CPU of both per
message. The bench works in a schema of its own (`--schema`, dropped and made again), so tests on the same
database are not disturbed.

Run: `python bench/two_senders.py [--subscribers 60000] [--quota 1000] [--latency 0.05]`, PostgreSQL from
NEWSLETTER_BENCH_DATABASE_URL (default: the test database). Targets (issue 9): >= 90 % of the quota combined,
never above it in any second, 0 duplicates, 0 omissions.
The start and the end cost about 1.5 s of the quota once (the second sender waits until the first has
lowered its share and that share's last window has passed, both ramp up, the last in flight drain), so the
default is a one-minute send: at 20,000 subscribers (20 s) the combined rate reads 88-89 %, 95 % without the
first and last 3 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from _common import SAMPLE_ISSUE, add_subscribers, copy_publication, fake_ses, machine_load

EDGE = 3.0  # seconds left out at each end for the middle rate (the ramp is 2 s; a sender joins within 1 s)
TEST_DATABASE = "postgresql://newsletter:newsletter@127.0.0.1:5432/newsletter_test"


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux's /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fresh_schema(url: str, schema: str) -> str:
    """Drop and make `schema`; returns the URL whose connections work in it."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as err:
        shown = sa.engine.make_url(url).render_as_string(hide_password=True)
        raise SystemExit(
            f"Error: {shown}: cannot reach PostgreSQL: {str(err.orig).strip().splitlines()[0]} "
            "(start it, or set NEWSLETTER_BENCH_DATABASE_URL)"
        ) from None
    finally:
        engine.dispose()
    return url + ("&" if "?" in url else "?") + "options=" + quote(f"-csearch_path={schema}")


def _per_second(stats) -> list[int]:
    """Accepted arrivals in each whole second from the first: where a combined send loses its rate."""
    if not stats.accepted:
        return []
    first = stats.accepted[0][0]
    counts = [0] * (int(stats.accepted[-1][0] - first) + 1)
    for at, _ in stats.accepted:
        counts[int(at - first)] += 1
    return counts


def _middle_rate(stats, edge: float) -> float:
    """Accepted a second between `edge` seconds after the first arrival and `edge` before the last: the rate the
    senders keep once both are at work, without the ramp at the start and the draining at the end."""
    times = [at for at, _ in stats.accepted]
    if len(times) < 2 or times[-1] - times[0] <= 2 * edge:
        return 0.0
    middle = [at for at in times if times[0] + edge <= at <= times[-1] - edge]
    return (len(middle) - 1) / (middle[-1] - middle[0]) if len(middle) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=60_000)
    parser.add_argument("--quota", type=float, default=1000.0)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--schema", default="bench_two_senders")
    args = parser.parse_args()
    url = fresh_schema(os.environ.get("NEWSLETTER_BENCH_DATABASE_URL", TEST_DATABASE), args.schema)
    print(
        f"{args.senders} senders, {args.subscribers:,} subscribers, quota {args.quota:g}/s, "
        f"round trip {args.latency * 1000:g} ms; {machine_load()}",
        flush=True,
    )
    with (
        tempfile.TemporaryDirectory(prefix="newsletter-bench-") as tmp,
        fake_ses().FakeSesProcess(rate=args.quota, latency=args.latency) as ses,
    ):
        folder = copy_publication(Path(tmp))
        add_subscribers(url, args.subscribers)
        env = {
            **os.environ,
            "NEWSLETTER_DATABASE_URL": url,
            "NEWSLETTER_SES_ENDPOINT_URL": ses.endpoint_url,
            "NEWSLETTER_SECRET_KEY": "bench-secret-bench-secret-bench-secret",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        command = [sys.executable, "-m", "newsletter", "--root", str(folder), "send", SAMPLE_ISSUE, "--yes"]
        command += ["--transport", "ses"]
        started = time.monotonic()
        processes = [
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for _ in range(args.senders)
        ]
        fake_before = _process_cpu(ses.process.pid) if ses.process else 0.0
        outputs = [process.communicate() for process in processes]
        wall = time.monotonic() - started
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)  # the senders' only: the fake is not reaped yet
        fake_cpu = (_process_cpu(ses.process.pid) if ses.process else 0.0) - fake_before
        stats = ses.snapshot()
    expected = {f"reader{n}@example.com" for n in range(args.subscribers)}
    seen = stats.recipients()
    duplicates = stats.duplicates()
    omissions = expected - set(seen)
    rate = stats.rate()
    for n, (process, (out, err)) in enumerate(zip(processes, outputs, strict=True), 1):
        lines = out.strip().splitlines()
        shown = [line for line in lines if line.startswith(("Sent", "Throttled", "Worker processes"))] or lines[-1:]
        summary = "; ".join(line.strip() for line in shown)
        print(f"sender {n}: exit {process.returncode}; {summary}" + (f"; stderr: {err.strip()}" if err.strip() else ""))
    print(f"accepted {stats.sent:,} in {stats.span():.1f} s ({wall:.1f} s wall for both commands)")
    print(f"combined rate {rate:.0f}/s = {rate / args.quota * 100:.1f} % of the {args.quota:g}/s quota")
    middle = _middle_rate(stats, EDGE)
    print(f"without the first and last {EDGE:g} s: {middle:.0f}/s = {middle / args.quota * 100:.1f} %")
    print(
        f"busiest second: {stats.busiest_window()} accepted, {stats.busiest_window(include_throttled=True)} arrived; "
        f"throttled {len(stats.throttled)}; peak in flight at the fake {stats.max_concurrent}"
    )
    if stats.throttled and stats.accepted:
        first = stats.accepted[0][0]
        print(
            f"throttled at (s from the first arrival, time.monotonic() {first:.3f}): "
            + " ".join(f"{at - first:.2f}" for at in stats.throttled)
        )
    print(f"duplicates {len(duplicates)}, omissions {len(omissions)}")
    print("accepted per second from the first arrival: " + " ".join(map(str, _per_second(stats))))
    per_message = (cpu.ru_utime + cpu.ru_stime) * 1000 / max(1, stats.sent)
    print(f"CPU of the senders (whole commands, start-up and rendering included): {per_message:.2f} ms/message")
    print(f"CPU of the fake SES on the same cores: {fake_cpu * 1000 / max(1, stats.sent):.2f} ms/message")
    print(f"after: {machine_load()}")
    met = (
        rate >= 0.9 * args.quota
        and stats.busiest_window(include_throttled=True) <= args.quota
        and not duplicates
        and not omissions
        and all(process.returncode == 0 for process in processes)
    )
    print("targets met" if met else "targets missed")


if __name__ == "__main__":
    main()
