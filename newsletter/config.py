"""Read `[tool.newsletter]` of a publication's pyproject.toml (plus environment) into frozen Settings.

Every error names the file and the key. Nothing here touches issues, templates or the network.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import tomllib
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import ConfigError
from .files import read_regular_file

if TYPE_CHECKING:
    from email.headerregistry import Address

CONFIG_FILE = "pyproject.toml"
LANGUAGE_PATTERN = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
LANGUAGE_LIMIT = 20  # characters of a code the store keeps per subscriber
# Header parts come from settings: these bounds keep every header line within RFC 5322's 998 octets.
HEADER_NAME_LIMIT = 200  # the display name of `from` and `reply_to`
ADDRESS_LIMIT = 254  # RFC 5321 §4.5.3.1: a path of 256 octets, brackets included
BASE_URL_LIMIT = 500  # List-Unsubscribe carries it unfolded, with the token and the mailto
LIST_ID = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)+$")  # RFC 2919 §2
LIST_ID_LIMIT = 255  # RFC 2919 §2
AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$")
CONFIG_FILE_LIMIT = 1_000_000  # bytes of pyproject.toml; a publication's is about 2 KB


MULTILINE_KEYS = frozenset({"description"})  # the settings that may span lines
MULTILINE_CONTROLS = "\r\n\t"  # the control characters those may hold
LINE_BREAKS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def _is_control(ch: str) -> bool:
    """C0 and C1 controls, DEL and the Unicode line and paragraph separators."""
    return ch <= "\x1f" or "\x7f" <= ch <= "\x9f" or ch in "\u2028\u2029"


@dataclass(frozen=True)
class LanguageSettings:
    """Per-language wording of the publication (title and description shown to readers)."""

    title: str
    description: str


TRANSPORTS = ("file", "smtp", "ses")


@dataclass(frozen=True)
class SmtpSettings:
    """`[tool.newsletter.smtp]`; the user and password come from NEWSLETTER_SMTP_USER / _PASSWORD."""

    host: str = "localhost"
    port: int = 587
    security: str = "starttls"  # starttls | tls | none
    timeout: float = 30.0  # seconds for each step but the end of DATA (which waits RFC 5321's 10 minutes)
    connections: int = 4  # the pool of reused connections: the most messages in flight (NEWSLETTER_SMTP_CONNECTIONS)


# arn:<partition>:sns:<region>:<12-digit account>:<topic name>, in the partitions whose SNS hosts are
# sns.<region>.amazonaws.com (aws, aws-us-gov) and sns.<region>.amazonaws.com.cn (aws-cn).
SNS_TOPIC_ARN = re.compile(
    r"^arn:(?:aws:sns:(?!cn-|us-gov-)|aws-cn:sns:(?=cn-)|aws-us-gov:sns:(?=us-gov-))"
    r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}:[0-9]{12}:(?=[A-Za-z0-9_.-]{1,256}\Z)[A-Za-z0-9_-]+(?:\.fifo)?\Z"
)


@dataclass(frozen=True)
class SesSettings:
    """`[tool.newsletter.ses]`: region and configuration set (credentials come from boto3's usual chain)."""

    region: str = "us-east-1"
    configuration_set: str = ""
    endpoint_url: str = ""  # only for tests and local stand-ins (NEWSLETTER_SES_ENDPOINT_URL)
    queue_url: str = ""  # the SQS queue that receives SES bounce and complaint notifications
    # The SNS topics whose notifications are applied (`topic_arn`, one ARN or a list). None: the web app's
    # /ses/notifications refuses every message, and `newsletter events` applies every SNS-wrapped one.
    topic_arns: tuple[str, ...] = ()
    transient_bounces: int = 3  # transient bounces before an address counts as bounced
    max_in_flight: int = 128  # SendEmail calls at once at most (NEWSLETTER_SES_MAX_IN_FLIGHT)


@dataclass(frozen=True)
class Settings:
    """One publication's settings; paths are absolute."""

    root: Path
    title: str
    description: str
    base_url: str  # the archive's public URL, no trailing slash
    language: str  # the default language
    languages: tuple[str, ...]  # the other languages
    author: str
    from_address: Address
    reply_to: Address | None
    postal_address: str
    feed_size: int
    page_size: int  # issues per index or tag page
    timezone: zoneinfo.ZoneInfo
    publish_time: dt.time
    id_date: str  # the date part of every tag: URI; never change it
    translations: dict[str, LanguageSettings] = field(default_factory=dict)
    database_url: str = ""
    database_setting: str = "database_url"  # where database_url came from, for messages
    transport: str = "file"
    list_id: str = ""  # RFC 2919 id, e.g. weekly.papers.example.com
    unsubscribe_mailto: str = ""  # an address whose mail really is processed, or empty
    rate: float | None = None  # messages per second at most (SES: also its quota)
    ambiguous_retries: int = 1  # how often a message whose outcome is unknown is tried again (0: at most once)
    app_url: str = ""  # where `newsletter serve` answers /unsubscribe, /subscribe, …; no trailing slash
    max_late: dt.timedelta = dt.timedelta(hours=24)  # `send --due` refuses an issue later than this past its time
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    ses: SesSettings = field(default_factory=SesSettings)

    @property
    def all_languages(self) -> tuple[str, ...]:
        return (self.language, *self.languages)

    @property
    def issues_dir(self) -> Path:
        return self.root / "issues"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).hostname or "localhost"

    def for_language(self, lang: str) -> LanguageSettings:
        """The title and description in `lang`, falling back to the default language's."""
        fallback = LanguageSettings(self.title, self.description)
        return self.translations.get(lang, fallback)

    def url(self, path: str) -> str:
        """Absolute URL of a site path such as `en/feed.xml` or `` (the home page)."""
        return f"{self.base_url}/{path.lstrip('/')}"

    def app(self, path: str) -> str:
        """Absolute URL of a web-app path such as `unsubscribe?token=…` (on `app_url`, else on `base_url`)."""
        return f"{self.app_url or self.base_url}/{path.lstrip('/')}"


