"""Benchmark `newsletter subscribers import`: a CSV of 100,000 rows into a fresh SQLite store.

Run: `python bench/import_csv.py [--rows 100000]`. Prints the wall time of the command and rows per second.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import copy_publication, write_subscribers_csv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="newsletter-bench-") as tmp:
        folder = copy_publication(Path(tmp), issues=False)
        csv_path = write_subscribers_csv(folder / "list.csv", args.rows)
        command = [sys.executable, "-m", "newsletter", "--root", str(folder), "subscribers", "import", str(csv_path)]
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if result.returncode:
            raise SystemExit(result.stderr)
        print(result.stdout.strip())
        print(f"import of {args.rows:,} rows: {wall:.2f} s wall ({args.rows / wall:,.0f} rows/s)")


if __name__ == "__main__":
    main()
