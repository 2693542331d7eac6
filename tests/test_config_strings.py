"""String settings refuse control characters, and base_url refuses parts that links would be appended to.

A NUL or ESC in a setting passed validation and failed later with a wrong message (or went into headers and
pages); a base_url with a query or fragment swallowed the List-Unsubscribe token, and its password went into
every mail. Each is now one line naming the file, the table and the key.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.errors import ConfigError


def _set(publication: Path, table: str, key: str, toml_value: str) -> None:
    """Set `key` of `[table]` in the publication's pyproject.toml to the TOML text `toml_value`."""
    path = publication / "pyproject.toml"
    lines = path.read_text(encoding="utf-8").splitlines()
    header = f"[{table}]"
    if header not in lines:
        lines += ["", header]
    start = lines.index(header) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("[")), len(lines))
    section = [line for line in lines[start:end] if not line.startswith(f"{key} = ")]
    lines[start:end] = [f"{key} = {toml_value}", *section]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _refusal(publication: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(publication)
    text = str(caught.value)
    assert "\n" not in text and "\r" not in text
    return text


# (table, key, a good value the control character is put into)
STRING_SETTINGS = [
    ("tool.newsletter", "base_url", "https://papers.example.com"),
    ("tool.newsletter", "title", "Weekly"),
    ("tool.newsletter", "author", "The editors"),
    ("tool.newsletter", "postal_address", "1 Example Road"),
    ("tool.newsletter", "from", "Weekly <weekly@papers.example.com>"),
    ("tool.newsletter", "reply_to", "editor@papers.example.com"),
    ("tool.newsletter", "timezone", "Asia/Seoul"),
    ("tool.newsletter", "publish_time", "09:00"),
    ("tool.newsletter", "id_date", "2023-09-25"),
    ("tool.newsletter", "language", "ko"),
    ("tool.newsletter", "list_id", "weekly.papers.example.com"),
    ("tool.newsletter", "unsubscribe_mailto", "leave@papers.example.com"),
    ("tool.newsletter", "database_url", "sqlite:///subscribers/x.db"),
    ("tool.newsletter", "transport", "file"),
    ("tool.newsletter.en", "title", "Weekly"),
    ("tool.newsletter.smtp", "host", "smtp.example.com"),
    ("tool.newsletter.smtp", "security", "starttls"),
    ("tool.newsletter.ses", "region", "us-east-1"),
    ("tool.newsletter.ses", "configuration_set", "weekly"),
    ("tool.newsletter.ses", "queue_url", "https://sqs.us-east-1.amazonaws.com/123456789012/q"),
]
CONTROLS = [
    ("\\u0000", "contains the control character U+0000 (remove it)"),
    ("\\u001b[31m", "contains the control character U+001B (remove it)"),
    ("\\u007f", "contains the control character U+007F (remove it)"),
    ("\\u009b", "contains the control character U+009B (remove it)"),
    ("\\t", "contains the control character U+0009 (remove it)"),
    ("\\r\\nBcc: x@y.com", "contains a line break (write it on one line)"),
    ("\\u0085", "contains a line break (write it on one line)"),
    ("\\u2028", "contains a line break (write it on one line)"),
]


@pytest.mark.parametrize(("escape", "problem"), CONTROLS, ids=[c[0] for c in CONTROLS])
@pytest.mark.parametrize(("table", "key", "good"), STRING_SETTINGS, ids=[f"{t[0]}.{t[1]}" for t in STRING_SETTINGS])
def test_a_control_character_in_a_string_setting_is_one_line(
    publication: Path, monkeypatch: pytest.MonkeyPatch, table: str, key: str, good: str, escape: str, problem: str
) -> None:
    for variable in ("NEWSLETTER_BASE_URL", "NEWSLETTER_DATABASE_URL", "NEWSLETTER_TRANSPORT", "AWS_REGION"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("NEWSLETTER_SMTP_HOST", raising=False)
    monkeypatch.delenv("NEWSLETTER_SES_QUEUE_URL", raising=False)
    cut = len(good) // 2
    _set(publication, table, key, f'"{good[:cut]}{escape}{good[cut:]}"')
    assert _refusal(publication) == f"pyproject.toml [{table}] {key}: {problem}"


def test_a_description_may_span_lines_but_holds_no_other_control(publication: Path) -> None:
    _set(publication, "tool.newsletter", "description", '"Line one\\nline two\\r\\n\\tand three"')
    assert load_settings(publication).description == "Line one\nline two\r\n\tand three"
    _set(publication, "tool.newsletter", "description", '"Line one\\u0000"')
    assert _refusal(publication) == (
        "pyproject.toml [tool.newsletter] description: contains the control character U+0000 (remove it)"
    )


@pytest.mark.parametrize(
    ("url", "parts"),
    [
        ("https://u:pw@x.com/p?q=1#frag", "a user name or password and a query and a fragment"),
        ("https://u@x.com", "a user name or password"),
        ("https://x.com/p?q=1", "a query"),
        ("https://x.com/p?", "a query"),
        ("https://x.com/p#", "a fragment"),
        ("https://x.com/#top", "a fragment"),
    ],
)
def test_a_base_url_with_credentials_query_or_fragment_is_refused(
    publication: Path, monkeypatch: pytest.MonkeyPatch, url: str, parts: str
) -> None:
    monkeypatch.delenv("NEWSLETTER_BASE_URL", raising=False)
    _set(publication, "tool.newsletter", "base_url", f'"{url}"')
    assert _refusal(publication) == (
        f"pyproject.toml [tool.newsletter] base_url: {url!r} has {parts}; pages and links add a path to it "
        "(use https://host/path)"
    )
    monkeypatch.setenv("NEWSLETTER_BASE_URL", url)
    _set(publication, "tool.newsletter", "base_url", '"https://papers.example.com"')
    assert _refusal(publication) == (
        f"NEWSLETTER_BASE_URL: {url!r} has {parts}; pages and links add a path to it (use https://host/path)"
    )


@pytest.mark.parametrize("url", ["https://papers.example.com", "https://x.com/weekly/", "http://127.0.0.1:8000/a/b"])
def test_a_base_url_of_host_and_path_is_kept(publication: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.delenv("NEWSLETTER_BASE_URL", raising=False)
    _set(publication, "tool.newsletter", "base_url", f'"{url}"')
    assert load_settings(publication).base_url == url.rstrip("/")


@pytest.mark.parametrize(("key", "value"), [("language", '"../x"'), ("languages", '["en", "../x"]')])
def test_a_bad_language_code_names_its_own_key(publication: Path, key: str, value: str) -> None:
    _set(publication, "tool.newsletter", key, value)
    shown = value.strip('"[]').split(", ")[-1].strip('"')
    assert _refusal(publication) == (
        f"pyproject.toml [tool.newsletter] {key}: {shown!r} is not a BCP 47 language code (use ko, en, …)"
    )


# (table, key, attribute path on Settings, environment variable, default, lowest, highest)
BOUNDED_INTS = [
    ("tool.newsletter", "ambiguous_retries", "ambiguous_retries", "NEWSLETTER_AMBIGUOUS_RETRIES", 1, 0, 3),
    ("tool.newsletter.smtp", "connections", "smtp.connections", "NEWSLETTER_SMTP_CONNECTIONS", 4, 1, 64),
    ("tool.newsletter.ses", "max_in_flight", "ses.max_in_flight", "NEWSLETTER_SES_MAX_IN_FLIGHT", 128, 1, 512),
]


def _read(publication: Path, attribute: str) -> object:
    value: object = load_settings(publication)
    for part in attribute.split("."):
        value = getattr(value, part)
    return value


@pytest.mark.parametrize(
    ("table", "key", "attribute", "env", "default", "low", "high"), BOUNDED_INTS, ids=[b[1] for b in BOUNDED_INTS]
)
def test_a_bounded_whole_number_setting_and_its_override(
    publication: Path,
    monkeypatch: pytest.MonkeyPatch,
    table: str,
    key: str,
    attribute: str,
    env: str,
    default: int,
    low: int,
    high: int,
) -> None:
    monkeypatch.delenv(env, raising=False)
    assert _read(publication, attribute) == default
    _set(publication, table, key, str(high))
    assert _read(publication, attribute) == high
    monkeypatch.setenv(env, str(low))
    assert _read(publication, attribute) == low  # the environment wins
    problem = f"is not a whole number from {low} to {high} (use {default})"
    for text in ("abc", str(high + 1), str(low - 1), "٣", "2.5"):
        monkeypatch.setenv(env, text)
        assert _refusal(publication) == f"{env}: {text!r} {problem}"
    monkeypatch.delenv(env)
    for toml_value, shown in [(str(high + 1), high + 1), (str(low - 1), low - 1)]:
        _set(publication, table, key, toml_value)
        assert _refusal(publication) == f"pyproject.toml [{table}] {key}: {shown} {problem}"
    _set(publication, table, key, '"2"')
    assert _refusal(publication) == (
        f"pyproject.toml [{table}] {key}: '2' is text, not a whole number from {low} to {high} "
        f"(write it without quotes: {key} = 2)"
    )
    _set(publication, table, key, "true")
    assert _refusal(publication) == (
        f"pyproject.toml [{table}] {key}: is true or false, not a whole number from {low} to {high} (use {default})"
    )