class _Reader:
    """Pulls typed values out of the `[tool.newsletter]` table, naming the key on error."""

    def __init__(self, table: dict[str, Any], where: str) -> None:
        self.table = table
        self.where = where

    def fail(self, key: str, message: str, hint: str) -> ConfigError:
        return ConfigError(f"{self.where} {key}", message, hint)

    def string(self, key: str, default: str | None = None) -> str:
        value = self.table.get(key, default)
        if value is None:
            raise self.fail(key, "is missing", f'add {key} = "…" to [tool.newsletter]')
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"{value!r} is not a non-empty string", "quote the value")
        allowed = MULTILINE_CONTROLS if key in MULTILINE_KEYS else ""
        control = next((ch for ch in value if _is_control(ch) and ch not in allowed), None)
        if control is not None and control in LINE_BREAKS:
            raise self.fail(key, "contains a line break", "write it on one line")
        if control is not None:
            raise self.fail(key, f"contains the control character U+{ord(control):04X}", "remove it")
        return value.strip()

    def optional_string(self, key: str) -> str:
        """A string setting that may be absent or empty (then ""), checked like string() otherwise."""
        value = self.table.get(key, "")
        return "" if value == "" else self.string(key)

    def overridable(
        self, key: str, env: str, default: str | None = None
    ) -> tuple[str, Callable[[str, str], ConfigError]]:
        """A string setting that the environment variable `env` overrides when set: (its value, how to report
        a problem with it: naming the variable or the key, wherever the value came from)."""
        value = os.environ.get(env, "")
        if not value:
            return self.string(key, default), lambda message, hint: self.fail(key, message, hint)
        if not value.strip() or any(not ch.isprintable() for ch in value):
            raise ConfigError(
                env, f"{value!r} is empty or holds a line break or control character", "set it on one line"
            )
        return value.strip(), lambda message, hint: ConfigError(env, message, hint)

    def positive_int(self, key: str, default: int) -> int:
        value = self.table.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise self.fail(key, f"{value!r} is not a positive whole number", f"use {default}")
        return value

    def address(self, key: str, *, required: bool) -> Address | None:
        value = self.table.get(key)
        if value is None and not required:
            return None
        from email.headerregistry import AddressHeader, HeaderRegistry  # only here: a tenth of the start-up

        text = self.string(key)
        try:
            header = HeaderRegistry()("To", text)
            assert isinstance(header, AddressHeader)
            (address,) = header.addresses
        except (ValueError, IndexError, TypeError) as err:
            raise self.fail(key, f"{text!r} is not one email address", "use 'Name <a@b.org>'") from err
        if not address.username or not address.domain or header.defects:
            raise self.fail(key, f"{text!r} is not one email address", "use 'Name <a@b.org>'")
        if len(address.display_name) > HEADER_NAME_LIMIT or len(address.addr_spec) > ADDRESS_LIMIT:
            raise self.fail(
                key,
                f"is {len(text):,} characters long; a mail header takes a name of at most {HEADER_NAME_LIMIT} "
                f"and an address of at most {ADDRESS_LIMIT}",
                "shorten it",
            )
        return address


