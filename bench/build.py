"""Benchmark `newsletter build`: 1,000 synthetic issues the size of the sample's Korean edition.

Prints (a) a cold build (no site, no cache) and (b) a rebuild after one issue changed, each as the median
wall time of --runs runs, and the peak memory of the build with all its worker processes (PSS summed over the
process tree, sampled in a separate run so the sampling does not slow the timed ones).
Run: `python bench/build.py [--issues 1000] [--runs 3]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, TreeMemory, copy_publication

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


def run_build(folder: Path, *, sample_memory: bool = False) -> tuple[float, TreeMemory | None]:
    """(wall seconds, the memory sampler if asked for) of one `newsletter build` subprocess."""
    command = [sys.executable, "-m", "newsletter", "--root", str(folder), "build"]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=folder)
    sampler = TreeMemory(process.pid) if sample_memory else None
    if sampler:
        sampler.start()
    _, status, _ = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if sampler:
        sampler.stopped.set()
        sampler.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(process.stderr.read().decode() if process.stderr else "build failed")
    return wall, sampler


def one_changed(folder: Path, path: Path, **options: bool) -> tuple[float, TreeMemory | None]:
    with path.open("a", encoding="utf-8") as handle:
        handle.write("\nOne more paragraph.\n")
    return run_build(folder, **options)


def report(name: str, walls: list[float], memory: TreeMemory | None) -> None:
    assert memory is not None
    print(
        f"{name:22s} median {statistics.median(walls):6.3f} s wall (runs: {', '.join(f'{w:.3f}' for w in walls)}); "
        f"peak memory of all its processes {memory.peak_pss_kb / 1024:5.1f} MB PSS "
        f"({memory.peak_rss_kb / 1024:5.1f} MB RSS summed)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--issues", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    # Each cold build gets a publication of its own, and none is deleted before the end: on ext4, creating
    # files right after deleting thousands makes the kernel's inode allocation crawl (recently_deleted()),
    # which measured the disk's recent history (+0.3 to 0.6 s) instead of the build.
    with tempfile.TemporaryDirectory(prefix="newsletter-bench-") as tmp:
        cold_walls, rebuild_walls = [], []
        for run in range(args.runs + 1):
            folder = Path(tmp) / f"run-{run}"
            folder.mkdir()
            paths = make_publication(folder, args.issues)
            changed = paths[len(paths) // 2]
            if run == 0:
                size = sum(p.stat().st_size for p in paths) / len(paths) / 1024
                print(f"{args.issues} issues, {size:.1f} KB each on average, under {tmp}")
            last = run == args.runs  # one more run, sampling memory, which slows it a little
            wall, cold_memory = run_build(folder, sample_memory=last)
            if not last:
                cold_walls.append(wall)
            wall, rebuild_memory = one_changed(folder, changed, sample_memory=last)
            if not last:
                rebuild_walls.append(wall)
        report("cold build:", cold_walls, cold_memory)
        report("rebuild, one changed:", rebuild_walls, rebuild_memory)
        print(f"pages: {sum(1 for _ in (folder / 'site').rglob('index.html'))}")


if __name__ == "__main__":
    main()
