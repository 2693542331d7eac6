"""What every transport shares: the message it is given, the result it gives back, the protocol it keeps."""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from typing import Protocol


class SendStatus(enum.StrEnum):
    """What the peer said about one attempt at one message.

    A transport makes one attempt per call; the send loop decides what is tried again, and when, so that
    every retry waits for its rate-limit slot like a first attempt.
    """

    SENT = "sent"  # accepted; the peer's message id is kept
    FAILED = "failed"  # refused for good (bad recipient, rejected message): never retried
    DEFERRED = "deferred"  # refused for now (a 4xx of SMTP): a later, resumed send retries it
    THROTTLED = "throttled"  # refused because we sent too fast (SES 429, SMTP 454 throttling): slow down, retry
    RETRY = "retry"  # not taken, and safe to try again now (5xx of SES, a connection that never opened)
    AMBIGUOUS = "ambiguous"  # the request left and no answer came: the peer may have taken it


@dataclass(frozen=True)
class OutgoingMessage:
    """One finished message for one recipient."""

    sender: str  # envelope sender (ASCII addr-spec)
    recipient: str  # envelope recipient (ASCII addr-spec)
    pieces: tuple[bytes, ...]  # the whole RFC 5322 message (CRLF line ends), as the pieces it was joined from
    issue: str  # slug, for file names and SES tags
    lang: str
    test: bool = False  # a `send --test` copy: the file transport names its file by edition too
    tracking: bool = False  # the recipient consented to open and click tracking (SES turns it on for this message)

    @functools.cached_property
    def raw(self) -> bytes:
        """The whole message. SES encodes the pieces instead, reusing what the edition's messages share."""
        return self.pieces[0] if len(self.pieces) == 1 else b"".join(self.pieces)


@dataclass(frozen=True)
class SendResult:
    """A transport's answer for one attempt."""

    status: SendStatus
    message_id: str | None = None  # the peer's id (SES MessageId, the .eml path, our Message-ID for SMTP)
    error: str | None = None  # the peer's own words, with its code
    left_at: float | None = None  # time.monotonic() as the request was written (the pacing watches its lag)


@dataclass(frozen=True)
class SendQuota:
    """An account's limits: per second, per 24 hours (None: unlimited), and what was sent in the last 24 hours."""

    max_send_rate: float
    max_24_hour_send: float | None
    sent_last_24_hours: float

    @property
    def remaining(self) -> float | None:
        if self.max_24_hour_send is None:
            return None
        return max(0.0, self.max_24_hour_send - self.sent_last_24_hours)


class Transport(Protocol):
    """Hands messages to a peer. Raises TransportError only when the whole send must stop
    (no connection, bad credentials, a paused account); one refused message is a SendResult.

    `send` is called from several threads at once, at most `max_in_flight` at a time.
    """

    name: str
    max_in_flight: int  # the most messages this transport takes at once

    def send(self, message: OutgoingMessage) -> SendResult: ...

    def quota(self) -> SendQuota | None:
        """The account's sending quota, or None when the peer has none to tell (file, SMTP)."""
        ...

    def close(self) -> None: ...
