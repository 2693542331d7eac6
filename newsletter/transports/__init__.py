"""Transports hand finished messages to a peer: a folder of .eml files, an SMTP server, or Amazon SES.

Rule: transports never render and never touch the store; they get bytes and report what the peer said.
"""

from __future__ import annotations

from ..config import TRANSPORTS, Settings
from ..errors import ConfigError
from .base import OutgoingMessage, SendResult, SendStatus, Transport

__all__ = ["OutgoingMessage", "SendResult", "SendStatus", "Transport", "open_transport"]


def open_transport(name: str, settings: Settings, *, slug: str) -> Transport:
    """The transport called `name` (file, smtp, ses), set up from settings and the environment."""
    if name == "file":
        from .file import FileTransport

        return FileTransport(settings.root / "outbox" / slug)
    if name == "smtp":
        from .smtp import SmtpTransport

        return SmtpTransport.from_settings(settings)
    if name == "ses":
        from .ses import SesTransport

        return SesTransport.from_settings(settings)
    raise ConfigError("--transport", f"'{name}' is not a transport", f"use {', '.join(TRANSPORTS)}")
