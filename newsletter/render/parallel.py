"""Worker processes for the site build: forked, so they inherit what the parent has loaded (templates,
records) instead of receiving it pickled; outputs are rendered into the staging folder."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PARALLEL_THRESHOLD = 64  # below this much work, starting worker processes costs more than it saves


def worker_pool(workers: int) -> Any:
    """Forked workers: they inherit the parsed data and templates instead of receiving them pickled.

    They die with the build: a killed parent leaves no workers behind (see _die_with_parent).
    """
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    return ProcessPoolExecutor(
        max_workers=workers, mp_context=get_context("fork"), initializer=_die_with_parent, initargs=(os.getpid(),)
    )


PARENT_POLL_SECONDS = 0.5


def _die_with_parent(parent: int) -> None:  # pragma: no cover - runs in the forked workers
    """Make this worker exit when `parent` does, even if it is SIGKILLed (its queue never closes then).

    On Linux the kernel sends SIGKILL when the parent dies (prctl PR_SET_PDEATHSIG); elsewhere, and as a
    fallback, a thread checks every PARENT_POLL_SECONDS that the parent is still this process's parent.
    """
    import signal
    import threading

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class RenderJob:
    """One output to render: its site path and how to make its bytes."""

    path: str
    make: Callable[[], str | bytes]


_PENDING: list[RenderJob] = []  # set before forking render workers, which inherit it
_STAGING: Path = Path()


MADE_DIRS: set[str] = set()  # folders this process made or saw: one mkdir each, not one per file


def write_output(target: Path, data: str | bytes) -> None:
    """Write one output file: three system calls (open, write, close), not the half dozen of open()."""
    folder = os.path.dirname(target)
    if folder not in MADE_DIRS:
        try:
            os.mkdir(folder)  # usually its parent exists: one call instead of makedirs' stat and mkdir
        except FileExistsError:
            pass
        except FileNotFoundError:
            os.makedirs(folder, exist_ok=True)
        MADE_DIRS.add(folder)
    view = memoryview(data.encode("utf-8") if isinstance(data, str) else data)
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        while view:
            view = view[os.write(descriptor, view) :]
    finally:
        os.close(descriptor)


def _render_jobs(indices: list[int]) -> int:
    for index in indices:
        job = _PENDING[index]
        write_output(_STAGING / job.path, job.make())
    return len(indices)


def render_all(
    jobs: list[RenderJob], staging: Path, workers: int, while_rendering: Callable[[], None] = lambda: None
) -> None:
    """Render every job into `staging`, split over forked workers when there are many; the parent runs
    `while_rendering` meanwhile (or first, when it renders alone)."""
    global _PENDING, _STAGING
    _PENDING, _STAGING = jobs, staging
    try:
        if len(jobs) < PARALLEL_THRESHOLD or workers < 2:
            while_rendering()
            _render_jobs(list(range(len(jobs))))
            return
        # Feeds cost ten listing pages each: hand them out first, then the rest in small chunks that
        # idle workers pick up, so both finish together.
        order = sorted(range(len(jobs)), key=lambda i: not jobs[i].path.endswith(".xml"))
        chunks = [order[i : i + 8] for i in range(0, len(order), 8)]
        with worker_pool(workers) as pool:
            done = pool.map(_render_jobs, chunks)
            while_rendering()
            list(done)
    finally:
        _PENDING = []
