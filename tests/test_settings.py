"""Settings you can trust: an unknown key is refused with the nearest known one, every value is checked for its
type and its form (language tags by BCP 47, URLs, addresses, spans of time), and so is every environment
override, whatever it holds: either the settings load, or one printable line says what is wrong and where.

Before, a typo such as `tittle` was silently ignored, `ko_KR` passed as a language and a 5,000-digit
NEWSLETTER_SMTP_PORT was a traceback.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import load_settings
from newsletter.config_keys import SES_KEYS, SMTP_KEYS, TOP_KEYS
from newsletter.errors import ConfigError

SEED = 20261202
MESSAGE_LIMIT = 600  # characters of one refusal: every value it quotes is cut


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


def _append(publication: Path, text: str) -> None:
    path = publication / "pyproject.toml"
    path.write_text(path.read_text(encoding="utf-8") + "\n" + text, encoding="utf-8")


def _refusal(publication: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(publication)
    return _checked_line(str(caught.value))


def _checked_line(text: str) -> str:
    assert text.isprintable(), text  # no line break, no control, no invisible character left raw
    assert len(text) <= MESSAGE_LIMIT, text
    return text


@pytest.fixture(autouse=True)
def no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests set the environment themselves: none of the machine's overrides leak in."""
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_") or name == "AWS_REGION":
            monkeypatch.delenv(name)


# --- unknown keys ---------------------------------------------------------------------------------------------

UNKNOWN_KEYS = [
    ("tool.newsletter", "tittle", '"x"', "unknown setting (did you mean title?)"),
    ("tool.newsletter", "form", '"a@b.org"', "unknown setting (did you mean from?)"),
    ("tool.newsletter", "base-url", '"https://x.org"', "unknown setting (did you mean base_url?)"),
    ("tool.newsletter", "Timezone", '"UTC"', "unknown setting (did you mean timezone?)"),
    ("tool.newsletter", "feedsize", "5", "unknown setting (did you mean feed_size?)"),
    ("tool.newsletter", "host", '"smtp.x.org"', "unknown setting (did you mean [tool.newsletter.smtp] host?)"),
    ("tool.newsletter", "region", '"eu-west-1"', "unknown setting (did you mean [tool.newsletter.ses] region?)"),
    ("tool.newsletter", "colour", '"red"', "unknown setting (remove it; the README's settings table lists every key)"),
    (
        "tool.newsletter",
        "secret_key",
        '"s"',
        "unknown setting (never put a secret in the file: set NEWSLETTER_SECRET_KEY in the environment)",
    ),
    ("tool.newsletter.smtp", "prot", "25", "unknown setting (did you mean port?)"),
    ("tool.newsletter.smtp", "rate", "3", "unknown setting (did you mean [tool.newsletter] rate?)"),
    (
        "tool.newsletter.smtp",
        "password",
        '"hunter2"',
        "unknown setting (never put a secret in the file: set NEWSLETTER_SMTP_PASSWORD in the environment)",
    ),
    ("tool.newsletter.smtp", "xyz", "1", "unknown setting (use connections, host, port, security or timeout)"),
    ("tool.newsletter.ses", "regoin", '"eu-west-1"', "unknown setting (did you mean region?)"),
    ("tool.newsletter.ses", "topic_arns", '"arn"', "unknown setting (did you mean topic_arn?)"),
    (
        "tool.newsletter.ses",
        "endpoint_url",
        '"http://127.0.0.1:1"',
        "unknown setting (set NEWSLETTER_SES_ENDPOINT_URL instead: it is only for tests and local stand-ins)",
    ),
    ("tool.newsletter.en", "titel", '"x"', "unknown setting (did you mean title?)"),
    ("tool.newsletter.en", "author", '"x"', "unknown setting (did you mean [tool.newsletter] author?)"),
]


@pytest.mark.parametrize(
    ("table", "key", "value", "problem"), UNKNOWN_KEYS, ids=[f"{u[0]}.{u[1]}" for u in UNKNOWN_KEYS]
)
def test_an_unknown_key_is_refused_with_the_nearest_known_one(
    publication: Path, table: str, key: str, value: str, problem: str
) -> None:
    _set(publication, table, key, value)
    assert _refusal(publication) == f"pyproject.toml [{table}] {key}: {problem}"


