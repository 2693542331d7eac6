"""Benchmark `newsletter build`: 1,000 synthetic issues the size of the sample's Korean edition.

Prints (a) a cold build (no site, no cache), (b) a rebuild after one issue changed and (c) a rebuild after one
new issue was added (the weekly job), each as the median wall time and CPU time (user + system of the build and
its worker processes) of --runs runs, with the pages each rendered, and the peak memory of the build with all
its worker processes (PSS summed over the process tree, sampled in a separate run so the sampling does not slow
the timed ones). Every timed run starts after a `sync`, so the disk writes of the run before it do not slow it.
Search is left out (`search = false`): it is timed on its own.
Run: `python bench/build.py [--issues 1000] [--runs 3] [--page-size N]`.
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
from dataclasses import dataclass
from pathlib import Path

from _common import ROOT, TreeMemory, copy_publication

SAMPLE = ROOT / "issues" / "2023-09-25-top-ml-papers.md"
TAG_POOL = [f"topic-{n}" for n in range(60)]
FIRST_DATE = dt.date(2023, 9, 25)  # the newest generated issue; older ones go back a week each


@dataclass
class Run:
    """One timed run of a command."""

    wall: float  # seconds
    cpu: float  # user + system seconds of the process and every descendant it waited for
    output: str  # its stdout
    memory: TreeMemory | None = None


def issue_text(n: int, date: dt.date, tags: list[str]) -> str:
    """The sample's Korean edition as issue number `n` of `date`, tagged `tags`."""
    head, body = SAMPLE.read_text(encoding="utf-8").split("\n---\n", 1)
    front = re.sub(r"^date: .*$", f"date: {date}", head, flags=re.M)
    front = re.sub(r"^title: .*$", f'title: "주요 ML 논문 {n}호"', front, flags=re.M)
    front = re.sub(r"^tags: .*$", f"tags: [{', '.join(tags)}]", front, flags=re.M)
    return f"{front}\n---\n{body}"


def issue_tags(n: int, varied: bool) -> list[str]:
    """Three tags of the pool per issue, or 2-4 of them (`varied`, as bench/build_vs_hugo.py uses)."""
    count = 2 + n % 3 if varied else 3
    return [TAG_POOL[(n * 7 + k) % len(TAG_POOL)] for k in range(count)]


def make_publication(folder: Path, count: int, *, page_size: int | None = None, varied: bool = False) -> list[Path]:
    """A publication with `count` default-language issues made from the sample, one per week, newest first;
    search off, and `page_size` issues per listing page when given."""
    copy_publication(folder, issues=False)
    config = folder / "pyproject.toml"
    extra = "search = false\n" + (f"page_size = {page_size}\n" if page_size else "")
    config.write_text(config.read_text(encoding="utf-8").replace("feed_size =", extra + "feed_size =", 1), "utf-8")
    issues = folder / "issues"
    issues.mkdir()
    paths = []
    for n in range(count):
        date = FIRST_DATE - dt.timedelta(weeks=n)
        path = issues / f"{date}-weekly-{n}.md"
        path.write_text(issue_text(n, date, issue_tags(n, varied)), encoding="utf-8")
        paths.append(path)
    return paths


def edit_issue(path: Path) -> None:
    """The editor fixes an issue: one more paragraph at its end."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write("\nOne more paragraph.\n")


def add_issue(folder: Path, *, varied: bool = False) -> Path:
    """Next week's issue, newer than every other (the weekly job)."""
    date = FIRST_DATE + dt.timedelta(weeks=1)
    path = folder / "issues" / f"{date}-weekly-new.md"
    path.write_text(issue_text(-1, date, issue_tags(1, varied)), encoding="utf-8")
    return path


def timed(command: list[str], cwd: Path, *, sample_memory: bool = False) -> Run:
    """Run `command` after a `sync`, timing its wall and CPU time (os.wait4's usage: the process and the
    workers it waited for); exits with its stderr if it fails."""
    os.sync()  # pending writes of the run before would otherwise be flushed during this one
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, cwd=cwd)
        sampler = TreeMemory(process.pid) if sample_memory else None
        if sampler:
            sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if sampler:
            sampler.stopped.set()
            sampler.join()
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{err.read().decode(errors='replace')}")
        return Run(wall, usage.ru_utime + usage.ru_stime, out.read().decode(errors="replace"), sampler)


def build_command(folder: Path) -> list[str]:
    return [sys.executable, "-m", "newsletter", "--root", str(folder), "build"]


def pages_rendered(output: str) -> int:
    """The pages a build rendered, from its summary line ("… (87 pages rendered, 0 unchanged) …")."""
    found = re.search(r"\((\d+) pages rendered, (\d+) unchanged\)", output)
    if not found:
        raise SystemExit(f"no summary line in the build's output:\n{output}")
    return int(found.group(1))


def median(values: list[float]) -> float:
    return statistics.median(values)


def report(name: str, runs: list[Run], memory: TreeMemory | None) -> None:
    walls = [r.wall for r in runs]
    pages = sorted({pages_rendered(r.output) for r in runs})
    line = (
        f"{name:22s} median {median(walls):6.3f} s wall, {median([r.cpu for r in runs]):6.3f} s CPU "
        f"(walls: {', '.join(f'{w:.3f}' for w in walls)}); pages rendered: {', '.join(map(str, pages))}"
    )
    if memory is not None:
        line += (
            f"; peak memory of all its processes {memory.peak_pss_kb / 1024:5.1f} MB PSS "
            f"({memory.peak_rss_kb / 1024:5.1f} MB RSS summed)"
        )
    print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--issues", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--page-size", type=int, default=None, help="issues per listing page (default: 50)")
    args = parser.parse_args()
    # Each cold build gets a publication of its own, and none is deleted before the end: on ext4, creating
    # files right after deleting thousands makes the kernel's inode allocation crawl (recently_deleted()),
    # which measured the disk's recent history (+0.3 to 0.6 s) instead of the build.
    with tempfile.TemporaryDirectory(prefix="newsletter-bench-") as tmp:
        cold: list[Run] = []
        edited: list[Run] = []
        added: list[Run] = []
        memory: dict[str, TreeMemory | None] = {}
        for run in range(args.runs + 1):
            folder = Path(tmp) / f"run-{run}"
            folder.mkdir()
            paths = make_publication(folder, args.issues, page_size=args.page_size)
            if run == 0:
                size = sum(p.stat().st_size for p in paths) / len(paths) / 1024
                print(f"{args.issues} issues, {size:.1f} KB each on average, under {tmp}")
            last = run == args.runs  # one more run, sampling memory, which slows it a little
            command = build_command(folder)
            for name, runs in (("cold", cold), ("edit", edited), ("add", added)):
                if name == "edit":
                    edit_issue(paths[len(paths) // 2])
                elif name == "add":
                    add_issue(folder)
                result = timed(command, folder, sample_memory=last)
                if last:
                    memory[name] = result.memory
                else:
                    runs.append(result)
        report("cold build:", cold, memory["cold"])
        report("rebuild, one edited:", edited, memory["edit"])
        report("rebuild, one added:", added, memory["add"])
        print(f"pages: {sum(1 for _ in (folder / 'site').rglob('index.html'))}")


if __name__ == "__main__":
    main()
