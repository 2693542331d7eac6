"""Read a file of the publication (settings, templates, strings, CSS, a CSV) only if it is a regular file.

A FIFO would block the read for ever, a device never end, a folder fail with a confusing message: each is
refused with one line before anything is read, and so is a file over its size limit.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from .errors import NewsletterError

# (where, what, what to do) → the error to raise; ConfigError, TemplateError and NewsletterError fit as they are.
Failure = Callable[[str, str, str], NewsletterError]


def read_regular_file(path: Path, where: str, *, limit: int, fail: Failure = NewsletterError) -> bytes:
    """The bytes of `path`, refusing what is not a regular file or is over `limit` bytes.

    The file is opened without blocking (a FIFO's open would wait for a writer) and checked on its open
    descriptor, so a file swapped in between cannot slip past. FileNotFoundError is left to the caller.
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a folder opens too, then is refused
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise fail(where, "is not a regular file", "put a plain file there")
        _check_size(status.st_size, where, limit, fail)
        with os.fdopen(descriptor, "rb", closefd=True) as handle:
            descriptor = -1
            raw = handle.read(limit + 1)
    finally:
        if descriptor >= 0:
            os.close(descriptor)
    _check_size(len(raw), where, limit, fail)  # it grew since
    return raw


def _check_size(size: int, where: str, limit: int, fail: Failure) -> None:
    if size > limit:
        raise fail(where, f"is {size:,} bytes, over the limit of {limit:,}", "make it smaller")