def test_a_typo_is_named_before_the_key_it_misses(publication: Path) -> None:
    """`tittle` with no `title`: the typo is what the editor needs to hear about, not a missing title."""
    config = publication / "pyproject.toml"
    config.write_text(config.read_text(encoding="utf-8").replace("\ntitle = ", "\ntittle = ", 1), encoding="utf-8")
    assert _refusal(publication) == "pyproject.toml [tool.newsletter] tittle: unknown setting (did you mean title?)"


def test_a_key_with_control_characters_is_shown_escaped(publication: Path) -> None:
    _set(publication, "tool.newsletter", '"\\u001b[31mred\\u200b"', "1")
    assert _refusal(publication) == (
        "pyproject.toml [tool.newsletter] '\\x1b[31mred\\u200b': unknown setting "
        "(remove it; the README's settings table lists every key)"
    )


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        (
            "fr",
            "pyproject.toml [tool.newsletter.fr]: is a table for a language that is not in languages "
            '(add "fr" to languages)',
        ),
        (
            "sec",  # Sechelt, and one letter from ses
            "pyproject.toml [tool.newsletter.sec]: is a table for a language that is not in languages "
            '(add "sec" to languages, or did you mean [tool.newsletter.ses]?)',
        ),
        (
            "ko",
            "pyproject.toml [tool.newsletter.ko]: is a table for ko, the default language, whose title and "
            "description are [tool.newsletter]'s (move them there and remove the table)",
        ),
        (
            "EN",
            "pyproject.toml [tool.newsletter.EN]: names no language in languages (did you mean [tool.newsletter.en]?)",
        ),
        ("smpt", "pyproject.toml [tool.newsletter] smpt: unknown setting (did you mean smtp?)"),
    ],
)
def test_a_table_that_is_no_language_of_the_publication_is_named(publication: Path, table: str, problem: str) -> None:
    _append(publication, f'[tool.newsletter.{table}]\ntitle = "x"\n')
    assert _refusal(publication) == problem


def test_a_language_table_where_a_table_belongs_must_be_one(publication: Path) -> None:
    _set(publication, "tool.newsletter", "smtp", '"localhost"')
    assert _refusal(publication) == (
        "pyproject.toml [tool.newsletter] smtp: is text, not a table (write its settings under [tool.newsletter.smtp])"
    )


