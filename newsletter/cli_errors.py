"""How every command reports a failure it knows: our errors and unreadable files as one `Error:` line, exit 1.

Its own module so that cli.py and the command modules it registers (cli_init.py) share it without importing
each other. Usage mistakes (an unknown option, a bad value, a missing argument) are one line too, exit 1, naming
the command and the option (`OneLineUsageGroup`), instead of click's usage block and exit 2. Standard output
closed early (`newsletter … | head -1`) is no error: the command stops quietly with exit 1, as Python's
documentation recommends (see `stop_quietly`).
"""

from __future__ import annotations

import functools
import os
import select
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from .errors import NewsletterError, one_line

F = TypeVar("F", bound=Callable[..., Any])
QUOTES = "'\""  # around an option's name in click's hint


def reports_errors(command: F) -> F:
    """Turn our errors (and unreadable files) into one `Error:` line with exit code 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except NewsletterError as err:
            raise click.ClickException(str(err)) from None
        except BrokenPipeError as err:
            if not stdout_is_closed():  # a socket or another pipe of ours: a real failure
                raise click.ClickException(f"{_where(err)}: {one_line(str(err.strerror or err))}") from None
            stop_quietly()
        except OSError as err:
            where = _where(err)
            what = one_line(str(err.strerror or err))
            raise click.ClickException(f"{where}: {what} (check the path and permissions)") from None

    return wrapper  # type: ignore[return-value]


class OneLineUsageError(click.ClickException):
    """A usage mistake as one line: `Error: newsletter send --rate: 'abc' is not a valid float (see …)`."""

    def __init__(self, err: click.UsageError) -> None:
        command = err.ctx.command_path if err.ctx else "newsletter"
        where, what = command, err.format_message()
        if isinstance(err, click.BadParameter) and not isinstance(err, click.MissingParameter):
            hint = err.param.get_error_hint(err.ctx) if err.param and err.ctx else err.param_hint
            if hint and err.message:  # a bad value: name its option
                names = hint if isinstance(hint, str) else " / ".join(hint)
                where, what = f"{command} {names.strip(QUOTES)}", err.message
        what = one_line(what).rstrip(".")
        if not what.endswith(")"):
            what += f" (see '{command} --help')"
        super().__init__(f"{where}: {what}")

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)


class OneLineUsageGroup(click.Group):
    """A command group whose usage mistakes, its own and its commands' (groups inside it too), are one line
    with exit code 1 (OneLineUsageError)."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as err:
            raise OneLineUsageError(err) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as err:
            raise OneLineUsageError(err) from None


def _where(err: OSError) -> str:
    return one_line(str(getattr(err, "filename", None) or "file system"))


def stdout_is_closed() -> bool:
    """Whether standard output is a pipe whose reader has gone (poll reports an error on its write end)."""
    try:
        poller = select.poll()
        poller.register(sys.__stdout__.fileno() if sys.__stdout__ else 1, select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no file descriptor (a test runner's capture), or no poll
        return False


def stop_quietly() -> None:
    """Exit 1 without a word once standard output is closed, as `git log | head` does (Python's recipe for
    SIGPIPE): the rest of the output goes to /dev/null so the flush at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno() if sys.__stdout__ else 1)
    except (OSError, ValueError):
        pass
    raise SystemExit(1)
