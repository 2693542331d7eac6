"""The file transport: one .eml per recipient under outbox/<slug>/, written atomically and privately.

The file name comes from the recipient's address, so however often a send is resumed, one person
never has two files; a `send --test` copy's name holds the edition too, so each edition has its own.
The default transport: the main job works with no mail account. Messages are 0600 and the folders it
creates 0700, whatever the umask: they hold subscribers' addresses and links.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from ..errors import TransportError
from ..processes import process_alive
from .base import OutgoingMessage, SendQuota, SendResult, SendStatus

TEMPORARY = re.compile(r"^\..+\.(\d+)(-[a-z0-9_]+)?\.tmp$")  # .<file name>.<pid>-<random>.tmp (older: no -<random>)


def file_name(recipient: str, lang: str | None = None) -> str:
    """`local_at_domain-<hash>.eml` (with `lang`: `…-<hash>.<lang>.eml`): readable, safe on every file system,
    unique per address (and edition)."""
    readable = re.sub(r"[^A-Za-z0-9._-]", "_", recipient.replace("@", "_at_"))[:80]
    digest = hashlib.sha256(recipient.lower().encode()).hexdigest()[:10]
    edition = "" if lang is None else "." + re.sub(r"[^A-Za-z0-9-]", "_", lang)[:20]
    return f"{readable}-{digest}{edition}.eml"


def make_private_folder(folder: Path) -> None:
    """Create `folder` and its missing parents 0700 (an existing folder is left as it is)."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    for path in reversed(missing):
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:  # another thread or process made it meanwhile
            continue
        os.chmod(path, 0o700)  # mkdir's mode is masked by the umask


class FileTransport:
    """Writes each message to `folder` instead of sending it.

    Safe to share between threads and processes: every write has a temporary file of its own
    (mkstemp), and close() removes only the leftovers of processes that no longer run.
    """

    name = "file"
    max_in_flight = 4  # a local disk gains little from more writers at once

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._made = False  # the folder is made by the first message, so a dry run leaves none behind

    def _make_folder(self) -> None:
        if self._made:
            return
        try:
            make_private_folder(self.folder)
        except OSError as err:
            raise TransportError(
                "file",
                f"cannot make {self.folder}: {err.strerror or err}",
                "check that its parents are folders you can write",
            ) from None
        self._made = True

    def quota(self) -> SendQuota | None:
        return None

    def send(self, message: OutgoingMessage) -> SendResult:
        self._make_folder()
        path = self.folder / file_name(message.recipient, message.lang if message.test else None)
        handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as out:  # mkstemp creates it 0600
                out.write(message.raw)
            os.replace(temporary, path)  # atomic: a reader sees the whole message or none
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return SendResult(SendStatus.SENT, message_id=str(path))

    def close(self) -> None:
        """Remove temporary files left by processes killed mid-write; never one still being written."""
        if not self.folder.is_dir():
            return
        for leftover in self.folder.glob(".*.tmp"):
            match = TEMPORARY.match(leftover.name)
            if match and not process_alive(int(match.group(1))):
                leftover.unlink(missing_ok=True)
