"""What the benchmarks share: a scratch copy of the sample publication."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

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


def send_sample_issue(folder: Path, transport, limiter):
    """Run the real send loop for the sample issue over the subscribers already in `folder`'s store."""
    from newsletter.config import load_settings
    from newsletter.issues import find_issue
    from newsletter.render.templates import load_templates
    from newsletter.sending import build_templates, send_edition, start_send
    from newsletter.store import open_store

    settings = load_settings(folder)
    issue = find_issue(settings, SAMPLE_ISSUE)
    messages = build_templates(settings, load_templates(settings), issue)
    with open_store(settings.database_url) as store:
        total = start_send(store, issue, settings, resend=False)
        return send_edition(
            settings, store, issue, transport, messages, b"benchmark-secret-benchmark", limiter=limiter, total=total
        )


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