def find_root(start: Path) -> Path:
    """The nearest folder at or above `start` whose pyproject.toml has `[tool.newsletter]`."""
    start = start.resolve()
    for folder in (start, *start.parents):
        candidate = folder / CONFIG_FILE
        if not candidate.exists():
            continue
        if b"[tool.newsletter" in read_regular_file(
            candidate, str(candidate), limit=CONFIG_FILE_LIMIT, fail=ConfigError
        ):
            return folder
    raise ConfigError(str(start), "no pyproject.toml with [tool.newsletter] here or above", "pass --root DIR")


def load_settings(root: Path) -> Settings:
    """Read and check the publication settings at `root`."""
    path = root / CONFIG_FILE
    try:
        raw = read_regular_file(path, str(path), limit=CONFIG_FILE_LIMIT, fail=ConfigError)
        document = tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(str(path), "not found", "pass --root DIR of a publication") from err
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(str(path), f"is not valid TOML: {err}", "fix the syntax") from err
    table = document.get("tool", {}).get("newsletter")
    if not isinstance(table, dict):
        raise ConfigError(str(path), "has no [tool.newsletter] table", "add one (see README)")
    read = _Reader(table, f"{CONFIG_FILE} [tool.newsletter]")

    base_url = _public_url(read, "base_url", "NEWSLETTER_BASE_URL")
    app_url = _public_url(read, "app_url", "NEWSLETTER_APP_URL", base_url)

    language = read.string("language", "en")
    languages = table.get("languages", [])
    if not isinstance(languages, list) or not all(isinstance(x, str) for x in languages):
        raise read.fail("languages", f"{languages!r} is not a list of codes", 'use ["en"]')
    for key, code in [("language", language), *(("languages", code) for code in languages)]:
        if not LANGUAGE_PATTERN.match(code) or len(code) > LANGUAGE_LIMIT:
            raise read.fail(key, f"{code!r} is not a BCP 47 language code", "use ko, en, …")

    feed_size = read.positive_int("feed_size", 20)
    page_size = read.positive_int("page_size", 50)

    zone_name = read.string("timezone", "UTC")
    try:
        zone = zoneinfo.ZoneInfo(zone_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as err:
        raise read.fail("timezone", f"{zone_name!r} is not a time zone", "use Asia/Seoul, UTC, …") from err

    time_text = read.string("publish_time", "09:00")
    try:
        publish_time = dt.time.fromisoformat(time_text)
    except ValueError as err:
        raise read.fail("publish_time", f"{time_text!r} is not a time", "use HH:MM") from err

    id_date = read.string("id_date", "2000-01-01")
    try:
        dt.date.fromisoformat(id_date)
    except ValueError as err:
        raise read.fail("id_date", f"{id_date!r} is not a date", "use YYYY-MM-DD") from err

    translations: dict[str, LanguageSettings] = {}
    for code in languages:
        if code in {"smtp", "ses"}:
            raise read.fail("languages", f"{code!r} is reserved for settings", "use another code")
        sub = table.get(code, {})
        if not isinstance(sub, dict):
            raise read.fail(code, "is not a table", f"use [tool.newsletter.{code}]")
        sub_read = _Reader(sub, f"{CONFIG_FILE} [tool.newsletter.{code}]")
        translations[code] = LanguageSettings(
            title=sub_read.string("title", read.string("title")),
            description=sub_read.string("description", read.string("description")),
        )

    from_address = read.address("from", required=True)
    assert from_address is not None
    root = root.resolve()
    host = urlsplit(base_url).hostname or "localhost"
    return Settings(
        root=root.resolve(),
        title=read.string("title"),
        description=read.string("description"),
        base_url=base_url.rstrip("/"),
        language=language,
        languages=tuple(languages),
        author=read.string("author"),
        from_address=from_address,
        reply_to=read.address("reply_to", required=False),
        postal_address=read.string("postal_address"),
        feed_size=feed_size,
        page_size=page_size,
        timezone=zone,
        publish_time=publish_time,
        id_date=id_date,
        translations=translations,
        database_url=_database_url(read, root),
        database_setting="NEWSLETTER_DATABASE_URL"
        if os.environ.get("NEWSLETTER_DATABASE_URL")
        else f"{read.where} database_url",
        transport=_transport(read),
        list_id=_list_id(read, f"newsletter.{host}"),
        unsubscribe_mailto=_unsubscribe_mailto(read),
        rate=_rate(read),
        ambiguous_retries=_bounded_int(read, "ambiguous_retries", "NEWSLETTER_AMBIGUOUS_RETRIES", 1, 0, 3),
        app_url=app_url.rstrip("/"),
        max_late=_duration(read, "max_late", "24h"),
        smtp=_smtp(table, path),
        ses=_ses(table, path),
    )


def _public_url(read: _Reader, key: str, env: str, default: str | None = None) -> str:
    """The environment variable `env`, else `key`: an absolute http(s) URL that paths are added to."""
    url, fail = read.overridable(key, env, default)
    _check_url(url, fail)
    # Every link and List-Unsubscribe add a path to it: a query or fragment would swallow that path (and the
    # token with it), and a user name or password would go into every mail.
    parts = urlsplit(url)
    extra = [
        name
        for name, present in [
            ("a user name or password", "@" in parts.netloc),
            ("a query", "?" in url),
            ("a fragment", "#" in url),
        ]
        if present
    ]
    if extra:
        raise fail(f"{url!r} has {' and '.join(extra)}; pages and links add a path to it", "use https://host/path")
    if len(url) > BASE_URL_LIMIT:
        raise fail(
            f"is {len(url):,} characters long; List-Unsubscribe must carry it on one header line",
            f"use a URL of at most {BASE_URL_LIMIT} characters",
        )
    return url


DURATION = re.compile(r"^([0-9]{1,6})\s*(s|m|h|d)$")
DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _duration(read: _Reader, key: str, default: str) -> dt.timedelta:
    """`key`: a span of time such as "90m", "24h" or "2d"."""
    text = read.string(key, default)
    match = DURATION.match(text)
    if not match:
        raise read.fail(key, f"{text!r} is not a span of time", f'use a number and s, m, h or d, such as "{default}"')
    return dt.timedelta(**{DURATION_UNITS[match[2]]: int(match[1])})


def _check_url(url: str, fail: Callable[[str, str], ConfigError]) -> None:
    """Refuse what is not an absolute http(s) URL, including what urlsplit cannot even parse."""
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port  # both check what they parse
    except ValueError as err:  # an unclosed [IPv6 bracket, a port out of range
        raise fail(f"{url!r} is not a URL: {err}", "use https://host/path") from None
    if parts.scheme not in {"http", "https"} or not host or any(ch.isspace() for ch in url):
        raise fail(f"{url!r} is not an absolute URL", "use https://host/path")


def _url_override(env: str) -> str:
    """An http(s) URL from the environment variable `env`, checked; empty when it is not set."""
    value = os.environ.get(env, "").strip()
    if value:
        _check_url(value, lambda message, hint: ConfigError(env, message, hint))
    return value


def _aws_region(read: _Reader) -> str:
    """AWS_REGION, else the `region` of [tool.newsletter.ses]: a region name such as ap-northeast-2."""
    region, fail = read.overridable("region", "AWS_REGION", "us-east-1")
    if not AWS_REGION.match(region):
        raise fail(f"{region!r} is not an AWS region", "use us-east-1, ap-northeast-2, …")
    return region


def _list_id(read: _Reader, default: str) -> str:
    """`list_id`: RFC 2919's dot-atom, such as weekly.papers.example.com."""
    value = read.string("list_id", default)
    if not LIST_ID.match(value) or len(value) > LIST_ID_LIMIT:
        raise read.fail(
            "list_id", f"{value[:80]!r} is not a list id", f"use words joined by dots, at most {LIST_ID_LIMIT} in all"
        )
    return value


def _unsubscribe_mailto(read: _Reader) -> str:
    """`unsubscribe_mailto`: one plain address (it goes into List-Unsubscribe as a mailto: URI), or empty."""
    if not read.table.get("unsubscribe_mailto", ""):
        return ""
    value = read.string("unsubscribe_mailto")
    if not re.fullmatch(r"[^\s<>@,;\\\"]+@[^\s<>@,;\\\"?&]+", value) or len(value) > ADDRESS_LIMIT:
        raise read.fail("unsubscribe_mailto", f"{value[:80]!r} is not one plain address", "use leave@example.com")
    return value


def _database_url(read: _Reader, root: Path) -> str:
    """NEWSLETTER_DATABASE_URL, else `database_url`, else the SQLite file in subscribers/; relative
    SQLite paths are relative to the publication."""
    url, _ = read.overridable("database_url", "NEWSLETTER_DATABASE_URL", "sqlite:///subscribers/subscribers.db")
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite:///:memory:":
        url = prefix + str(root / url[len(prefix) :])
    return url


def _transport(read: _Reader) -> str:
    name, fail = read.overridable("transport", "NEWSLETTER_TRANSPORT", "file")
    if name not in TRANSPORTS:
        raise fail(f"'{name}' is not a transport", "use file, smtp or ses")
    return name


def _rate(read: _Reader) -> float | None:
    value = read.table.get("rate")
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise read.fail("rate", f"{value!r} is not a positive number of messages per second", "use 14")
    return float(value)


def _smtp(table: dict[str, Any], path: Path) -> SmtpSettings:
    sub = table.get("smtp", {})
    read = _Reader(sub if isinstance(sub, dict) else {}, f"{CONFIG_FILE} [tool.newsletter.smtp]")
    security = read.string("security", "starttls")
    if security not in {"starttls", "tls", "none"}:
        raise read.fail("security", f"'{security}' is not starttls, tls or none", "use starttls")
    host, fail = read.overridable("host", "NEWSLETTER_SMTP_HOST", "localhost")
    if any(ch.isspace() for ch in host) or len(host) > 253:
        raise fail(f"{host!r} is not a host name", "use smtp.example.com or an IP address")
    return SmtpSettings(
        host=host,
        port=_port(read),
        security=security,
        connections=_bounded_int(read, "connections", "NEWSLETTER_SMTP_CONNECTIONS", 4, 1, 64),
    )


def _port(read: _Reader) -> int:
    """NEWSLETTER_SMTP_PORT, else `port`: a TCP port number (the file's is checked either way)."""
    port = read.positive_int("port", 587)
    if port > 65535:
        raise read.fail("port", f"{port!r} is not a port number", "use a number from 1 to 65535")
    text = os.environ.get("NEWSLETTER_SMTP_PORT", "").strip()
    if not text:
        return port
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 65535):
        raise ConfigError("NEWSLETTER_SMTP_PORT", f"{text!r} is not a port number", "use a number from 1 to 65535")
    return int(text)


