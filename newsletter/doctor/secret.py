"""The signing secret: NEWSLETTER_SECRET_KEY must be set, long and random, and never a known default."""

from __future__ import annotations

import math
import os
import string
from collections.abc import Mapping

from ..tokens import DEVELOPMENT_SECRET, SECRET_ENV
from .findings import Finding, failed, passed, warned

CHECK = "secret key"
MIN_LENGTH = 16  # tokens.py refuses shorter keys
GOOD_BITS = 128  # what `secrets.token_urlsafe(32)` gives twice over
GENERATE = (
    'generate one with `python -c "import secrets; print(secrets.token_urlsafe(32))"` and give it to send and serve'
)
PLACEHOLDERS = ("changeme", "change-me", "secret", "password", "example", "test", "default", "<", "xxxx")
CLASSES = (string.ascii_lowercase, string.ascii_uppercase, string.digits)


def estimated_bits(value: str) -> float:
    """A generous upper bound on the key's entropy: its length times log2 of the alphabet its character classes
    span, but no more than its distinct characters allow (a key of one repeated character has almost none)."""
    alphabet = sum(len(chars) for chars in CLASSES if any(ch in chars for ch in value))
    alphabet += 32 if any(not ch.isalnum() or not ch.isascii() for ch in value) else 0
    distinct = len(set(value))
    return len(value) * math.log2(max(2, min(alphabet, distinct * 4)))


def check_secret_key(environ: Mapping[str, str] | None = None) -> Finding:
    """NEWSLETTER_SECRET_KEY: set, not the public development secret or a placeholder, at least 128 bits."""
    value = (os.environ if environ is None else environ).get(SECRET_ENV, "")
    if not value:
        return failed(
            CHECK, f"{SECRET_ENV} is not set: links would be signed with the public development secret", GENERATE
        )
    if value == DEVELOPMENT_SECRET:
        return failed(CHECK, f"{SECRET_ENV} is the public development secret: anyone can forge its links", GENERATE)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8 reach Python as lone surrogates
        return failed(CHECK, f"{SECRET_ENV} holds bytes that are not UTF-8 text: send and serve refuse it", GENERATE)
    if not value.isprintable():
        return failed(
            CHECK, f"{SECRET_ENV} holds a line break or control character: send and serve refuse it", GENERATE
        )
    if len(value) < MIN_LENGTH:
        return failed(CHECK, f"{SECRET_ENV} is {len(value)} characters; at least {MIN_LENGTH} are needed", GENERATE)
    lowered = value.lower()
    placeholder = next((word for word in PLACEHOLDERS if word in lowered), None)
    if placeholder:
        return warned(
            CHECK, f"{SECRET_ENV} contains '{placeholder}': it looks like a placeholder, not a random key", GENERATE
        )
    bits = estimated_bits(value)
    if bits < GOOD_BITS:
        return warned(
            CHECK,
            f"{SECRET_ENV} is {len(value)} characters, about {bits:.0f} bits of randomness at most; {GOOD_BITS} wanted",
            GENERATE,
        )
    return passed(
        CHECK,
        f"{SECRET_ENV} is set, {len(value)} characters",
        "keep it: a new key breaks every unsubscribe link already sent",
    )
