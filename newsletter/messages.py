"""RenderedEmail + Subscriber → MIME bytes, by substitution into a message built once per edition.

The edition's message (headers, multipart/alternative, base64 bodies) is laid out once with a
fixed-length stand-in for the unsubscribe token. Because every token has the same length, the bytes
around it never move: personalising re-encodes only the base64 lines that hold a token and joins
pre-encoded bytes for the rest. Values from subscribers are validated here (no CR, LF or NUL; ASCII
addresses), since byte substitution bypasses the email library's own checks.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import re
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime

from .config import Settings
from .errors import ConfigError
from .render.email import UNSUBSCRIBE_TOKEN, RenderedEmail, unsubscribe_url
from .tokens import TOKEN_LENGTH

STAND_IN = b"\x00" * TOKEN_LENGTH  # never occurs in rendered text; replaced by each recipient's token
LINE_BYTES = 57  # base64 input per 76-character output line (RFC 2045 §6.8)
ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
TOKEN = re.compile(rf"^[A-Za-z0-9_-]{{{TOKEN_LENGTH}}}$")
HEADER_POLICY = policy.SMTP  # folds at 78 with encoded-words of at most 75 characters
LINE_WIDTH = 78  # RFC 5322 §2.1.1: lines SHOULD stay within 78 characters, and MUST within 998
MAX_LINE = 998
DISPLAY_NAME_LIMIT = 200  # characters of a subscriber's name used in To: (the store keeps no more)


class MessageError(ValueError):
    """A recipient's data cannot go into a message (a line break in a name, a non-ASCII address)."""


@dataclass(frozen=True)
class Recipient:
    """Who one message is for."""

    email: str  # ASCII addr-spec (SES and our SMTP path have no SMTPUTF8)
    name: str
    token: str  # unsubscribe token, TOKEN_LENGTH characters


def check_recipient(recipient: Recipient) -> None:
    """Refuse what could break out of a header: CR, LF, NUL, non-ASCII addresses, malformed tokens."""
    if not ADDRESS.match(recipient.email):
        raise MessageError(f"address {recipient.email!r} is not a plain ASCII address")
    if any(ch in recipient.name for ch in "\r\n\0"):
        raise MessageError("the name contains a line break or NUL")
    if not TOKEN.match(recipient.token):
        raise MessageError("the unsubscribe token is malformed")


def _encoded_lines(data: bytes) -> bytes:
    """base64 of `data` (a multiple of 57 bytes, or the tail) as CRLF-ended lines of 76 characters."""
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


class _Body:
    """One MIME part's body: pre-encoded base64 lines, with the lines that hold a token left open."""

    def __init__(self, text: str) -> None:
        raw = text.replace(UNSUBSCRIBE_TOKEN, STAND_IN.decode()).encode("utf-8")
        self.raw = raw
        spots = [m.start() for m in re.finditer(re.escape(STAND_IN), raw)]
        line_count = -(-len(raw) // LINE_BYTES)
        open_lines: list[tuple[int, int]] = []  # (first line, last line) spans holding a token
        for spot in spots:
            first, last = spot // LINE_BYTES, (spot + TOKEN_LENGTH - 1) // LINE_BYTES
            if open_lines and first <= open_lines[-1][1] + 1:
                open_lines[-1] = (open_lines[-1][0], last)
            else:
                open_lines.append((first, last))
        self.parts: list[bytes | tuple[int, int, list[int]]] = []  # constant bytes or (start, end, token offsets)
        line = 0
        for first, last in open_lines:
            if first > line:
                self.parts.append(_encoded_lines(raw[line * LINE_BYTES : first * LINE_BYTES]))
            start, end = first * LINE_BYTES, min((last + 1) * LINE_BYTES, len(raw))
            self.parts.append((start, end, [s - start for s in spots if start <= s < end]))
            line = last + 1
        if line < line_count:
            self.parts.append(_encoded_lines(raw[line * LINE_BYTES :]))

    def encode(self, token: bytes) -> list[bytes]:
        out: list[bytes] = []
        for part in self.parts:
            if isinstance(part, bytes):
                out.append(part)
                continue
            start, end, offsets = part
            chunk = bytearray(self.raw[start:end])
            for offset in offsets:
                chunk[offset : offset + TOKEN_LENGTH] = token
            out.append(_encoded_lines(bytes(chunk)))
        return out


def encode_display_name(name: str) -> str:
    """A display name for the To: header, folded so each line stays within 78 octets where it can.

    ASCII: an RFC 5322 quoted-string, folded before its spaces (unfolding gives the same name back).
    Otherwise RFC 2047 encoded-words, and so is a name holding `=?`: mail clients (and Python's email
    package) decode an encoded-word even inside a quoted-string, so only encoding it keeps it literal.
    Only the first DISPLAY_NAME_LIMIT characters are used, so even a run with no space to fold at keeps
    the line far below RFC 5322's 998 octets.
    """
    name = name[:DISPLAY_NAME_LIMIT]
    if not name:
        return ""
    if name.isascii() and name.isprintable() and "=?" not in name:
        return _fold_quoted('"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"', width=LINE_WIDTH - len("To: "))
    words: list[str] = []
    current = ""
    for ch in name:  # whole characters per word: never split the UTF-8 bytes of one syllable
        candidate = current + ch
        if len(base64.b64encode(candidate.encode())) > 75 - len("=?utf-8?b??="):
            words.append(current)
            current = ch
        else:
            current = candidate
    words.append(current)
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(w.encode()).decode()}?=" for w in words)


