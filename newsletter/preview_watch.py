"""The preview's watcher: a thread that hands each batch of changed files (watchfiles) to the preview's state.

It watches what the state names (issues/, templates/, the theme, pyproject.toml) and starts again when that
changes, such as templates/ being made. `ready` is set once the watches are in place and whatever changed
before that was taken in, so a change made after the address is printed is never missed.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from .errors import one_line
from .preview_state import PreviewState

WAKE_MS = 300  # how often the watcher wakes without changes, to see whether the folders it watches changed


class Watcher(threading.Thread):
    """Reloads `state` as its files change, until stop()."""

    def __init__(self, state: PreviewState) -> None:
        super().__init__(name="preview-watch", daemon=True)
        self.state = state
        self.ready = threading.Event()
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            import watchfiles

            while not self._stop_event.is_set():
                paths = self.state.watched()
                for changes in watchfiles.watch(
                    *paths,
                    stop_event=self._stop_event,
                    rust_timeout=WAKE_MS,
                    yield_on_timeout=True,
                    raise_interrupt=False,
                ):
                    if not self.ready.is_set():  # the watches are in place: take in what changed meanwhile
                        self.state.resync()
                        self.ready.set()
                    if changes:
                        self.state.reload(Path(path) for _, path in changes)
                    if self.state.watched() != paths:
                        break
        except Exception as err:  # no watcher (no watchfiles, no inotify watches left): the pages stop reloading
            print(
                f"Error: watching for changes: {one_line(str(err) or type(err).__name__)} (the pages no longer "
                "reload by themselves; restart the preview)",
                file=sys.stderr,
                flush=True,
            )
        finally:
            self.ready.set()

    def stop(self) -> None:
        self._stop_event.set()
