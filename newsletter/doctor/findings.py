"""What every doctor check returns: a Finding (pass, warn or fail, what was seen, what to do). No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..errors import one_line


class Status(StrEnum):
    """How one check came out."""

    PASS = "pass"  # the requirement is met
    WARN = "warn"  # met less well than it should be, or it could not be checked: mail goes out, may land worse
    FAIL = "fail"  # a requirement of Gmail, Yahoo or Outlook.com is not met: fix it before sending


@dataclass(frozen=True)
class Finding:
    """One line of `newsletter doctor`: `<status>  <check>: <what> (<todo>)`."""

    status: Status
    check: str  # what was checked, e.g. "spf" or "list headers (ko)"
    what: str  # what was seen
    todo: str = ""  # what to do about it (may be empty for a pass)

    def __str__(self) -> str:
        text = f"{self.status.value}  {one_line(self.check)}: {one_line(self.what)}"
        return f"{text} ({one_line(self.todo)})" if self.todo else text

    def as_dict(self) -> dict[str, str]:
        return {"status": self.status.value, "check": self.check, "what": self.what, "todo": self.todo}


def passed(check: str, what: str, todo: str = "") -> Finding:
    return Finding(Status.PASS, check, what, todo)


def warned(check: str, what: str, todo: str = "") -> Finding:
    return Finding(Status.WARN, check, what, todo)


def failed(check: str, what: str, todo: str = "") -> Finding:
    return Finding(Status.FAIL, check, what, todo)
