"""The SMTP transport: a pool of reused smtplib connections (STARTTLS or TLS), safe to share between threads.

Each message is one MAIL, RCPT, DATA transaction, step by step, so a failure is known to have come before or
after the end of DATA was written. Before it, nothing was taken: the connection is reopened and the message
tried once more in place (then RETRY). After it, the server may have taken the message: AMBIGUOUS, never tried
again here. The reply to the end of DATA is awaited 10 minutes (RFC 5321 §4.5.3.2.6); other steps wait
`timeout`. 5xx fails a message, 4xx defers it, 454/421 throttling ("Throttling failure", "Maximum sending rate
exceeded", as SES's SMTP endpoint says) is THROTTLED; "Daily message quota exceeded" stops the send.
Works with SES's SMTP interface (port 587, STARTTLS, SMTP credentials).
"""

from __future__ import annotations

import os
import smtplib
import socket
import ssl
import threading
import time
from dataclasses import replace

from ..config import Settings, SmtpSettings
from ..errors import ConfigError, TransportError
from .base import OutgoingMessage, SendQuota, SendResult, SendStatus

USER_ENV = "NEWSLETTER_SMTP_USER"
PASSWORD_ENV = "NEWSLETTER_SMTP_PASSWORD"
END_OF_DATA_TIMEOUT = 600.0  # RFC 5321 §4.5.3.2.6: the reply to the final dot, 10 minutes
THROTTLING_WORDS = ("throttling failure", "maximum sending rate exceeded")
DAILY_QUOTA = "daily message quota exceeded"


def _reply(code: int, text: bytes | str) -> str:
    message = text.decode(errors="replace") if isinstance(text, bytes) else text
    return " ".join(f"SMTP {code} {message}".split())


class _Dropped(Exception):
    """The connection failed before the end of DATA was written: the server took nothing."""


class _Answer(Exception):
    """The server refused the message with `code` and `text`."""

    def __init__(self, code: int, text: bytes) -> None:
        super().__init__(code, text)
        self.code = code
        self.text = text


