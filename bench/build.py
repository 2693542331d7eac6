"""Benchmark `newsletter build`: 1,000 synthetic issues the size of the sample's Korean edition.

Prints (a) a cold build (no site, no cache) and (b) a rebuild after one issue changed, each as wall time
and the peak RSS of the `newsletter build` process. Run: `python bench/build.py [--issues 1000]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, copy_publication

SAMPLE = ROOT / "issues" / "2023-09-25-top-ml-papers.md"
TAG_POOL = [f"topic-{n}" for n in range(60)]


def make_publication(folder: Path, count: int) -> list[Path]:
    """A publication with `count` default-language issues made from the sample, one per week."""
    copy_publication(folder, issues=False)
    issues = folder / "issues"
    issues.mkdir()
    sample = SAMPLE.read_text(encoding="utf-8")
    head, body = sample.split("\n---\n", 1)
    paths = []
    for n in range(count):
        date = dt.date(2023, 9, 25) - dt.timedelta(weeks=n)
        tags = ", ".join(TAG_POOL[(n * 7 + k) % len(TAG_POOL)] for k in range(3))
        front = re.sub(r"^date: .*$", f"date: {date}", head, flags=re.M)
        front = re.sub(r"^title: .*$", f'title: "주요 ML 논문 {n}호"', front, flags=re.M)
        front = re.sub(r"^tags: .*$", f"tags: [{tags}]", front, flags=re.M)
        path = issues / f"{date}-weekly-{n}.md"
        path.write_text(f"{front}\n---\n{body}", encoding="utf-8")
        paths.append(path)
    return paths


def timed_build(folder: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one `newsletter build` subprocess."""
    command = [sys.executable, "-m", "newsletter", "--root", str(folder), "build"]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, _, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if process.returncode not in (0, None) and process.returncode != 0:
        raise SystemExit(process.stderr.read().decode() if process.stderr else "build failed")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--issues", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="newsletter-bench-") as tmp:
        folder = Path(tmp)
        paths = make_publication(folder, args.issues)
        size = sum(p.stat().st_size for p in paths) / len(paths) / 1024
        print(f"{args.issues} issues, {size:.1f} KB each on average")
        wall, rss = timed_build(folder)
        print(f"cold build:            {wall:6.3f} s wall, {rss:6.1f} MB peak RSS")
        changed = paths[len(paths) // 2]
        changed.write_text(changed.read_text(encoding="utf-8") + "\nOne more paragraph.\n", encoding="utf-8")
        wall, rss = timed_build(folder)
        print(f"rebuild, one changed:  {wall:6.3f} s wall, {rss:6.1f} MB peak RSS")
        print(f"pages: {sum(1 for _ in (folder / 'site').rglob('index.html'))}")
        _ = resource  # peak RSS comes from wait4 for the child alone


if __name__ == "__main__":
    main()
