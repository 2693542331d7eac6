"""Signed tokens: fixed length, URL-safe, and no tampered, foreign or expired token ever validates."""

from __future__ import annotations

import pytest

from newsletter.errors import ConfigError
from newsletter.tokens import (
    DEVELOPMENT_SECRET,
    TOKEN_LENGTH,
    confirm_token,
    secret_key,
    server_secret_key,
    unsubscribe_token,
    verify_confirm_token,
    verify_unsubscribe_token,
)

SECRET = b"a-long-test-secret-for-tokens"


@pytest.mark.parametrize("subscriber_id", [1, 36, 123456789, 36**8 - 1])
def test_round_trip_with_fixed_length(subscriber_id: int) -> None:
    token = unsubscribe_token(SECRET, "list.example.com", subscriber_id)
    assert len(token) == TOKEN_LENGTH and token.replace("-", "").replace("_", "").isalnum()
    assert verify_unsubscribe_token(SECRET, "list.example.com", token) == subscriber_id


def test_tampered_foreign_and_malformed_tokens_fail() -> None:
    token = unsubscribe_token(SECRET, "list.example.com", 42)
    flipped = token[:-1] + ("1" if token[-1] != "1" else "2")  # another subscriber id, same signature
    assert verify_unsubscribe_token(SECRET, "list.example.com", flipped) is None
    assert verify_unsubscribe_token(SECRET, "other.example.com", token) is None
    assert verify_unsubscribe_token(b"another-secret-entirely", "list.example.com", token) is None
    for bad in ["", "x", token + "0", "ü" * TOKEN_LENGTH, token.upper(), "%" * TOKEN_LENGTH]:
        assert verify_unsubscribe_token(SECRET, "list.example.com", bad) is None


def test_confirm_tokens_expire() -> None:
    token = confirm_token(SECRET, "l", 7, issued_at=1_000_000)
    assert verify_confirm_token(SECRET, "l", token, max_age=7 * 86400, now=1_000_000 + 86400) == (7, 1_000_000)
    assert verify_confirm_token(SECRET, "l", token, max_age=7 * 86400, now=1_000_000 + 8 * 86400) is None
    assert verify_unsubscribe_token(SECRET, "l", token) is None  # one purpose never stands for another


def test_real_transports_need_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    assert secret_key("file")[1] is True
    with pytest.raises(ConfigError, match="NEWSLETTER_SECRET_KEY: is not set; the smtp transport sends real mail"):
        secret_key("smtp")
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "short")
    with pytest.raises(ConfigError, match="shorter than 16"):
        secret_key("ses")


@pytest.mark.parametrize("number", [36**8, 36**8 + 12345, 10**15])
def test_a_number_too_large_is_named_in_the_error(number: int) -> None:
    with pytest.raises(ValueError, match=rf"^{number} does not fit in 8 base-36 digits$"):
        unsubscribe_token(SECRET, "l", number)


def test_a_negative_number_is_refused() -> None:
    with pytest.raises(ValueError, match="^-1 is negative"):
        unsubscribe_token(SECRET, "l", -1)


def test_the_web_app_never_falls_back_to_the_development_secret_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match="NEWSLETTER_SECRET_KEY: is not set; .* anyone could forge them"):
        server_secret_key(development=False)
    assert server_secret_key(development=True) == DEVELOPMENT_SECRET.encode()
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "a-real-secret-of-some-length")
    assert server_secret_key(development=False) == b"a-real-secret-of-some-length"
    assert server_secret_key(development=True) == b"a-real-secret-of-some-length"


def test_the_public_development_secret_is_refused_as_the_real_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", DEVELOPMENT_SECRET)
    refusal = r"^NEWSLETTER_SECRET_KEY: is the public development secret, .*secrets\.token_urlsafe\(32\)"
    for transport in ["smtp", "ses"]:
        with pytest.raises(ConfigError, match=refusal):
            secret_key(transport)
    with pytest.raises(ConfigError, match=refusal):
        server_secret_key(development=False)
    assert server_secret_key(development=True) == DEVELOPMENT_SECRET.encode()  # asked for explicitly
    assert secret_key("file") == (DEVELOPMENT_SECRET.encode(), True)  # the file transport sends no real mail


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("a-long-secret-\udcff-of-bytes", "holds bytes that are not UTF-8 text"),
        ("a-long-secret-of-some-length\n", "holds a line break or control character"),
        ("a-long-secret\x1b[31m-of-some-length", "holds a line break or control character"),
    ],
)
def test_a_secret_that_is_not_one_line_of_text_is_one_error_for_sender_and_web_app(
    monkeypatch: pytest.MonkeyPatch, value: str, problem: str
) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", value)
    for read in (lambda: secret_key("ses"), lambda: server_secret_key(False)):
        with pytest.raises(ConfigError, match=problem):
            read()


def test_a_secret_of_bytes_that_are_not_utf8_is_one_line_through_the_cli(tmp_path, publication) -> None:
    """Python hands such bytes over as lone surrogates; encoding them used to be an 'unexpected' error."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NEWSLETTER_SECRET_KEY": "x" * 20}
    env_bytes = {k.encode(): v.encode() for k, v in env.items()}
    env_bytes[b"NEWSLETTER_SECRET_KEY"] = b"a-long-secret-\xff-of-bytes"
    done = subprocess.run(
        [sys.executable, "-m", "newsletter", "--root", str(publication), "send", "2023-09-25-top-ml-papers",
         "--transport", "smtp", "--yes"],
        env=env_bytes, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr == (
        "Error: NEWSLETTER_SECRET_KEY: holds bytes that are not UTF-8 text (use a long random string)\n"
    )