def test_every_documented_key_is_known(publication: Path) -> None:
    """The README's settings table and the keys the settings accept are the same list."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Settings: `[tool.newsletter]` in pyproject.toml", 1)[1].split("\n## ", 1)[0]
    for key in (*TOP_KEYS, *SMTP_KEYS, *SES_KEYS):
        assert f"`{key}`" in table, f"README's settings table does not name {key}"


# --- language tags ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        ("ko_KR", "'ko_KR' is not in BCP 47's canonical form (use ko-KR)"),
        ("EN", "'EN' is not in BCP 47's canonical form (use en)"),
        ("zh-hant", "'zh-hant' is not in BCP 47's canonical form (use zh-Hant)"),
        ("iw", "'iw' is not in BCP 47's canonical form (use he)"),
        ("jp", "'jp' is not a BCP 47 language code (use ja: jp is a country code)"),
        ("cn", "'cn' is not a BCP 47 language code (use zh: cn is a country code)"),
        ("english", "'english' is not a BCP 47 language code (use ko, en, …)"),
        ("", 'is empty (write language = "…" or remove the line for the default)'),
        (
            "en-u-ca-gregory",
            "'en-u-ca-gregory' has a private-use or extension part, which file names and paths do not carry "
            "(use a language with an optional script and region, such as ko, en-US or zh-Hant)",
        ),
        ("en-GB-oxenfree", "'en-GB-oxenfree' is not a BCP 47 language code (use ko, en, …)"),
    ],
)
def test_the_default_language_is_a_canonical_bcp47_tag(publication: Path, code: str, problem: str) -> None:
    _set(publication, "tool.newsletter", "language", f'"{code}"')
    assert _refusal(publication) == f"pyproject.toml [tool.newsletter] language: {problem}"


@pytest.mark.parametrize("code", ["kr", "en-US", "zh-Hant-TW", "es-419", "sr-Latn", "de-CH-1996"])
def test_a_valid_tag_is_kept_as_written(publication: Path, code: str) -> None:
    """`kr` is Kanuri: valid, so not refused here (the theme's wording check is another's)."""
    _set(publication, "tool.newsletter", "languages", f'["en", "{code}"]')
    _append(publication, f'[tool.newsletter.{code}]\ntitle = "T"\n')
    settings = load_settings(publication)
    assert settings.languages == ("en", code) and settings.translations[code].title == "T"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('"en"', "'en' is text, not a list of codes (write a list: [\"en\"])"),
        ("{}", 'is a table, not a list of codes (use ["en"])'),
        ('["en", "en"]', "lists 'en' twice (list each language once)"),
        ('["en", "ko"]', "lists 'ko', the default language (list only the other languages)"),
        ('["en", "ko_KR"]', "'ko_KR' is not in BCP 47's canonical form (use ko-KR)"),
        ('["smtp"]', "'smtp' is reserved for settings (use another code)"),
        ("[1]", '[1] is not a list of codes (use ["en"])'),
    ],
)
def test_the_other_languages_are_a_list_of_distinct_tags(publication: Path, value: str, problem: str) -> None:
    _set(publication, "tool.newsletter", "languages", value)
    assert _refusal(publication) == f"pyproject.toml [tool.newsletter] languages: {problem}"


# --- types and forms ------------------------------------------------------------------------------------------

WRONG_VALUES = [
    ("tool.newsletter", "title", "{ a = 1 }", 'is a table, not text (write it in quotes: title = "…")'),
    ("tool.newsletter", "author", "[1, 2]", 'is a list, not text (write it in quotes: author = "…")'),
    (
        "tool.newsletter",
        "postal_address",
        "12",
        'is a whole number, not text (write it in quotes: postal_address = "…")',
    ),
    ("tool.newsletter", "feed_size", "2.5", "2.5 is not a positive whole number (use 20)"),
    ("tool.newsletter", "page_size", "true", "is true or false, not a positive whole number (use 50)"),
    (
        "tool.newsletter",
        "page_size",
        '"50"',
        "'50' is text, not a positive whole number (write it without quotes: page_size = 50)",
    ),
    ("tool.newsletter", "page_size", '"fifty"', "'fifty' is text, not a positive whole number (use 50)"),
    ("tool.newsletter", "rate", "true", "is true or false, not a positive number of messages per second (use 14)"),
    (
        "tool.newsletter",
        "rate",
        '"2.5"',
        "'2.5' is text, not a positive number of messages per second (write it without quotes: rate = 2.5)",
    ),
    ("tool.newsletter", "rate", "-1", "-1 is not a positive number of messages per second (use 14)"),
    ("tool.newsletter", "timezone", '"asia/seoul"', "'asia/seoul' is not a time zone (did you mean Asia/Seoul?)"),
    ("tool.newsletter", "publish_time", '"25:00"', "'25:00' is not a time (use HH:MM)"),
    (
        "tool.newsletter",
        "publish_time",
        '"09:00+09:00"',
        "'09:00+09:00' has a UTC offset (write HH:MM and set timezone)",
    ),
    ("tool.newsletter", "id_date", '"20230925"', "'20230925' is not a date (use YYYY-MM-DD)"),
    (
        "tool.newsletter",
        "id_date",
        "2023-09-25T09:00:00",
        "2023-09-25T09:00:00 is a date and time (use a date alone: YYYY-MM-DD)",
    ),
    ("tool.newsletter", "max_late", "24", 'max_late: 24 has no unit (write "24h", or use s, m or d)'),
    (
        "tool.newsletter",
        "max_late",
        '"1 day"',
        "'1 day' is not a span of time (use a number and s, m, h or d, such as \"24h\")",
    ),
    ("tool.newsletter", "max_late", '"0m"', "'0m' is no time at all (use a positive span, such as \"24h\")"),
    ("tool.newsletter", "transport", '"sms"', "'sms' is not a transport (use file, smtp or ses)"),
    ("tool.newsletter", "ambiguous_retries", "1.0", "1.0 is not a whole number from 0 to 3 (use 1)"),
    ("tool.newsletter", "ambiguous_retries", '"4"', "'4' is text, not a whole number from 0 to 3 (use 1)"),
    (
        "tool.newsletter",
        "reply_to",
        '"a@b"',
        "'a@b' is not an email address: The part after the @-sign is not valid. It should have a period. (use 'Name <a@b.org>')",
    ),
    (
        "tool.newsletter",
        "reply_to",
        '"x@localhost"',
        "'x@localhost' is not an email address: The part after the @-sign is not valid. It should have a period. (use 'Name <a@b.org>')",
    ),
    (
        "tool.newsletter",
        "from",
        '"W <w@파이.com>"',
        "'w@파이.com' has a domain in Unicode (write it in ASCII: w@xn--hu5b15s.com)",
    ),
    (
        "tool.newsletter",
        "from",
        '"a@b.org, c@d.org"',
        "'a@b.org, c@d.org' is not one email address (use 'Name <a@b.org>')",
    ),
    (
        "tool.newsletter",
        "unsubscribe_mailto",
        '"ä@x.com"',
        "'ä@x.com' is not an email address: Internationalized characters before the @-sign are not supported: 'ä'. (use 'Name <a@b.org>')",
    ),
    (
        "tool.newsletter",
        "app_url",
        '"https://파이.com/x"',
        "'https://파이.com/x' is not ASCII, which mail headers need (write it as https://xn--hu5b15s.com/x)",
    ),
    (
        "tool.newsletter",
        "base_url",
        '"https://x.com/ä"',
        "'https://x.com/ä' is not ASCII, which mail headers need (write it as https://x.com/%C3%A4)",
    ),
    (
        "tool.newsletter",
        "app_url",
        '"https://x.com/a\\\\b"',
        "'https://x.com/a\\\\b' holds '\\\\', which a URL cannot (percent-encode it as %5C)",
    ),
    (
        "tool.newsletter",
        "app_url",
        '"https://x.com/p?q=1"',
        "'https://x.com/p?q=1' has a query; pages and links add a path to it (use https://host/path)",
    ),
    ("tool.newsletter", "app_url", '"ftp://x.com"', "'ftp://x.com' is not an absolute URL (use https://host/path)"),
    (
        "tool.newsletter.smtp",
        "host",
        '"smtp.x.com:587"',
        "'smtp.x.com:587' holds a port (write the host alone and set port = 587)",
    ),
    (
        "tool.newsletter.smtp",
        "host",
        '"메일.com"',
        "'메일.com' is not a host name (write it in ASCII: xn--h32bq4v.com)",
    ),
    ("tool.newsletter.smtp", "host", '"-x.com"', "'-x.com' is not a host name (use smtp.example.com or an IP address)"),
    ("tool.newsletter.smtp", "port", "0", "0 is not a positive whole number (use 587)"),
    ("tool.newsletter.smtp", "timeout", "0", "0 is not a positive number of seconds (use 30)"),
    ("tool.newsletter.smtp", "timeout", "1000", "1000 is more than 600 seconds (use at most 600)"),
    ("tool.newsletter.smtp", "security", "true", 'is true or false, not text (write it in quotes: security = "…")'),
    (
        "tool.newsletter.ses",
        "configuration_set",
        '"my set"',
        "'my set' is not a configuration set name (use letters, digits, _ and -)",
    ),
    ("tool.newsletter.ses", "transient_bounces", "0", "0 is not a positive whole number (use 3)"),
    (
        "tool.newsletter.ses",
        "topic_arn",
        "{ arn = 1 }",
        'is a table, not an ARN or a list of ARNs (use "arn:aws:sns:…" or ["…", "…"])',
    ),
    ("tool.newsletter.en", "title", "[]", 'is a list, not text (write it in quotes: title = "…")'),
]


@pytest.mark.parametrize(
    ("table", "key", "value", "problem"), WRONG_VALUES, ids=[f"{w[1]}={w[2]}" for w in WRONG_VALUES]
)
def test_a_value_of_the_wrong_type_or_form_is_one_line(
    publication: Path, table: str, key: str, value: str, problem: str
) -> None:
    _set(publication, table, key, value)
    assert _refusal(publication) == f"pyproject.toml [{table}] {key}: {problem.removeprefix(f'{key}: ')}"


def test_toml_dates_and_times_are_taken_as_they_are(publication: Path) -> None:
    """An editor who writes them unquoted, as Hugo's TOML front matter does, gets what they mean."""
    _set(publication, "tool.newsletter", "publish_time", "07:30:00")
    _set(publication, "tool.newsletter", "id_date", "2023-09-25")
    settings = load_settings(publication)
    assert settings.publish_time == dt.time(7, 30) and settings.id_date == "2023-09-25"


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("24h", dt.timedelta(hours=24)),
        ("90m", dt.timedelta(minutes=90)),
        ("1h30m", dt.timedelta(minutes=90)),
        ("2d", dt.timedelta(days=2)),
        ("45s", dt.timedelta(seconds=45)),
    ],
)
def test_max_late_is_a_span_of_time(publication: Path, text: str, span: dt.timedelta) -> None:
    assert load_settings(publication).max_late == dt.timedelta(hours=24)  # the default
    _set(publication, "tool.newsletter", "max_late", f'"{text}"')
    assert load_settings(publication).max_late == span


