"""The file transport: one .eml per recipient under outbox/<slug>/, written atomically.

The file name comes from the recipient's address, so however often a send is resumed, one person
never has two files. The default transport: the main job works with no mail account.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from .base import OutgoingMessage, SendResult, SendStatus


def file_name(recipient: str) -> str:
    """`local_at_domain-<hash>.eml`: readable, safe on every file system, unique per address."""
    readable = re.sub(r"[^A-Za-z0-9._-]", "_", recipient.replace("@", "_at_"))[:80]
    digest = hashlib.sha256(recipient.lower().encode()).hexdigest()[:10]
    return f"{readable}-{digest}.eml"


class FileTransport:
    """Writes each message to `folder` instead of sending it."""

    name = "file"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def send(self, message: OutgoingMessage) -> SendResult:
        path = self.folder / file_name(message.recipient)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_bytes(message.raw)
        os.replace(temporary, path)  # atomic: a reader sees the whole message or none
        return SendResult(SendStatus.SENT, message_id=str(path))

    def close(self) -> None:
        for leftover in self.folder.glob(".*.tmp"):  # from a process killed mid-write
            leftover.unlink(missing_ok=True)