class SmtpTransport:
    """Sends through up to `config.connections` reused connections, one message on each at a time."""

    name = "smtp"

    def __init__(
        self, config: SmtpSettings, user: str = "", password: str = "", ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.config = config
        self.user = user
        self.password = password
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.max_in_flight = config.connections
        self.where = f"smtp {config.host}:{config.port}"
        self.connects = 0  # connections opened so far
        self._idle: list[smtplib.SMTP] = []
        self._existing = 0  # connections open or being opened, idle or in use
        self._free = threading.Condition()
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpTransport:
        return cls(settings.smtp, _credential(USER_ENV), _credential(PASSWORD_ENV))

    def quota(self) -> SendQuota | None:
        return None

    def send(self, message: OutgoingMessage) -> SendResult:
        try:
            connection = self._take()
        except _NotOpened as err:
            return SendResult(SendStatus.RETRY, error=str(err))
        for attempt in (1, 2):
            left_at = time.monotonic()
            try:
                result = replace(self._transact(connection, message), left_at=left_at)
            except _Dropped as err:
                self._discard(connection, keep_slot=True)
                if attempt == 2:
                    self._free_slot()
                    return SendResult(
                        SendStatus.RETRY, error=f"SMTP connection lost before the end of DATA, twice: {err}"
                    )
                try:
                    connection = self._open_in_slot()
                except _NotOpened as reopen:
                    return SendResult(
                        SendStatus.RETRY, error=f"SMTP connection lost before the end of DATA: {err}; {reopen}"
                    )
                continue
            except (smtplib.SMTPServerDisconnected, OSError) as err:
                self._discard(connection)
                return SendResult(
                    SendStatus.AMBIGUOUS,
                    error=f"SMTP connection lost after the end of DATA, the message may have been taken: {err}",
                )
            except BaseException:
                self._discard(connection)
                raise
            self._give_back(connection)
            return result
        raise AssertionError("unreachable")

    def _transact(self, connection: smtplib.SMTP, message: OutgoingMessage) -> SendResult:
        """MAIL, RCPT, DATA on `connection`; raises _Dropped before the end of DATA is written, and
        SMTPServerDisconnected or OSError after it."""
        data = message.raw.replace(b"\n.", b"\n..")  # RFC 5321 §4.5.2: a line starting with a dot gets another
        if data.startswith(b"."):
            data = b"." + data
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        data += b".\r\n"
        try:
            connection.ehlo_or_helo_if_needed()
            options = [f"SIZE={len(data)}"] if connection.does_esmtp and connection.has_extn("size") else []
            code, text = connection.mail(message.sender, options)
            if code != 250:
                raise _Answer(code, text)
            code, text = connection.rcpt(message.recipient)
            if code not in (250, 251):
                raise _Answer(code, text)
            connection.putcmd("data")
            code, text = connection.getreply()
            if code != 354:
                raise _Answer(code, text)
            connection.send(data)
        except _Answer as answer:
            return self._refused(connection, answer.code, answer.text, before_data_end=True)
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPResponseException, OSError) as err:
            raise _Dropped(err) from None
        assert connection.sock is not None
        connection.sock.settimeout(END_OF_DATA_TIMEOUT)
        code, text = connection.getreply()
        connection.sock.settimeout(self.config.timeout)
        if not 200 <= code < 600:  # not a reply: the server may have taken the message
            connection.close()
            raise smtplib.SMTPServerDisconnected(f"no valid reply to the end of DATA: {_reply(code, text)}")
        if code != 250:
            return self._refused(connection, code, text, before_data_end=False)
        return SendResult(SendStatus.SENT, message_id=_message_id(message.raw))

    def _refused(self, connection: smtplib.SMTP, code: int, text: bytes, *, before_data_end: bool) -> SendResult:
        """What a refusal means; raises _Dropped for a server closing an idle connection (421 before DATA's end),
        TransportError for a spent daily quota."""
        words = text.decode(errors="replace").lower()
        said = _reply(code, text)
        if DAILY_QUOTA in words:
            raise TransportError(
                self.where, f"the daily sending quota is used up ({said})", "run the same command tomorrow to resume"
            )
        if code in (421, 454) and any(word in words for word in THROTTLING_WORDS):
            status = SendStatus.THROTTLED
        elif code == 421 and before_data_end:
            raise _Dropped(said)  # the server is closing this connection; a new one may take the message
        elif 500 <= code < 600:
            status = SendStatus.FAILED
        else:
            status = SendStatus.DEFERRED
        usable = code != 421  # 421: the server closes the connection
        if usable and before_data_end:
            try:
                usable = connection.rset()[0] == 250  # the next message on this connection starts clean
            except (smtplib.SMTPException, OSError):
                usable = False
        if not usable:
            connection.close()  # _give_back drops a closed connection
        return SendResult(status, error=said)

    # ------------------------------------------------------------------ the pool

    def _take(self) -> smtplib.SMTP:
        """An idle connection, or a new one while fewer than `connections` exist (waiting for one otherwise)."""
        with self._free:
            while not self._idle and self._existing >= self.max_in_flight:
                self._free.wait()
            if self._idle:
                return self._idle.pop()
            self._existing += 1
        return self._open_in_slot()

    def _open_in_slot(self) -> smtplib.SMTP:
        """A new connection in a slot already counted, which is freed when none can be opened: then _NotOpened,
        or TransportError if no connection was ever opened (there is no server to send to)."""
        try:
            connection = self._connect()
        except BaseException as err:
            self._free_slot()
            with self._free:
                never = self.connects == 0
            if isinstance(err, _NotOpened) and never:
                raise err.error from None
            raise
        with self._free:
            self.connects += 1
        return connection

    def _free_slot(self) -> None:
        with self._free:
            self._existing -= 1
            self._free.notify()

    def _give_back(self, connection: smtplib.SMTP) -> None:
        if connection.sock is None:  # closed after a 421 or a failed RSET
            self._discard(connection)
            return
        with self._free:
            if not self._closed:
                self._idle.append(connection)
                self._free.notify()
                return
        self._quit(connection)
        self._discard(connection)

    def _discard(self, connection: smtplib.SMTP, *, keep_slot: bool = False) -> None:
        try:
            connection.close()
        except OSError:
            pass
        if not keep_slot:
            self._free_slot()

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
            # Every command and the message go out in one write each: Nagle would hold the last segment of the
            # message back until the server ACKs the rest, which delayed ACK puts off by up to 40 ms.
            assert connection.sock is not None
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
            raise _NotOpened(
                TransportError(self.where, f"cannot connect: {err}", "check host, port and security")
            ) from None
        return connection

    def _quit(self, connection: smtplib.SMTP) -> None:
        try:
            connection.quit()
        except (OSError, smtplib.SMTPException):
            pass

    def close(self) -> None:
        """QUIT every pooled connection; one in use is closed when it comes back."""
        with self._free:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            self._quit(connection)
            self._discard(connection)


class _NotOpened(Exception):
    """A connection could not be opened (refused, unreachable, a bad greeting or TLS handshake)."""

    def __init__(self, error: TransportError) -> None:
        super().__init__(str(error))
        self.error = error


def _message_id(raw: bytes) -> str | None:
    """Our Message-ID header (SMTP servers give no id of their own)."""
    start = raw.find(b"\r\nMessage-ID: ")
    if start < 0:
        return None
    end = raw.find(b"\r\n", start + 2)
    return raw[start + len(b"\r\nMessage-ID: ") : end].decode()


def _credential(name: str) -> str:
    """The environment variable `name` ("" when unset): printable ASCII, which is all smtplib's AUTH can send."""
    value = os.environ.get(name, "")
    if not (value.isascii() and value.isprintable()):
        raise ConfigError(
            name,
            "holds a character that is not printable ASCII, which SMTP authentication here cannot send",
            "set it on one line; ask the relay for ASCII credentials",
        )
    return value
