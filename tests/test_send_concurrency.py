"""The whole send under stress, as a user runs it: real `newsletter send --transport ses` processes against the
fake SES endpoint (tests/fake_ses.py) that records every message it accepted.

- SIGKILL with requests in flight, several times, then a resume: nobody skipped, and each kill repeats at most
  the stated bound (send_loop.crash_bound: the requests in flight plus the unrecorded result group).
- Two senders at once: refused on SQLite with one line, shared on PostgreSQL without a duplicate or a second
  over the quota.
- A PostgreSQL restart mid-send: the send reconnects, or stops with one line and a resume finishes.

Every wait is for evidence from the fake or the store, with a deadline.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from newsletter.config import load_settings
from newsletter.store import delivery_counts, insert_subscribers, open_store
from tests.conftest import ses_process_env, wait_until
from tests.fake_ses import FakeSes, Stats

ISSUE = "2023-09-25-top-ml-papers"
SECRET_KEY = "send-concurrency-tests-secret-key-0123456789"
MAX_IN_FLIGHT = 16  # [tool.newsletter.ses] max_in_flight of these tests' publication


def _prepare(publication: Path, database_url: str | None, count: int) -> tuple[str, set[str]]:
    """`count` subscribers in the store the send will use, and max_in_flight set; returns (store URL, addresses)."""
    with (publication / "pyproject.toml").open("a", encoding="utf-8") as config:
        config.write(f"\n[tool.newsletter.ses]\nmax_in_flight = {MAX_IN_FLIGHT}\n")
    url = database_url or load_settings(publication).database_url
    addresses = [f"user{n}@example.com" for n in range(count)]
    rows = (
        {"email": email, "name": f"User {n}", "lang": "en" if n % 3 == 0 else "ko"} for n, email in enumerate(addresses)
    )
    with open_store(url) as store:
        insert_subscribers(store, rows, source="test")
    return url, set(addresses)


def _command(publication: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "newsletter",
        "--root",
        str(publication),
        "send",
        ISSUE,
        "--yes",
        "--transport",
        "ses",
    ]


def _env(ses: FakeSes, database_url: str | None = None) -> dict[str, str]:
    return ses_process_env(ses.endpoint_url, SECRET_KEY, database_url)


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in stderr, stderr
    return lines[0]


def _final_counts(url: str) -> dict[str, int]:
    with open_store(url) as store:
        return delivery_counts(store, ISSUE)


def _all_sent(counts: dict[str, int], total: int) -> bool:
    return counts["sent"] == total and sum(counts.values()) == total


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_sigkill_with_requests_in_flight_repeats_at_most_the_bound_and_skips_nobody(
    publication: Path, database_url: str
) -> None:
    from newsletter.send_loop import crash_bound

    kills, count = 4, 600
    url, expected = _prepare(publication, database_url, count)
    bound = crash_bound(MAX_IN_FLIGHT)
    with FakeSes(rate=100, latency=0.2, keep_raw=False) as ses:
        env = _env(ses, url)
        marks: list[tuple[int, int]] = []  # (accepted by the end of the killed run, in flight just before its kill)
        for _ in range(kills):
            before = ses.sent
            process = subprocess.Popen(
                _command(publication), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
            )
            try:
                wait_until(
                    lambda: ses.sent >= before + 40 and ses.in_flight >= MAX_IN_FLIGHT // 2,  # noqa: B023
                    seconds=60,
                    what=f"the send to have {MAX_IN_FLIGHT // 2} requests in flight",
                )
                in_flight = ses.in_flight
            finally:
                process.send_signal(signal.SIGKILL)
                process.wait()
            wait_until(lambda: ses.in_flight == 0, what="the killed run's requests to be answered")
            marks.append((ses.sent, in_flight))
        final = subprocess.run(_command(publication), capture_output=True, text=True, env=env, timeout=180)
        stats = ses.snapshot()
    assert final.returncode == 0, final.stderr
    assert set(stats.recipients()) == expected  # nobody skipped
    runs = _runs(stats, [mark for mark, _ in marks])
    repeated = [len(run & set().union(*runs[n + 1 :])) for n, run in enumerate(runs[:-1])]
    assert max(repeated) <= bound, (repeated, bound, marks)
    assert sum(stats.recipients().values()) == count + sum(repeated), "a duplicate not explained by a kill"
    assert _all_sent(_final_counts(url), count), _final_counts(url)


def test_a_second_ctrl_c_stops_at_once_in_one_line_and_the_resume_repeats_at_most_the_bound(
    publication: Path,
) -> None:
    """The first Ctrl-C waits for the answers in flight (3 s each here), the second stops at once: one line that
    says what may arrive twice and how to resume; the resume skips nobody and repeats at most the crash bound."""
    import threading

    from newsletter.send_loop import crash_bound

    count = 200
    url, expected = _prepare(publication, None, count)
    with FakeSes(rate=100, latency=3.0, keep_raw=False) as ses:
        env = _env(ses, url)
        process = subprocess.Popen(
            _command(publication), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
        )
        assert process.stderr is not None
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)  # type: ignore[arg-type]
        reader.start()
        try:
            wait_until(lambda: ses.in_flight >= MAX_IN_FLIGHT // 2, seconds=60, what="requests in flight")
            process.send_signal(signal.SIGINT)
            wait_until(lambda: any("Stopping after" in line for line in lines), what="the first Ctrl-C's line")
            assert ses.in_flight > 0  # their answers are up to 3 s away: the second Ctrl-C comes while they are out
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)
        finally:
            process.kill()
        reader.join(timeout=10)
        stopped = [line for line in lines if line.strip()][-1].strip()
        ses.latency = 0.02  # for the resume
        wait_until(lambda: ses.in_flight == 0, what="the stopped run's requests to be answered")
        mark = ses.sent
        final = subprocess.run(_command(publication), capture_output=True, text=True, env=env, timeout=180)
        stats = ses.snapshot()
    assert process.returncode == 1 and not any("Traceback" in line or "Aborted" in line for line in lines), lines
    assert stopped.startswith("Error: send: stopped at once, without the answers to its requests in flight: ")
    assert "those whose requests had left may arrive twice" in stopped
    assert f"(run 'newsletter send {ISSUE} --transport ses' again to resume; " in stopped
    assert final.returncode == 0, final.stderr
    assert set(stats.recipients()) == expected  # nobody skipped
    first, resumed = _runs(stats, [mark])
    assert len(first & resumed) <= crash_bound(MAX_IN_FLIGHT)
    assert sum(stats.recipients().values()) == count + len(first & resumed)
    assert _all_sent(_final_counts(url), count), _final_counts(url)


def _runs(stats: Stats, marks: list[int]) -> list[set[str]]:
    """The recipients each run had accepted, split at the marks (the fake's count after each kill)."""
    edges = [0, *marks, stats.sent]
    return [{who for _, who in stats.accepted[start:end]} for start, end in zip(edges, edges[1:], strict=False)]


def test_a_second_sender_on_sqlite_is_refused_in_one_line_and_the_first_sends_each_once(publication: Path) -> None:
    count = 200
    url, expected = _prepare(publication, None, count)
    with FakeSes(rate=20, latency=0.05, keep_raw=False) as ses:
        env = _env(ses)
        first = subprocess.Popen(
            _command(publication), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        try:
            wait_until(lambda: ses.sent >= 5, seconds=60, what="the first sender to be sending")
            second = subprocess.run(_command(publication), capture_output=True, text=True, env=env, timeout=60)
            assert first.poll() is None, "the first sender ended before the second was tried"
            out, err = first.communicate(timeout=120)
        finally:
            if first.poll() is None:
                first.kill()
        stats = ses.snapshot()
    assert second.returncode == 1
    line = _one_error_line(second.stderr)
    assert f"pid {first.pid}" in line, line
    assert first.returncode == 0, err
    assert stats.recipients() == dict.fromkeys(expected, 1)
    assert _all_sent(_final_counts(url), count)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_senders_on_postgresql_share_the_list_and_the_quota(publication: Path, database_url: str) -> None:
    count, quota = 1500, 200
    url, expected = _prepare(publication, database_url, count)
    with FakeSes(rate=quota, latency=0.05, keep_raw=False) as ses:
        env = _env(ses, url)
        processes = [
            subprocess.Popen(_command(publication), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for _ in range(2)
        ]
        outputs = [process.communicate(timeout=180) for process in processes]
        stats = ses.snapshot()
    assert [process.returncode for process in processes] == [0, 0], outputs
    assert stats.recipients() == dict.fromkeys(expected, 1)  # each exactly once, nobody left out
    assert stats.busiest_window(include_throttled=True) <= quota  # together they kept to the one quota
    assert _all_sent(_final_counts(url), count)


def _restart_postgresql() -> None:
    """Restart the local PostgreSQL 15 cluster the tests use (root only: pg_ctlcluster)."""
    subprocess.run(
        ["pg_ctlcluster", "15", "main", "restart", "-m", "fast"], check=True, capture_output=True, timeout=60
    )


def _can_restart_postgresql() -> str | None:
    """Why this test cannot restart the server here, or None."""
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql/15/main").is_dir():
        return "no local PostgreSQL 15 cluster 'main' to restart (pg_ctlcluster)"
    if os.geteuid() != 0:
        return "restarting PostgreSQL needs root (pg_ctlcluster 15 main restart)"
    if os.environ.get("CI", "").lower() != "true" and os.environ.get("NEWSLETTER_TEST_RESTART_POSTGRESQL") != "1":
        return "restarts the shared PostgreSQL server: runs under CI=true, or with NEWSLETTER_TEST_RESTART_POSTGRESQL=1"
    return None


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_postgresql_restart_mid_send_reconnects_or_stops_in_one_line_and_resumes(
    publication: Path, database_url: str
) -> None:
    from newsletter.send_loop import crash_bound

    reason = _can_restart_postgresql()
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    count = 800
    url, expected = _prepare(publication, database_url, count)
    with FakeSes(rate=100, latency=0.05, keep_raw=False) as ses:
        env = _env(ses, url)
        process = subprocess.Popen(
            _command(publication), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        try:
            wait_until(lambda: ses.sent >= 100, seconds=60, what="the send to be well under way")
            _restart_postgresql()
            sent_at_restart = ses.sent
            out, err = process.communicate(timeout=180)
        finally:
            if process.poll() is None:
                process.kill()
        assert sent_at_restart < count, "the send finished before the restart"
        assert "Traceback" not in err, err
        if process.returncode != 0:
            _one_error_line(err)
            resumed = subprocess.run(_command(publication), capture_output=True, text=True, env=env, timeout=180)
            assert resumed.returncode == 0, resumed.stderr
        stats = ses.snapshot()
    assert set(stats.recipients()) == expected
    assert sum(stats.recipients().values()) - count <= crash_bound(MAX_IN_FLIGHT)
    assert _all_sent(_final_counts(url), count)


def test_worker_processes_are_forked_for_an_account_rate_one_process_cannot_keep() -> None:
    """Above PER_PROCESS_RATE a send of SES forks one process per PER_PROCESS_RATE (two at least, within the cores
    and MAX_PROCESSES); the send loop then uses them only while its share of the rate passes PER_PROCESS_RATE."""
    from types import SimpleNamespace

    from newsletter.sending import FORK, MAX_PROCESSES, PER_PROCESS_RATE, worker_processes

    def plan(rate: float | None, transport: str = "ses") -> Any:
        return SimpleNamespace(rate=rate, transport=SimpleNamespace(name=transport))

    if not FORK:
        pytest.skip("no fork on this platform")
    assert worker_processes(plan(PER_PROCESS_RATE)) == 1
    assert worker_processes(plan(PER_PROCESS_RATE + 1)) == 2
    assert worker_processes(plan(40 * PER_PROCESS_RATE)) == min(max(2, os.cpu_count() or 1), MAX_PROCESSES)
    assert worker_processes(plan(4 * PER_PROCESS_RATE, "smtp")) == 1
    assert worker_processes(plan(None)) == 1


def test_a_fast_send_spreads_its_requests_over_worker_processes_and_sends_each_once(publication: Path) -> None:
    """Above PER_PROCESS_RATE the attempts are made by forked worker processes; the rate, the count and the
    send log are still this process's, and the workers are gone when the send ends."""
    from newsletter.sending import PER_PROCESS_RATE

    count = 900
    rate = PER_PROCESS_RATE * 2 + 50
    url, expected = _prepare(publication, None, count)
    with FakeSes(rate=rate, latency=0.02, keep_raw=False) as ses:
        result = subprocess.run(_command(publication), capture_output=True, text=True, env=_env(ses), timeout=120)
        stats = ses.snapshot()
    assert result.returncode == 0, result.stderr
    assert "sent by up to 2 worker processes" in result.stdout
    assert f"Worker processes made {count} of {count} attempt(s)\n" in result.stdout
    assert stats.recipients() == dict.fromkeys(expected, 1)
    assert not stats.throttled and stats.busiest_window(include_throttled=True) <= rate
    assert _all_sent(_final_counts(url), count)
    orphans = subprocess.run(["pgrep", "-f", f"--root {publication}"], capture_output=True, text=True)
    assert orphans.stdout == "", orphans.stdout  # no worker process outlives the send


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_sender_whose_share_one_process_keeps_makes_its_requests_itself(publication: Path, database_url: str) -> None:
    """The account's rate would need worker processes, but another live sender shares it, so this sender's share
    (half) is one process's work: its own threads make every request (less CPU a message than handing each over a
    pipe), within the share, each recipient once."""
    import threading

    from newsletter.sending import PER_PROCESS_RATE
    from newsletter.store.senders import finish_sender, heartbeat, register_sender

    count, rate = 600, 2 * PER_PROCESS_RATE - 100
    url, expected = _prepare(publication, database_url, count)
    done = threading.Event()
    with open_store(url) as store:
        other = register_sender(store, ISSUE, exclusive=False).sender_id

        def keep_alive() -> None:  # the other sender: live, renewing its row, sending nothing
            while not done.wait(0.2):
                heartbeat(store, other, ISSUE)

        beating = threading.Thread(target=keep_alive)
        beating.start()
        try:
            with FakeSes(rate=rate, latency=0.02, keep_raw=False) as ses:
                result = subprocess.run(
                    _command(publication), capture_output=True, text=True, env=_env(ses, url), timeout=120
                )
                stats = ses.snapshot()
        finally:
            done.set()
            beating.join()
            finish_sender(store, other, ISSUE)
    assert result.returncode == 0, result.stderr
    assert "sent by up to 2 worker processes (fewer if other senders share the rate)" in result.stdout
    assert f"Worker processes made 0 of {count} attempt(s); this process made the others" in result.stdout
    assert stats.recipients() == dict.fromkeys(expected, 1)
    assert stats.busiest_window(include_throttled=True) <= rate / 2
    assert _all_sent(_final_counts(url), count)
