"""Sign and verify the tokens in unsubscribe and confirmation links (HMAC-SHA256). No I/O.

An unsubscribe token names a subscriber and the list, never expires, and has a fixed length (30
characters of `[A-Za-z0-9_-]`), so a message can be personalised by swapping bytes of a known length.
A confirmation token also carries the time it was made and expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from typing import NamedTuple

from .errors import ConfigError

SECRET_ENV = "NEWSLETTER_SECRET_KEY"
DEVELOPMENT_SECRET = "newsletter-development-secret-not-for-real-mail"
SIGNATURE_CHARS = 22  # 132 bits of the HMAC, base64url
ID_CHARS = 8  # base36, up to 2.8 × 10^12 subscribers
TOKEN_LENGTH = SIGNATURE_CHARS + ID_CHARS
MAX_TOKEN_LENGTH = 200  # longer input is refused before any work
ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


TEST_SUBSCRIBER_ID = 0  # no store gives it out: the preview's and doctor's unsubscribe links, which change nothing


def _secret_from_env(development: bool) -> str:
    """NEWSLETTER_SECRET_KEY ("" when unset); the public development secret only when `development`."""
    value = os.environ.get(SECRET_ENV, "")
    if value == DEVELOPMENT_SECRET and not development:
        raise ConfigError(
            SECRET_ENV,
            "is the public development secret, so anyone could forge links signed with it",
            'generate one with `python -c "import secrets; print(secrets.token_urlsafe(32))"`',
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8 reach Python as lone surrogates
        raise ConfigError(SECRET_ENV, "holds bytes that are not UTF-8 text", "use a long random string") from None
    if any(not ch.isprintable() for ch in value):
        raise ConfigError(
            SECRET_ENV, "holds a line break or control character", "set it on one line, without control characters"
        )
    if value and len(value) < 16:
        raise ConfigError(SECRET_ENV, "is shorter than 16 characters", "use a long random string")
    return value


def secret_key(transport: str) -> tuple[bytes, bool]:
    """(the signing secret, whether it is the development one). Real transports refuse to run without one,
    or with the public development secret; the file transport (development) falls back to it."""
    development = transport == "file"
    value = _secret_from_env(development)
    if value:
        return value.encode(), value == DEVELOPMENT_SECRET
    if transport == "file":
        return DEVELOPMENT_SECRET.encode(), True
    raise ConfigError(
        SECRET_ENV,
        f"is not set; the {transport} transport sends real mail with links signed by it",
        "export NEWSLETTER_SECRET_KEY=<a long random string>",
    )


def server_secret_key(development: bool) -> bytes:
    """The web app's signing secret: NEWSLETTER_SECRET_KEY, required unless `development` is asked for.

    Only development mode falls back to, or accepts, the public development secret (anyone can forge links with it).
    """
    value = _secret_from_env(development)
    if value:
        return value.encode()
    if development:
        return DEVELOPMENT_SECRET.encode()
    raise ConfigError(
        SECRET_ENV,
        "is not set; the web app would check links with the public development secret, so anyone could forge them",
        "export NEWSLETTER_SECRET_KEY=<the sender's secret>, or try it locally with `newsletter serve --dev`",
    )


def _signature(secret: bytes, purpose: str, list_id: str, body: str) -> str:
    digest = hmac.new(secret, f"{purpose}\0{list_id}\0{body}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:SIGNATURE_CHARS]


def _base36(number: int, width: int) -> str:
    if number < 0:
        raise ValueError(f"{number} is negative; tokens hold only numbers from 0")
    digits = []
    rest = number
    while rest:
        rest, digit = divmod(rest, 36)
        digits.append(ALPHABET[digit])
    text = "".join(reversed(digits)) or "0"
    if len(text) > width:
        raise ValueError(f"{number} does not fit in {width} base-36 digits")
    return text.rjust(width, "0")


def unsubscribe_token(secret: bytes, list_id: str, subscriber_id: int) -> str:
    """The fixed-length token for one subscriber's unsubscribe link on one list."""
    body = _base36(subscriber_id, ID_CHARS)
    return _signature(secret, "unsubscribe", list_id, body) + body


def verify_unsubscribe_token(secret: bytes, list_id: str, token: str) -> int | None:
    """The subscriber id in a valid token; None for a tampered, foreign, empty or malformed one."""
    if not token or len(token) != TOKEN_LENGTH or not token.isascii():
        return None
    signature, body = token[:SIGNATURE_CHARS], token[SIGNATURE_CHARS:]
    if any(ch not in ALPHABET for ch in body):
        return None
    if not hmac.compare_digest(signature, _signature(secret, "unsubscribe", list_id, body)):
        return None
    return int(body, 36)


def confirm_token(secret: bytes, list_id: str, subscriber_id: int, issued_at: float | None = None) -> str:
    """A double opt-in confirmation token: subscriber id and issue time, signed."""
    stamp = int(issued_at if issued_at is not None else time.time())
    body = _base36(subscriber_id, ID_CHARS) + _base36(stamp, 7)
    return _signature(secret, "confirm", list_id, body) + body


class ConfirmToken(NamedTuple):
    """What a valid confirmation token says."""

    subscriber_id: int
    issued_at: int  # Unix time, whole seconds


def verify_confirm_token(
    secret: bytes, list_id: str, token: str, max_age: float, now: float | None = None
) -> ConfirmToken | None:
    """The subscriber and issue time of a valid confirmation token younger than `max_age` seconds, else None."""
    if not token or len(token) != SIGNATURE_CHARS + ID_CHARS + 7 or not token.isascii():
        return None
    signature, body = token[:SIGNATURE_CHARS], token[SIGNATURE_CHARS:]
    if any(ch not in ALPHABET for ch in body):
        return None
    if not hmac.compare_digest(signature, _signature(secret, "confirm", list_id, body)):
        return None
    issued = int(body[ID_CHARS:], 36)
    if (now if now is not None else time.time()) - issued > max_age:
        return None
    return ConfirmToken(int(body[:ID_CHARS], 36), issued)
