"""How every command reports a failure it knows: our errors and unreadable files as one `Error:` line, exit 1.

Its own module so that cli.py and the command modules it registers (cli_init.py) share it without importing
each other. Usage mistakes stay click's (exit 2).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from .errors import NewsletterError, one_line

F = TypeVar("F", bound=Callable[..., Any])


def reports_errors(command: F) -> F:
    """Turn our errors (and unreadable files) into one `Error:` line with exit code 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except NewsletterError as err:
            raise click.ClickException(str(err)) from None
        except OSError as err:
            where = one_line(str(getattr(err, "filename", None) or "file system"))
            what = one_line(str(err.strerror or err))
            raise click.ClickException(f"{where}: {what} (check the path and permissions)") from None

    return wrapper  # type: ignore[return-value]
