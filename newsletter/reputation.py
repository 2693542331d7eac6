"""The reputation guard: a running send's hard bounces and complaints against the thresholds that pause it.

SES reviews an account whose bounce rate passes about 10 % or whose complaint rate passes about 0.5 %, and may
pause it. A send watches the events already applied (`newsletter events`, POST /ses/notifications) and pauses
itself well before: like a stop request, with the send log untouched, so the same command resumes it. Each run
is judged on what happened since it began (the messages it sent, the bounces and complaints recorded meanwhile,
late ones of an earlier run's messages included, which errs on the side of pausing), once it sent `minimum`;
a resumed run is judged afresh.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .store import SendFeedback


@dataclass(frozen=True)
class Pause:
    """Why a send paused, what to check, and the setting that would let it go on."""

    reason: str  # "paused: 6.1 % of 500 messages bounced (over max_bounce_rate 5 %)"
    check: str
    setting: str


@dataclass
class ReputationGuard:
    """Reads a send's feedback (one indexed query) and says when it must pause."""

    read: Callable[[], SendFeedback]
    max_bounce_rate: float  # fractions: 0.05 is 5 %
    max_complaint_rate: float
    minimum: int  # messages this run sent before it is judged
    baseline: SendFeedback | None = None

    def start(self) -> None:
        """Take the counts the run is judged from."""
        self.baseline = self.read()

    def check(self) -> Pause | None:
        """A Pause when this run's bounce or complaint rate is over its threshold, else None."""
        base = self.baseline or SendFeedback(0, 0, 0)
        now = self.read()
        sent = now.sent - base.sent
        if sent < self.minimum or sent <= 0:
            return None
        bounced, complained = now.bounced - base.bounced, now.complained - base.complained
        if bounced / sent > self.max_bounce_rate:
            return Pause(
                f"paused: {_percent(bounced / sent)} of {sent:,} messages bounced "
                f"(over max_bounce_rate {_percent(self.max_bounce_rate)})",
                "check the list's source: an old, bought or mistyped list bounces; remove what bounced",
                "max_bounce_rate",
            )
        if complained / sent > self.max_complaint_rate:
            return Pause(
                f"paused: {_percent(complained / sent)} of {sent:,} messages drew a complaint "
                f"(over max_complaint_rate {_percent(self.max_complaint_rate)})",
                "check that these subscribers asked for it and that the unsubscribe link works",
                "max_complaint_rate",
            )
        return None


def _percent(share: float) -> str:
    """5.0 % as "5 %", 0.061 as "6.1 %", 0.001 as "0.1 %"."""
    text = f"{share * 100:.2f}".rstrip("0").rstrip(".")
    return f"{text} %"
