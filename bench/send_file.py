"""Benchmark `newsletter send` end to end to the file transport, send log included (SQLite, WAL).

Imports N subscribers, runs the real command as a subprocess and prints its wall time, the rate its
send loop reached (from its summary line) and its peak RSS. Run: `python bench/send_file.py [--subscribers 10000]`.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import SAMPLE_ISSUE, copy_publication, write_subscribers_csv


def newsletter(folder: Path, *args: str) -> str:
    """Run one command against the scratch publication; its stdout."""
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "--root", str(folder), *args], capture_output=True, text=True
    )
    if result.returncode:
        raise SystemExit(result.stderr)
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="newsletter-bench-") as tmp:
        folder = copy_publication(Path(tmp))
        csv_path = write_subscribers_csv(folder / "list.csv", args.subscribers)
        newsletter(folder, "subscribers", "import", str(csv_path))
        command = [sys.executable, "-m", "newsletter", "--root", str(folder), "send", SAMPLE_ISSUE, "--yes"]
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _, _, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        out = process.stdout.read() if process.stdout else ""
        summary = next((line for line in out.splitlines() if line.startswith("Sent ")), out)
        loop_rate = re.search(r"\(([\d,.]+)/s\)", summary)
        files = sum(1 for _ in (folder / "outbox" / SAMPLE_ISSUE).glob("*.eml"))
        print(summary)
        loop = loop_rate.group(1) if loop_rate else "?"
        print(
            f"{files:,} .eml files; whole command {wall:.2f} s = {args.subscribers / wall:,.0f} messages/s "
            f"(send loop {loop} messages/s); peak RSS {usage.ru_maxrss / 1024:.0f} MB"
        )


if __name__ == "__main__":
    main()
