"""Read a file of the publication (settings, templates, strings, CSS, a CSV) only if it is a regular file.

A FIFO would block the read for ever, a device never end, a folder fail with a confusing message: each is
refused with one line before anything is read, and so is a file over its size limit.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import NewsletterError

# (where, what, what to do) → the error to raise; ConfigError, TemplateError and NewsletterError fit as they are.
Failure = Callable[[str, str, str], NewsletterError]


@dataclass(frozen=True)
class FileRules:
    """How one kind of file is read: its size limit, the error to raise, and the words of each refusal."""

    limit: int
    fail: Failure = NewsletterError
    kind: str = ""  # "an issue file": named in the size refusal
    not_regular_hint: str = "put a plain file there"
    too_big_hint: str = "make it smaller"

    def read(self, path: Path, where: str) -> bytes:
        """The bytes of `path`, refusing what is not a regular file or is over the limit.

        The file is opened without blocking (a FIFO's open would wait for a writer) and checked on its open
        descriptor, so a file swapped in between cannot slip past. FileNotFoundError is left to the caller.
        """
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a folder opens, then is refused
        try:
            status = os.fstat(descriptor)
            if not stat.S_ISREG(status.st_mode):
                raise self.fail(where, "is not a regular file", self.not_regular_hint)
            self.check_size(status.st_size, where)
            with os.fdopen(descriptor, "rb", closefd=True) as handle:
                descriptor = -1
                raw = handle.read(self.limit + 1)
        finally:
            if descriptor >= 0:
                os.close(descriptor)
        self.check_size(len(raw), where)  # it grew since
        return raw

    def check_size(self, size: int, where: str) -> None:
        """Refuse `size` bytes over the limit."""
        if size > self.limit:
            limit = f"the {self.limit:,}-byte limit of {self.kind}" if self.kind else f"the limit of {self.limit:,}"
            over = f"over {limit}"
            raise self.fail(where, f"is {size:,} bytes, {over}", self.too_big_hint)


def read_regular_file(path: Path, where: str, *, limit: int, fail: Failure = NewsletterError) -> bytes:
    """The bytes of `path` under the default words (see FileRules.read)."""
    return FileRules(limit, fail).read(path, where)