def _fold_quoted(quoted: str, *, width: int) -> str:
    """Fold a quoted-string before spaces (RFC 5322 §3.2.4 allows FWS inside it) into lines of `width`."""
    lines = [""]
    for word in quoted.split(" "):
        line = lines[-1]
        if not line:
            lines[-1] = word
        elif word and len(line) + 1 + len(word) > (width if len(lines) == 1 else LINE_WIDTH):
            lines.append(" " + word)  # CRLF then the space: unfolding removes only the CRLF
        else:
            lines[-1] = f"{line} {word}"
    return "\r\n".join(lines)


class MessageTemplate:
    """One edition's message, ready to be personalised many times over (text only when `email.html` is empty)."""

    def __init__(self, email: RenderedEmail, settings: Settings, *, slug: str) -> None:
        self.domain = settings.from_address.domain
        self.slug = slug
        headers = EmailMessage(policy=HEADER_POLICY)
        headers["From"] = settings.from_address
        headers["Subject"] = email.subject
        if settings.reply_to:
            headers["Reply-To"] = settings.reply_to
        headers["List-Id"] = f"{settings.for_language(email.lang).title} <{settings.list_id}>"
        headers["Precedence"] = "bulk"  # RFC 3834 §3.1.8: no out-of-office replies
        headers["MIME-Version"] = "1.0"
        boundary = f"=_{os.urandom(12).hex()}"
        if email.html:
            headers["Content-Type"] = f'multipart/alternative; boundary="{boundary}"'
        else:  # a text-only mail (the welcome mail): one part
            headers["Content-Type"] = 'text/plain; charset="utf-8"'
            headers["Content-Transfer-Encoding"] = "base64"
        # URLs are never folded or encoded (Python's folding would RFC 2047-encode a long one, and clients
        # would no longer find it): the settings bound them so their lines stay within 998 octets.
        folded = [HEADER_POLICY.fold_binary(name, value) for name, value in headers.items()]
        folded.insert(headers.keys().index("List-Id") + 1, f"List-Archive: <{settings.base_url}/>\r\n".encode())
        constant = b"".join(folded)
        # RFC 8058: one HTTPS URI (plus a mailto only if one is configured), on the web app's host (app_url);
        # List-Archive above is on the archive's (base_url).
        link = unsubscribe_url(settings, STAND_IN.decode())
        mailto = f", <mailto:{settings.unsubscribe_mailto}?subject=unsubscribe>" if settings.unsubscribe_mailto else ""
        self.list_unsubscribe = _Header(
            f"List-Unsubscribe: <{link}>{mailto}\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        )
        _check_line_lengths(constant + self.list_unsubscribe.fill(b"x" * TOKEN_LENGTH))
        self.constant_headers = constant
        self.text = _Body(email.text)
        self.html = _Body(email.html) if email.html else None
        self.text_head = (
            f'\r\n--{boundary}\r\nContent-Type: text/plain; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n"
        ).encode()
        self.html_head = (
            f'--{boundary}\r\nContent-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        ).encode()
        self.closing = f"--{boundary}--\r\n".encode()
        self._date_second = -1
        self._date_line = b""

    def _date(self) -> bytes:
        second = int(dt.datetime.now(dt.UTC).timestamp())
        if second != self._date_second:
            self._date_second = second
            stamp = dt.datetime.fromtimestamp(second, dt.UTC)
            self._date_line = f"Date: {format_datetime(stamp)}\r\n".encode()
        return self._date_line

    def personalise(self, recipient: Recipient) -> tuple[bytes, str]:
        """(the complete message for `recipient`, its Message-ID)."""
        pieces, message_id = self.pieces_for(recipient)
        return b"".join(pieces), message_id

    def pieces_for(self, recipient: Recipient) -> tuple[tuple[bytes, ...], str]:
        """(the message for `recipient` as the pieces it is joined from, its Message-ID). The large pieces are
        the same bytes objects in every message of the edition (the SES transport encodes each once)."""
        check_recipient(recipient)
        token = recipient.token.encode()
        message_id = f"<{os.urandom(10).hex()}.{self.slug}@{self.domain}>"
        name = encode_display_name(recipient.name)
        to = f"To: {name} <{recipient.email}>\r\n" if name else f"To: {recipient.email}\r\n"
        pieces = [
            to.encode(),
            self._date(),
            f"Message-ID: {message_id}\r\n".encode(),
            self.constant_headers,
            self.list_unsubscribe.fill(token),
        ]
        if self.html is None:
            pieces += [b"\r\n", *self.text.encode(token)]
        else:
            pieces += [self.text_head, *self.text.encode(token), self.html_head, *self.html.encode(token), self.closing]
        return tuple(pieces), message_id


def _check_line_lengths(headers: bytes) -> None:
    """Refuse header lines over RFC 5322's 998 octets, naming the header (its setting is too long)."""
    name = ""
    for line in headers.split(b"\r\n"):
        if not line.startswith((b" ", b"\t")):
            name = line.split(b":", 1)[0].decode()
        if len(line) > MAX_LINE:
            raise ConfigError(
                f"the {name} header",
                f"would have a line of {len(line):,} octets; mail allows {MAX_LINE}",
                "shorten the setting it is made from",
            )


class _Header:
    """ASCII header lines with the token stand-in, split once."""

    def __init__(self, text: str) -> None:
        self.before, _, self.after = text.encode().partition(STAND_IN)

    def fill(self, token: bytes) -> bytes:
        return self.before + token + self.after


def sample_recipient(token: str) -> Recipient:
    """The subscriber a preview is addressed to."""
    return Recipient(email="reader@example.com", name="Sample Reader", token=token)
