"""Our error types: each carries its pieces and formats them once as `<where>: <what> (<hint>)`.

The CLI prints `str(err)` and never builds messages itself. ConfigError is deliberately not a
NewsletterError subclass of the "keep going" kind: a bad setting stops a run before any work.
"""

from __future__ import annotations


class NewsletterError(Exception):
    """Base class: a problem the user can fix, reported as one line."""

    def __init__(self, where: str, message: str, hint: str = "") -> None:
        self.where = where
        self.message = message
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        return f"{text} ({self.hint})" if self.hint else text


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
    """An optional dependency is not installed; the hint names the pip command."""

    def __init__(self, feature: str, extra: str) -> None:
        super().__init__("", f"{feature} needs the {extra} extra", f"pip install 'newsletter[{extra}]'")