def _bounded_int(read: _Reader, key: str, env: str, default: int, low: int, high: int) -> int:
    """The environment variable `env`, else `key`: a whole number from `low` to `high` (the file's is checked
    either way)."""
    problem = f"is not a whole number from {low} to {high}"
    value = read.table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise read.fail(key, f"{value!r} {problem}", f"use {default}")
    text = os.environ.get(env, "").strip()
    if not text:
        return value
    if not (text.isascii() and text.isdigit() and low <= int(text) <= high):
        raise ConfigError(env, f"{text!r} {problem}", f"use {default}")
    return int(text)


def _ses(table: dict[str, Any], path: Path) -> SesSettings:
    sub = table.get("ses", {})
    read = _Reader(sub if isinstance(sub, dict) else {}, f"{CONFIG_FILE} [tool.newsletter.ses]")
    return SesSettings(
        region=_aws_region(read),
        configuration_set=read.optional_string("configuration_set"),
        endpoint_url=_url_override("NEWSLETTER_SES_ENDPOINT_URL"),
        queue_url=_url_override("NEWSLETTER_SES_QUEUE_URL") or _queue_url(read),
        topic_arns=_topic_arns(read),
        transient_bounces=read.positive_int("transient_bounces", 3),
        max_in_flight=_bounded_int(read, "max_in_flight", "NEWSLETTER_SES_MAX_IN_FLIGHT", 128, 1, 512),
    )


def _queue_url(read: _Reader) -> str:
    """`queue_url` of [tool.newsletter.ses]: the SQS queue's https URL, or empty."""
    url = read.optional_string("queue_url")
    if url:
        _check_url(url, lambda message, hint: read.fail("queue_url", message, hint))
    return url


def _topic_arns(read: _Reader) -> tuple[str, ...]:
    """`topic_arn`: one SNS topic ARN or a list of them; empty (or absent) means none."""
    value = read.table.get("topic_arn", "")
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise read.fail("topic_arn", f"{value!r} is not an ARN or a list of ARNs", 'use "arn:aws:sns:…" or ["…", "…"]')
    arns = tuple(v.strip() for v in values if v.strip())
    for arn in arns:
        if not SNS_TOPIC_ARN.match(arn):
            raise read.fail(
                "topic_arn",
                f"{arn!r} is not an SNS topic ARN",
                "use arn:aws:sns:<region>:<12-digit account>:<topic name>, as the SNS console shows it",
            )
    return arns