def test_app_url_defaults_to_base_url_and_may_be_its_own_host(
    publication: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(publication)
    assert settings.app_url == "https://papers.example.com"
    assert settings.app("unsubscribe?token=x") == "https://papers.example.com/unsubscribe?token=x"
    _set(publication, "tool.newsletter", "app_url", '"https://app.example.com/"')
    assert load_settings(publication).app("confirm") == "https://app.example.com/confirm"
    monkeypatch.setenv("NEWSLETTER_APP_URL", "http://127.0.0.1:8000")
    assert load_settings(publication).app_url == "http://127.0.0.1:8000"
    monkeypatch.setenv("NEWSLETTER_APP_URL", "https://x.com/#top")
    assert _refusal(publication) == (
        "NEWSLETTER_APP_URL: 'https://x.com/#top' has a fragment; pages and links add a path to it "
        "(use https://host/path)"
    )


def test_the_smtp_timeout_is_a_setting(publication: Path) -> None:
    assert load_settings(publication).smtp.timeout == 30.0
    _set(publication, "tool.newsletter.smtp", "timeout", "12.5")
    assert load_settings(publication).smtp.timeout == 12.5


def test_a_toml_syntax_error_names_its_line(publication: Path) -> None:
    config = publication / "pyproject.toml"
    lines = config.read_text(encoding="utf-8").splitlines()
    at = lines.index("[tool.newsletter]") + 1
    lines.insert(at, "feed_size = 20 20")
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert _refusal(publication) == (
        f"{config}:{at + 1}: is not valid TOML: Expected newline or end of document after a statement at column 16 "
        "(fix the syntax)"
    )


def test_a_byte_order_mark_is_allowed(publication: Path) -> None:
    config = publication / "pyproject.toml"
    config.write_bytes(b"\xef\xbb\xbf" + config.read_bytes())
    assert load_settings(publication).language == "ko"


def test_a_database_url_password_is_never_shown(publication: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", "postgresql://editor:hunter2@db.example.com/news\x07")
    text = _refusal(publication)
    assert "hunter2" not in text and text.startswith("NEWSLETTER_DATABASE_URL: 'postgresql://editor:***@db")


# --- missing modules ------------------------------------------------------------------------------------------

REFUSE_MODULE = """
import importlib.abc, sys

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == {module!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Refuse())
"""


def _without(module: str, tmp_path: Path, publication: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """Run the CLI in a process where `module` cannot be imported (a sitecustomize refuses it)."""
    folder = tmp_path / f"no_{module}"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(REFUSE_MODULE.format(module=module))
    variables = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    variables |= {"PYTHONPATH": str(folder), **env}
    command = [sys.executable, "-m", "newsletter", "--root", str(publication), *args]
    return subprocess.run(command, env=variables, capture_output=True, text=True, timeout=120)


def test_postgresql_without_psycopg_names_the_extra(publication: Path, tmp_path: Path) -> None:
    done = _without(
        "psycopg",
        tmp_path,
        publication,
        "subscribers",
        "count",
        NEWSLETTER_DATABASE_URL="postgresql://newsletter@127.0.0.1:1/newsletter",
    )
    assert done.returncode == 1 and done.stdout == "", done.stderr
    assert done.stderr == (
        "Error: NEWSLETTER_DATABASE_URL: PostgreSQL needs the psycopg driver (pip install 'git-newsletter[postgres]')\n"
    )


def test_ses_without_boto3_says_to_reinstall(publication: Path, tmp_path: Path) -> None:
    """boto3 is part of the normal install now: its absence is a broken install, not a missing extra."""
    done = _without(
        "boto3",
        tmp_path,
        publication,
        "events",
        "--once",
        "--queue-url",
        "https://sqs.us-east-1.amazonaws.com/123456789012/q",
    )
    assert done.returncode == 1 and done.stdout == "", done.stderr
    assert done.stderr == (
        "Error: Amazon SQS needs the boto3 package, which is missing (reinstall it: pip install git-newsletter)\n"
    )


# --- fuzz: every key and every environment variable, hostile values -----------------------------------------

ENVIRONMENT = [
    "NEWSLETTER_BASE_URL",
    "NEWSLETTER_APP_URL",
    "NEWSLETTER_DATABASE_URL",
    "NEWSLETTER_TRANSPORT",
    "NEWSLETTER_SMTP_HOST",
    "NEWSLETTER_SMTP_PORT",
    "NEWSLETTER_SMTP_CONNECTIONS",
    "NEWSLETTER_SES_ENDPOINT_URL",
    "NEWSLETTER_SES_QUEUE_URL",
    "NEWSLETTER_SES_MAX_IN_FLIGHT",
    "NEWSLETTER_AMBIGUOUS_RETRIES",
    "AWS_REGION",
]
# Pieces hostile text is made of: controls, invisible and right-to-left marks, two scripts and an emoji, the
# characters URLs, addresses and TOML treat specially, numbers of every shape, and starts of good values.
PIECES = [
    *(chr(c) for c in (1, 7, 8, 9, 10, 11, 13, 27, 31, 127, 0x85, 0x9B)),
    "\u200b",
    "\u200e",
    "\u202e",
    "\u2028",
    "\ufeff",
    "\u00ad",
    "한국어",
    "é",
    "😀",
    "ﬁ",
    "٣",
    "%",
    "%00",
    "'",
    '"',
    "\\",
    "[",
    "]",
    "@",
    ":",
    "/",
    "//",
    "..",
    "?",
    "#",
    "<",
    ">",
    ",",
    " ",
    "-",
    "_",
    ".",
    "0",
    "-1",
    "65536",
    "99999999999999999999",
    "1e999",
    "nan",
    "inf",
    "2.5",
    "true",
    "https://",
    "http://[::1",
    "sqlite:///",
    "postgresql://u:pw@",
    "arn:aws:sns:",
    "us-east-1",
    "smtp.example.com",
    "a@b.org",
    "x" * 300,
]


def _hostile_text(chooser: random.Random) -> str:
    text = "".join(chooser.choice(PIECES) for _ in range(chooser.randint(1, 6)))
    if chooser.random() < 0.05:
        text *= chooser.choice([1_000, 20_000])  # huge
    return text


def _toml_string(text: str) -> str:
    """`text` as a TOML basic string: every character outside printable ASCII escaped."""
    escaped = "".join(
        ch
        if " " <= ch <= "~" and ch not in '"\\'
        else f"\\u{ord(ch):04X}"
        if ord(ch) < 0x10000
        else f"\\U{ord(ch):08X}"
        for ch in text
    )
    return f'"{escaped}"'


def _hostile_toml(chooser: random.Random) -> str:
    """A TOML value of any type: hostile text, numbers at the edges, dates, lists, tables."""
    kinds = [
        lambda: _toml_string(_hostile_text(chooser)),
        lambda: chooser.choice(["0", "-1", "1", "65536", "9223372036854775807", "-9223372036854775808"]),
        lambda: chooser.choice(["1.5", "0.0", "-0.0", "1e308", "nan", "inf", "-inf"]),
        lambda: chooser.choice(["true", "false"]),
        lambda: chooser.choice(["1979-05-27", "07:32:00", "1979-05-27T07:32:00Z", "1979-05-27T07:32:00"]),
        lambda: f"[{', '.join(_toml_string(_hostile_text(chooser)) for _ in range(chooser.randint(0, 3)))}]",
        lambda: chooser.choice(["[1, 2]", "[[]]", '["en", 1]', "[{ a = 1 }]"]),
        lambda: chooser.choice(["{}", "{ a = 1 }", '{ title = "x" }']),
    ]
    return chooser.choice(kinds)()


def _load_or_refuse(publication: Path, case: object) -> str | None:
    """None when the settings load; the refusal's line otherwise (checked to be one short printable line)."""
    try:
        load_settings(publication)
    except ConfigError as err:
        text = str(err)
        assert text.isprintable() and len(text) <= MESSAGE_LIMIT, (case, text)
        return text
    return None


def test_hostile_environment_overrides_load_or_are_refused_in_one_line(
    publication: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chooser = random.Random(SEED)
    refused: list[tuple[str, str, str]] = []
    edges = ["9" * 5_000, "x" * 100_000, "\udcff", "한국어", "\x1b[31m", " ", "0", "-1", "1.5", "https://"]
    cases = [(name, value) for name in ENVIRONMENT for value in edges]
    for case in range(600):
        value = _hostile_text(chooser)
        if chooser.random() < 0.1:
            value = value.encode("utf-8")[:-1].decode("utf-8", "surrogateescape")  # bytes that are not UTF-8
        cases.append((ENVIRONMENT[case % len(ENVIRONMENT)], value))
    for name, value in cases:
        value = value[:100_000]  # the most one variable may hold for a process Linux starts is 128 KiB
        monkeypatch.setenv(name, value)
        text = _load_or_refuse(publication, (name, value[:200]))
        if text is not None:
            assert text.startswith(f"{name}: "), (name, value[:200], text)
            refused.append((name, value, text))
        monkeypatch.delenv(name)
    assert len(refused) > 500, len(refused)  # nearly all are refused: the loop really reached the checks
    _through_the_cli(publication, [({name: value}, text) for name, value, text in refused[::20]])


def test_every_key_with_hostile_values_loads_or_is_refused_in_one_line(publication: Path) -> None:
    chooser = random.Random(SEED)
    config = publication / "pyproject.toml"
    original = config.read_text(encoding="utf-8")
    places = [
        *(("tool.newsletter", key) for key in TOP_KEYS),
        *(("tool.newsletter.smtp", key) for key in SMTP_KEYS),
        *(("tool.newsletter.ses", key) for key in SES_KEYS),
        ("tool.newsletter.en", "title"),
        ("tool.newsletter.en", "description"),
        ("tool.newsletter", "smtp"),
        ("tool.newsletter", "ses"),
        ("tool.newsletter", "en"),
    ]
    outcomes = {"loaded": 0, "refused": 0}
    refused: list[tuple[str, str]] = []
    for case in range(len(places) * 20):
        table, key = places[case % len(places)]
        value = _hostile_toml(chooser)
        # For `en`, the table [tool.newsletter.en] is replaced by a value of another type.
        config.write_text(original.split("[tool.newsletter.en]")[0] if key == "en" else original, encoding="utf-8")
        _set(publication, table, key, value)
        text = _load_or_refuse(publication, (table, key, value[:200]))
        if text is None:
            outcomes["loaded"] += 1
            continue
        outcomes["refused"] += 1
        assert text.startswith(("pyproject.toml [tool.newsletter", str(config))), (table, key, value[:200], text)
        refused.append((config.read_text(encoding="utf-8"), text))
    assert outcomes["loaded"] > 10 and outcomes["refused"] > 300, outcomes
    _through_the_files(publication, refused[::25])


def _through_the_files(publication: Path, cases: list[tuple[str, str]]) -> None:
    config = publication / "pyproject.toml"
    runner = CliRunner()
    for text, line in cases:
        config.write_text(text, encoding="utf-8")
        result = runner.invoke(cli, ["--root", str(publication), "check"], obj={}, catch_exceptions=True)
        assert result.exception is None or isinstance(result.exception, SystemExit), (line, result.exception)
        assert result.exit_code == 1 and result.stdout == "" and result.stderr == f"Error: {line}\n", (line, result)


def _through_the_cli(publication: Path, cases: list[tuple[dict[str, str], str]]) -> None:
    """`newsletter check` as its own process, the environment as given: exit 1 and exactly the refusal's line."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_") and k != "AWS_REGION"}
    for env, line in cases:
        done = subprocess.run(
            [sys.executable, "-m", "newsletter", "--root", str(publication), "check"],
            env={**base, **env},
            capture_output=True,
            timeout=60,
        )
        stderr = done.stderr.decode("utf-8", "replace")
        assert done.returncode == 1 and done.stdout == b"", (env, stderr)
        assert stderr == f"Error: {line}\n", (env, stderr)


@pytest.mark.parametrize("host", ["smtp.example.com", "smtp.example.com.", "mail_relay", "127.0.0.1", "::1"])
def test_an_smtp_host_name_or_address_is_kept(publication: Path, monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    """Container names may hold `_` (docker compose's `mail_relay`): refused by RFC 1123, resolved all the same."""
    _set(publication, "tool.newsletter.smtp", "host", f'"{host}"')
    assert load_settings(publication).smtp.host == host
    monkeypatch.setenv("NEWSLETTER_SMTP_HOST", host)
    assert load_settings(publication).smtp.host == host
