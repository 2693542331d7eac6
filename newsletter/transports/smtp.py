"""The SMTP transport: smtplib over one connection (STARTTLS or TLS), reopened when it drops.

SMTP reply codes decide each message's fate: 5xx fails it, 4xx defers it. Works with SES's SMTP
interface (port 587, STARTTLS, SMTP credentials).
"""

from __future__ import annotations

import os
import smtplib
import ssl

from ..config import Settings, SmtpSettings
from ..errors import TransportError
from .base import OutgoingMessage, SendResult, SendStatus

USER_ENV = "NEWSLETTER_SMTP_USER"
PASSWORD_ENV = "NEWSLETTER_SMTP_PASSWORD"


def _reply(code: int, text: bytes | str) -> str:
    message = text.decode(errors="replace") if isinstance(text, bytes) else text
    return f"SMTP {code} {message}".strip()


def _status(code: int) -> SendStatus:
    return SendStatus.FAILED if 500 <= code < 600 else SendStatus.DEFERRED


class SmtpTransport:
    """Sends through one SMTP connection, reconnecting when the server closes it."""

    name = "smtp"

    def __init__(
        self, config: SmtpSettings, user: str = "", password: str = "", ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.config = config
        self.user = user
        self.password = password
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.connection: smtplib.SMTP | None = None
        self.where = f"smtp {config.host}:{config.port}"

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpTransport:
        return cls(settings.smtp, os.environ.get(USER_ENV, ""), os.environ.get(PASSWORD_ENV, ""))

    def _connect(self) -> smtplib.SMTP:
        config = self.config
        try:
            if config.security == "tls":
                connection: smtplib.SMTP = smtplib.SMTP_SSL(
                    config.host, config.port, timeout=config.timeout, context=self.ssl_context
                )
            else:
                connection = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
                if config.security == "starttls":
                    connection.starttls(context=self.ssl_context)
            if self.user:
                connection.login(self.user, self.password)
        except smtplib.SMTPAuthenticationError as err:
            raise TransportError(
                self.where,
                f"authentication failed for '{self.user}' ({_reply(err.smtp_code, err.smtp_error)})",
                f"check {USER_ENV} and {PASSWORD_ENV}",
            ) from None
        except smtplib.SMTPNotSupportedError as err:
            raise TransportError(
                self.where, f"the server does not offer it: {err}", "set [tool.newsletter.smtp] security to tls or none"
            ) from None
        except (OSError, smtplib.SMTPException) as err:
            raise TransportError(self.where, f"cannot connect: {err}", "check host, port and security") from None
        return connection

    def send(self, message: OutgoingMessage) -> SendResult:
        for attempt in (1, 2):  # a dropped connection is reopened once per message
            if self.connection is None:
                self.connection = self._connect()
            try:
                refused = self.connection.sendmail(message.sender, [message.recipient], message.raw)
            except smtplib.SMTPRecipientsRefused as err:
                code, text = err.recipients.get(message.recipient, (550, b"refused"))
                return SendResult(_status(code), error=_reply(code, text))
            except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as err:
                return SendResult(_status(err.smtp_code), error=_reply(err.smtp_code, err.smtp_error))
            except (TimeoutError, smtplib.SMTPServerDisconnected, ConnectionError) as err:
                self._drop()
                if attempt == 2:
                    return SendResult(SendStatus.DEFERRED, error=f"SMTP connection lost: {err}")
                continue
            except smtplib.SMTPResponseException as err:
                return SendResult(_status(err.smtp_code), error=_reply(err.smtp_code, err.smtp_error))
            if refused:
                code, text = refused[message.recipient]
                return SendResult(_status(code), error=_reply(code, text))
            return SendResult(SendStatus.SENT, message_id=_message_id(message.raw))
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            finally:
                self.connection = None

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.quit()
            except (OSError, smtplib.SMTPException):
                pass
            self._drop()


def _message_id(raw: bytes) -> str | None:
    """Our Message-ID header (SMTP servers give no id of their own)."""
    start = raw.find(b"\r\nMessage-ID: ")
    if start < 0:
        return None
    end = raw.find(b"\r\n", start + 2)
    return raw[start + len(b"\r\nMessage-ID: ") : end].decode()
