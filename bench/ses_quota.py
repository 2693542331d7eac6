"""Benchmark a send at the SES quota: the real send (plan_send + send_issue) of the sample issue, one process,
against the fake SES endpoint (tests/fake_ses.py) in a process of its own, for round trip x quota cells.

The fake answers each SendEmail after the round trip and enforces the quota as a strict sliding second (429
"Maximum sending rate exceeded."), like SES. Each cell sends quota x `--seconds` messages (10 s: the send lasts
about that long) and prints:
- the rate achieved (messages over the span from the first arrival to the last) and its share of the quota;
- the rate after the ramp (a send above 50/s starts at half its rate and reaches it in 2 s; a long send keeps
  this one, and the targets are judged on it);
- throttled answers, and the busiest sliding second (accepted, and every arrival);
- the client's CPU per message (user + system CPU over send_issue, with the send's worker processes: the loop,
  the send log, the requests; not the rendering in plan_send, not the fake);
- the most requests in flight (the loop's count and the fake's).

Run: `python bench/ses_quota.py` (every cell), `--cell 0.05:500` (repeatable), `--quick` (3 s a cell).
Targets (issue 9): >= 95 % of the quota after the ramp, 0 throttles, <= 2.5 ms CPU a message.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from _common import SAMPLE_ISSUE, add_subscribers, copy_publication, fake_ses, idle_slowdown, machine_load

CELLS = ((0.05, 14.0), (0.05, 100.0), (0.05, 500.0), (0.1, 500.0))  # (round trip s, quota /s)
SECRET = b"benchmark-secret-benchmark-secret"


@dataclass(frozen=True)
class Figures:
    latency: float
    quota: float
    messages: int
    sent: int
    rate: float
    steady: float  # the rate once the ramp is over (see _steady_rate)
    throttled: int
    throttled_at: list[float]  # seconds after the first arrival (the first five)
    busiest: int
    busiest_arrivals: int
    cpu_ms: float
    peak_loop: int
    peak_fake: int
    settled: float | None


def _cpu_seconds() -> float:
    """CPU of this process and of its reaped children (the send's worker processes, reaped when it ends; the
    fake runs in a process of its own that ends later, so it does not count)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _steady_rate(arrivals: list[float]) -> float:
    """Accepted messages a second from the end of the ramp (RAMP_SECONDS after the first arrival, when a send
    faster than RAMP_ABOVE has reached its rate) to the last arrival: what a long send keeps up."""
    from newsletter.sending import RAMP_SECONDS

    if len(arrivals) < 2:
        return 0.0
    begin = arrivals[0] + RAMP_SECONDS
    steady = [at for at in arrivals if at >= begin]
    span = steady[-1] - steady[0] if len(steady) > 1 else 0.0
    return (len(steady) - 1) / span if span > 0 else 0.0


def run_cell(latency: float, quota: float, seconds: float) -> Figures:
    from newsletter.config import load_settings
    from newsletter.issues import find_issue
    from newsletter.render.templates import load_templates
    from newsletter.sending import build_templates, plan_send, send_issue
    from newsletter.store import open_store

    messages = max(20, round(quota * seconds))
    with (
        tempfile.TemporaryDirectory(prefix="newsletter-bench-") as tmp,
        fake_ses().FakeSesProcess(rate=quota, latency=latency) as ses,
    ):
        folder = copy_publication(Path(tmp))
        os.environ["NEWSLETTER_SES_ENDPOINT_URL"] = ses.endpoint_url
        settings = load_settings(folder)
        add_subscribers(settings.database_url, messages)
        with open_store(settings.database_url) as store:
            issue = find_issue(settings, SAMPLE_ISSUE)
            templates = build_templates(settings, load_templates(settings), issue)
            plan = plan_send(settings, store, issue, templates, SECRET, transport="ses")
            cpu = _cpu_seconds()
            outcome = send_issue(plan, store)
            cpu = _cpu_seconds() - cpu
        stats = ses.snapshot()
    progress = outcome.progress
    if outcome.stopped:
        raise SystemExit(f"the send stopped: {outcome.stopped}")
    return Figures(
        latency,
        quota,
        messages,
        stats.sent,
        stats.rate(),
        _steady_rate([at for at, _ in stats.accepted]),
        len(stats.throttled),
        [round(at - stats.accepted[0][0], 2) for at in stats.throttled[:5]],
        stats.busiest_window(),
        stats.busiest_window(include_throttled=True),
        cpu * 1000 / max(1, progress.sent),
        progress.peak_in_flight,
        stats.max_concurrent,
        outcome.settled_rate,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cell", action="append", default=[], help="ROUND_TRIP_S:QUOTA, e.g. 0.05:500 (repeatable)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each send lasts at the quota")
    parser.add_argument("--quick", action="store_true", help="3 s a cell")
    args = parser.parse_args()
    cells = [tuple(float(part) for part in cell.split(":")) for cell in args.cell] or list(CELLS)
    seconds = 3.0 if args.quick else args.seconds
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    print(
        f"sample issue {SAMPLE_ISSUE}, {seconds:g} s a cell; {machine_load()}; Python work after a 50 ms pause takes "
        f"{idle_slowdown():.2f}x its time back to back (a low rate's CPU a message grows with it)",
        flush=True,
    )
    print(
        "| round trip | quota | messages | achieved | of quota | after the ramp | throttled "
        "| busiest second (accepted / arrived) | client CPU | peak in flight (loop / fake) | settled rate |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    failed = []
    for latency, quota in cells:
        f = run_cell(latency, quota, seconds)
        share = f.rate / f.quota * 100
        settled = f"{f.settled:.1f}/s" if f.settled else "-"
        throttled = f"{f.throttled} (at {', '.join(f'{at:g}' for at in f.throttled_at)} s)" if f.throttled else "0"
        print(
            f"| {f.latency * 1000:g} ms | {f.quota:g}/s | {f.sent:,} of {f.messages:,} | {f.rate:.1f}/s "
            f"| {share:.1f} % | {f.steady:.1f}/s ({f.steady / f.quota * 100:.1f} %) "
            f"| {throttled} | {f.busiest} / {f.busiest_arrivals} | {f.cpu_ms:.2f} ms/msg "
            f"| {f.peak_loop} / {f.peak_fake} | {settled} |",
            flush=True,
        )
        if f.steady / f.quota < 0.95 or f.throttled or f.busiest > f.quota or f.cpu_ms > 2.5 or f.sent != f.messages:
            failed.append(f"{f.latency * 1000:g} ms x {f.quota:g}/s")
    print(f"after: {machine_load()}")
    print("targets met" if not failed else "targets missed: " + ", ".join(failed))


if __name__ == "__main__":
    main()
