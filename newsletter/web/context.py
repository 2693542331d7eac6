"""What the views share: the settings, store, templates, secret, limits and clock of one app, kept on the app."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flask import current_app

from ..config import Settings
from ..confirmations import ConfirmationWorker
from ..render.templates import Templates
from ..store import Store

EXTENSION = "newsletter"  # app.extensions key of the WebContext
EventsHandler = Callable[[bytes, dict[str, str]], tuple[int, str]]  # SNS HTTP body and headers → status, text


class SlidingWindow:
    """At most `limit` events per key in the last `seconds` (clock injected for tests)."""

    def __init__(self, limit: int, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.seconds = seconds
        self.clock = clock
        self.events: dict[str, deque[float]] = {}
        self.lock = threading.Lock()

    def allow(self, key: str) -> bool:
        """Count an event for `key`; False (and not counted) when `key` had `limit` already."""
        now = self.clock()
        with self.lock:
            recent = self.events.setdefault(key, deque())
            while recent and recent[0] <= now - self.seconds:
                recent.popleft()
            if len(recent) >= self.limit:
                return False
            recent.append(now)
            if len(self.events) > 100_000:  # forget idle keys so memory stays bounded
                self.events = {k: v for k, v in self.events.items() if v and v[-1] > now - self.seconds}
            return True


@dataclass(frozen=True)
class Limits:
    """How often sign-ups may come: per client address, and confirmation mails per address."""

    per_client: SlidingWindow
    per_address: SlidingWindow

    @classmethod
    def for_sign_ups(cls, per_client: int) -> Limits:
        """`per_client` sign-ups per client per 10 minutes, 3 confirmation mails per address per day."""
        return cls(SlidingWindow(limit=per_client, seconds=600), SlidingWindow(limit=3, seconds=24 * 3600))


@dataclass(frozen=True)
class WebContext:
    """One app's shared state, in `app.extensions[EXTENSION]`; views reach it through `context()`."""

    settings: Settings
    store: Store
    templates: Templates
    secret: bytes  # signs and checks links
    limits: Limits
    clock: Callable[[], float]  # Unix seconds: stamps and checks confirmation links
    site: Path  # the built archive the app serves
    mails: ConfirmationWorker  # sends the confirmation and welcome mails the views leave due
    events_handler: EventsHandler | None  # SNS HTTP notifications (events.py); None: 404
    archive_root: str  # the archive's home when the app has a host of its own, else ""
    policy: str  # the Content-Security-Policy of every answer
    development_note: str | None  # the banner's words in development mode; None otherwise


def context() -> WebContext:
    """The WebContext of the app handling this request."""
    shared: WebContext = current_app.extensions[EXTENSION]
    return shared
