"""Staging and swap: a build renders beside the site, into `.<site>.new-<pid>`, and puts the outputs in place only
when all of them rendered, so a failed build leaves the previous site untouched. Retired folders are removed in
a detached process; those of builds whose process is gone are removed by the next build."""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection, Iterable
from pathlib import Path

from .parallel import MADE_DIRS
from .search import SEARCH_FOLDER


def make_staging(out: Path) -> Path:
    """An empty staging folder for a build of `out`, after removing the leftovers of dead builds."""
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_folders(out)
    staging = out.parent / f".{out.name}.new-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    MADE_DIRS.clear()
    return staging


def drop_unused(staging: Path, prerendered: Iterable[str], used: Iterable[str]) -> None:
    """Delete the pages parse workers rendered into staging that the plan does not use (a cold build makes
    staging the site whole, so such a page, of an issue left out, would go public)."""
    for path in set(prerendered) - set(used):
        (staging / path).unlink(missing_ok=True)


def swap(
    out: Path,
    staging: Path,
    *,
    cold: bool,
    moved: Iterable[str],
    outputs: Collection[str],
    previous_outputs: Iterable[str],
    search: bool,
) -> None:
    """Put the rendered outputs in place. `cold`: the staging folder becomes the site in one rename.
    Else each of the `moved` files replaces its old version, a new search index its old one whole; the
    `previous_outputs` that are not `outputs` any more are removed (the search index too when search is off)."""
    if cold:
        retired = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            os.replace(out, retired)
        os.replace(staging, out)
        remove_in_background(retired)
        return
    for path in moved:
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / path, target)
    index, new_index = out / SEARCH_FOLDER, staging / SEARCH_FOLDER
    if new_index.is_dir() or (not search and index.is_dir()):
        retired = out.parent / f".{out.name}.old-{os.getpid()}"
        retired.mkdir(exist_ok=True)
        if index.is_dir():
            os.replace(index, retired / SEARCH_FOLDER)
        if new_index.is_dir():
            os.replace(new_index, index)
        remove_in_background(retired)
    for gone in set(previous_outputs) - set(outputs):
        gone_path = out / gone
        gone_path.unlink(missing_ok=True)
        for parent in gone_path.parents:
            if parent == out or any(parent.iterdir()):
                break
            parent.rmdir()
    shutil.rmtree(staging, ignore_errors=True)


def remove_in_background(folder: Path) -> None:
    """Delete a retired site in a detached grandchild so the command returns at once."""
    if not folder.exists():
        return
    try:
        child = os.fork()
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        return
    if child == 0:  # pragma: no cover - runs in the forked children
        try:
            if os.fork() == 0:
                shutil.rmtree(folder, ignore_errors=True)
        finally:
            os._exit(0)
    os.waitpid(child, 0)


def remove_stale_folders(out: Path) -> list[Path]:
    """Remove (in the background) the staging and retired folders of builds whose process is gone: a
    killed build leaves its `.site.new-<pid>` behind. Folders of a build still running are kept."""
    stale = []
    for kind in ("new", "old"):
        for folder in out.parent.glob(f".{out.name}.{kind}-*"):
            pid = folder.name.rsplit("-", 1)[1]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)) and folder.is_dir():
                stale.append(folder)
                remove_in_background(folder)
    return stale


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
