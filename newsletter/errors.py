"""Our error types: each carries its pieces and formats them once as `<where>: <what> (<hint>)`.

The CLI prints `str(err)` and never builds messages itself. ConfigError is deliberately not a
NewsletterError subclass of the "keep going" kind: a bad setting stops a run before any work.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: each would break the line or
# drive the terminal (an ESC starts an ANSI sequence), so a message shows them escaped, as repr() does.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """`text` with every control character escaped (\\r, \\n, \\x1b, …): it stays one line and cannot
    inject a terminal escape. Text without them (escaped text too) comes back as it is."""
    return _CONTROL.sub(lambda match: repr(match.group())[1:-1], text)


class NewsletterError(Exception):
    """Base class: a problem the user can fix, reported as one line."""

    def __init__(self, where: str, message: str, hint: str = "") -> None:
        self.where = where
        self.message = message
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        """`<where>: <what> (<hint>)` on one line: control characters from input are shown escaped."""
        where, message, hint = one_line(self.where), one_line(self.message), one_line(self.hint)
        text = f"{where}: {message}" if where else message
        return f"{text} ({hint})" if hint else text


class IssueError(NewsletterError):
    """An issue file is malformed; `where` is `path:line` when the line is known."""

    def __init__(self, path: str, line: int | None, message: str, hint: str = "") -> None:
        self.path = path
        self.line = line
        super().__init__(f"{path}:{line}" if line else path, message, hint)


class ConfigError(NewsletterError):
    """A setting is missing or wrong; `where` names the file and the key."""


class TemplateError(NewsletterError):
    """An editor-owned template failed to load or render."""


class BuildError(NewsletterError):
    """The site could not be built (for example two sources want one output path)."""


class StoreError(NewsletterError):
    """The subscriber store refused an operation."""


class TransportError(NewsletterError):
    """The whole send must stop: no connection, bad credentials, a paused account. The message in hand stays
    pending. One refused message is not an error but a SendResult (FAILED or DEFERRED)."""


class MissingExtraError(NewsletterError):
    """A module that `feature` needs is not installed; the hint names the pip command: the extra that brings it,
    or (with no extra, for a module of the normal install that went missing) newsletter itself."""

    def __init__(self, feature: str, extra: str = "", *, needs: str = "", where: str = "") -> None:
        from . import DISTRIBUTION

        hint = f"pip install '{DISTRIBUTION}[{extra}]'" if extra else f"reinstall it: pip install {DISTRIBUTION}"
        super().__init__(where, f"{feature} needs {needs or f'the {extra} extra'}", hint)
