"""What every transport shares: the message it is given, the result it gives back, the protocol it keeps."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class SendStatus(enum.StrEnum):
    """What the peer said about one message."""

    SENT = "sent"  # accepted; the peer's message id is kept
    FAILED = "failed"  # refused for good (bad recipient, rejected message): never retried
    DEFERRED = "deferred"  # refused for now (throttled, busy, 4xx): a resumed send retries it


@dataclass(frozen=True)
class OutgoingMessage:
    """One finished message for one recipient."""

    sender: str  # envelope sender (ASCII addr-spec)
    recipient: str  # envelope recipient (ASCII addr-spec)
    raw: bytes  # the whole RFC 5322 message, CRLF line ends
    issue: str  # slug, for file names and SES tags
    lang: str


@dataclass(frozen=True)
class SendResult:
    """A transport's answer for one message."""

    status: SendStatus
    message_id: str | None = None  # the peer's id (SES MessageId, the .eml path, our Message-ID for SMTP)
    error: str | None = None  # the peer's own words, with its code


class Transport(Protocol):
    """Hands messages to a peer. Raises TransportError only when the whole send must stop
    (no connection, bad credentials, a paused account); one refused message is a SendResult."""

    name: str

    def send(self, message: OutgoingMessage) -> SendResult: ...

    def close(self) -> None: ...
