"""Read `[tool.newsletter]` of a publication's pyproject.toml (plus environment) into frozen Settings.

Which keys each table holds and where each value comes from is said here; config_values.py checks each value.
Every error names the file, the table and the key (or the environment variable). Nothing here touches issues,
templates or the network.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from .config_keys import (
    LANGUAGE_KEYS,
    SES_KEYS,
    SMTP_KEYS,
    SUBTABLES,
    TOP_KEYS,
    refuse_unknown_tables,
    refuse_unknown_values,
)
from .config_values import (
    CONFIG_FILE,
    LANGUAGE_LIMIT,
    LANGUAGE_PATTERN,
    Fail,
    Table,
    check_address,
    check_host,
    check_language,
    check_logo,
    check_url,
    env_whole_number,
    environment_text,
    kind_of,
    shown,
    span,
)
from .errors import ConfigError
from .files import read_regular_file

if TYPE_CHECKING:
    from email.headerregistry import Address


__all__ = [  # CONFIG_FILE and the LANGUAGE_ names live in config_values; the rest of the package imports them here
    "CONFIG_FILE",
    "LANGUAGE_LIMIT",
    "LANGUAGE_PATTERN",
    "SNS_TOPIC_ARN",
    "TRANSPORTS",
    "LanguageSettings",
    "SesSettings",
    "Settings",
    "SmtpSettings",
    "find_root",
    "load_settings",
]

URL_SAFE = "/%#?&=+:@!$'()*,;"  # kept as they are in a site path's URL: RFC 3986's delimiters and '%'
BASE_URL_LIMIT = 500  # List-Unsubscribe carries it unfolded, with the token and the mailto
LIST_ID = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)+$")  # RFC 2919 §2
LIST_ID_LIMIT = 255  # RFC 2919 §2
AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$")
CONFIGURATION_SET = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # SES: letters, digits, _ and -, at most 64
ID_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")  # RFC 4151 §2.1 allows only this full-date form here
PORT_HINT = "use a number from 1 to 65535"
CONFIG_FILE_LIMIT = 1_000_000  # bytes of pyproject.toml; a publication's is about 2 KB


@dataclass(frozen=True)
class LanguageSettings:
    """Per-language wording of the publication (title, description and the logo's alt text shown to readers)."""

    title: str
    description: str
    logo_alt: str = ""  # the logo's alt text; empty: the title


TRANSPORTS = ("file", "smtp", "ses")
EMAIL_LAYOUTS = ("full", "summary")


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
    list_id_set: bool = True  # False: derived from base_url (so moving the archive would change it)
    unsubscribe_mailto: str = ""  # an address whose mail really is processed, or empty
    rate: float | None = None  # messages per second at most (SES: also its quota)
    ambiguous_retries: int = 1  # how often a message whose outcome is unknown is tried again (0: at most once)
    app_url: str = ""  # where `newsletter serve` answers /unsubscribe, /subscribe, …; no trailing slash
    max_late: dt.timedelta = dt.timedelta(hours=24)  # `send --due` refuses an issue later than this past its time
    logo: str = ""  # the email masthead's image: an http(s) URL or a path under static/ (`static/logo.png`)
    logo_alt: str = ""  # its alt text in the default language; empty: the title
    email_layout: str = "full"  # "full": every paper whole; "summary": its first paragraph, the rest on the web page
    search: bool = True  # build the archive's search index (Pagefind) and search pages
    welcome_mail: bool = True  # a subscriber who confirms a web sign-up gets a welcome mail
    # The reputation guard: a send pauses when its hard bounces or complaints pass these shares of the messages
    # it sent (fractions: 0.05 is 5 %), once it sent `guard_minimum`.
    max_bounce_rate: float = 0.05
    max_complaint_rate: float = 0.001
    guard_minimum: int = 200
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
        """The title, description and logo alt text in `lang`, falling back to the default language's."""
        fallback = LanguageSettings(self.title, self.description, self.logo_alt)
        return self.translations.get(lang, fallback)

    @property
    def logo_url(self) -> str:
        """The logo's absolute URL (a static/ path is on `base_url`), or "" when there is none."""
        return self.url(self.logo) if self.logo.startswith("static/") else self.logo

    def url(self, path: str) -> str:
        """Absolute URL of a site path such as `en/feed.xml` or `` (the home page). What a URL cannot carry as it is
        (the Hangul of `tags/한국어-태그/`, a space) is percent-encoded as UTF-8, as the pages' relative links are."""
        return f"{self.base_url}/{quote(path.lstrip('/'), safe=URL_SAFE)}"

    def app(self, path: str) -> str:
        """Absolute URL of a web-app path such as `unsubscribe?token=…` (on `app_url`, else on `base_url`)."""
        return f"{self.app_url or self.base_url}/{path.lstrip('/')}"


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
    """Read and check the publication settings at `root`: unknown keys first, then each value."""
    path = root / CONFIG_FILE
    table = _settings_table(path)
    top = Table(table, "tool.newsletter", (*TOP_KEYS, *SUBTABLES))
    refuse_unknown_values(top, table)
    language, languages = _languages(top)
    refuse_unknown_tables(top, table, language, languages)

    base_url = _public_url(top, "base_url", "NEWSLETTER_BASE_URL")
    app_url = _public_url(top, "app_url", "NEWSLETTER_APP_URL", base_url)
    title, description = top.string("title"), top.string("description")
    logo_alt = top.optional_string("logo_alt")
    from_address = top.address("from", required=True)
    assert from_address is not None
    root = root.resolve()
    return Settings(
        root=root,
        title=title,
        description=description,
        base_url=base_url.rstrip("/"),
        language=language,
        languages=languages,
        author=top.string("author"),
        from_address=from_address,
        reply_to=top.address("reply_to", required=False),
        postal_address=top.string("postal_address"),
        feed_size=top.whole_number("feed_size", 20),
        page_size=top.whole_number("page_size", 50),
        timezone=timezone_of(top),
        publish_time=_publish_time(top),
        id_date=_id_date(top),
        translations={code: _translation(table, code, title, description, logo_alt) for code in languages},
        database_url=_database_url(top, root),
        database_setting="NEWSLETTER_DATABASE_URL"
        if os.environ.get("NEWSLETTER_DATABASE_URL")
        else f"{top.where} database_url",
        transport=_transport(top),
        list_id=_list_id(top, derived_list_id(base_url)),
        list_id_set="list_id" in table,
        unsubscribe_mailto=_unsubscribe_mailto(top),
        rate=top.number("rate", "messages per second", 14),
        ambiguous_retries=_bounded_int(top, "ambiguous_retries", "NEWSLETTER_AMBIGUOUS_RETRIES", 1, 0, 3),
        app_url=app_url.rstrip("/"),
        max_late=span(top, "max_late", "24h"),
        logo=_logo(top),
        logo_alt=logo_alt,
        email_layout=_email_layout(top),
        search=_flag(top, "search", True),
        welcome_mail=_flag(top, "welcome_mail", True),
        max_bounce_rate=_percent(top, "max_bounce_rate", "5 %"),
        max_complaint_rate=_percent(top, "max_complaint_rate", "0.1 %"),
        guard_minimum=top.whole_number("guard_minimum", 200),
        smtp=_smtp(table),
        ses=_ses(table),
    )


def _settings_table(path: Path) -> dict[str, Any]:
    """The `[tool.newsletter]` table of the TOML file at `path` (a UTF-8 byte order mark is allowed)."""
    try:
        raw = read_regular_file(path, str(path), limit=CONFIG_FILE_LIMIT, fail=ConfigError)
    except FileNotFoundError as err:
        raise ConfigError(str(path), "not found", "pass --root DIR of a publication") from err
    try:
        document = tomllib.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        raise ConfigError(
            str(path), f"is not UTF-8 (byte 0x{raw[err.start]:02x} at offset {err.start})", "save it as UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as err:
        # tomllib says "… (at line 3, column 5)": the line goes where a line goes, `path:3:`.
        found = re.fullmatch(r"(.*) \(at line ([0-9]+), column ([0-9]+)\)", str(err), flags=re.DOTALL)
        if found is None:
            raise ConfigError(str(path), f"is not valid TOML: {err}", "fix the syntax") from None
        what, line, column = found.groups()
        raise ConfigError(f"{path}:{line}", f"is not valid TOML: {what} at column {column}", "fix the syntax") from None
    tool = document.get("tool")
    table = tool.get("newsletter") if isinstance(tool, dict) else None
    if not isinstance(table, dict):
        raise ConfigError(str(path), "has no [tool.newsletter] table", "add one (see README)")
    return table


def _languages(top: Table) -> tuple[str, tuple[str, ...]]:
    """`language` (the default) and `languages` (the others), each a canonical BCP 47 tag, none twice."""
    language = check_language(top.string("language", "en"), lambda message, hint: top.fail("language", message, hint))
    others = top.get("languages", [])
    if isinstance(others, str):
        hint = f'write a list: ["{others}"]' if re.fullmatch(r"[A-Za-z0-9_-]{1,20}", others) else 'use ["en"]'
        raise top.fail("languages", f"{shown(others)} is text, not a list of codes", hint)
    if not isinstance(others, list):
        raise top.fail("languages", f"is {kind_of(others)}, not a list of codes", 'use ["en"]')
    if not all(isinstance(x, str) for x in others):
        raise top.fail("languages", f"{shown(others)} is not a list of codes", 'use ["en"]')
    fail: Fail = lambda message, hint: top.fail("languages", message, hint)  # noqa: E731
    for number, code in enumerate(others):
        if code in SUBTABLES:
            raise fail(f"{code!r} is reserved for settings", "use another code")
        check_language(code, fail)
        if code == language:
            raise fail(f"lists {code!r}, the default language", "list only the other languages")
        if code in others[:number]:
            raise fail(f"lists {code!r} twice", "list each language once")
    return language, tuple(others)


def _translation(table: dict[str, Any], code: str, title: str, description: str, logo_alt: str) -> LanguageSettings:
    """The wording of [tool.newsletter.<code>], the default language's where it has none."""
    sub = Table(table.get(code, {}), f"tool.newsletter.{code}", LANGUAGE_KEYS)
    return LanguageSettings(
        title=sub.string("title", title),
        description=sub.string("description", description),
        logo_alt=sub.optional_string("logo_alt") or logo_alt,
    )


def _email_layout(top: Table) -> str:
    """`email_layout`: full (each paper whole) or summary (its first paragraph, the rest on the web page)."""
    value = top.string("email_layout", "full")
    if value not in EMAIL_LAYOUTS:
        raise top.fail("email_layout", f"{shown(value)} is not full or summary", "use full or summary")
    return value


def _flag(top: Table, key: str, default: bool) -> bool:
    """A setting that is true or false."""
    value = top.get(key, default)
    if not isinstance(value, bool):
        raise top.fail(key, f"is {kind_of(value)}, not true or false", f"write {key} = true or {key} = false")
    return value


def _logo(top: Table) -> str:
    """`logo`: the email masthead's image, an http(s) URL or a path under static/; "" when absent."""
    value = top.optional_string("logo")
    return check_logo(value, lambda message, hint: top.fail("logo", message, hint)) if value else ""


def timezone_of(top: Table) -> zoneinfo.ZoneInfo:
    """`timezone`: an IANA time zone name such as Asia/Seoul."""
    name = top.string("timezone", "UTC")
    try:
        # Only what a zone name can be reaches zoneinfo: a long dotted name made its tzdata import recurse.
        if len(name) <= 100 and re.fullmatch(r"[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*", name):
            return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        pass
    zones = {zone.lower(): zone for zone in zoneinfo.available_timezones()} if len(name) < 60 else {}
    guess = zones.get(name.lower().replace(" ", "_"))
    hint = f"did you mean {guess}?" if guess else "use Asia/Seoul, UTC, …"
    raise top.fail("timezone", f"{shown(name)} is not a time zone", hint)


def _publish_time(top: Table) -> dt.time:
    """`publish_time`: a time of day, "09:00" (or a TOML time, 09:00:00), with no UTC offset: `timezone` says it."""
    value = top.get("publish_time", "09:00")
    if isinstance(value, dt.time):
        return value  # a TOML local time never has an offset
    text = top.string("publish_time", "09:00")
    try:
        value = dt.time.fromisoformat(text)
    except ValueError:
        raise top.fail("publish_time", f"{shown(text)} is not a time", "use HH:MM") from None
    if value.tzinfo is not None:
        raise top.fail("publish_time", f"{shown(text)} has a UTC offset", "write HH:MM and set timezone")
    return value


def _id_date(top: Table) -> str:
    """`id_date`: YYYY-MM-DD (quoted or a TOML date), the date part of every tag: URI (RFC 4151)."""
    value = top.get("id_date", "2000-01-01")
    if isinstance(value, dt.datetime):
        raise top.fail("id_date", f"{value.isoformat()} is a date and time", "use a date alone: YYYY-MM-DD")
    if isinstance(value, dt.date):
        return value.isoformat()
    text = top.string("id_date", "2000-01-01")
    try:
        if ID_DATE.match(text):
            dt.date.fromisoformat(text)
            return text
    except ValueError:
        pass
    raise top.fail("id_date", f"{shown(text)} is not a date", "use YYYY-MM-DD")


def _public_url(top: Table, key: str, env: str, default: str | None = None) -> str:
    """The environment variable `env`, else `key`: an absolute http(s) URL that paths are added to."""
    url, fail = top.overridable(key, env, default)
    return check_public_url(url, fail)


def check_public_url(url: str, fail: Fail) -> str:
    """`url` if it is an absolute http(s) URL that paths can be added to (base_url, app_url)."""
    check_url(url, fail)
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
        raise fail(f"{shown(url)} has {' and '.join(extra)}; pages and links add a path to it", "use https://host/path")
    if len(url) > BASE_URL_LIMIT:
        raise fail(
            f"is {len(url):,} characters long; List-Unsubscribe must carry it on one header line",
            f"use a URL of at most {BASE_URL_LIMIT} characters",
        )
    return url


def _url_override(env: str) -> str:
    """An http(s) URL from the environment variable `env`, checked; empty when it is not set."""
    value = environment_text(env)
    if value:
        check_url(value, lambda message, hint: ConfigError(env, message, hint))
    return value


def _list_id(top: Table, default: str) -> str:
    """`list_id`: RFC 2919's dot-atom, such as weekly.papers.example.com."""
    value = top.string("list_id", default)
    if not LIST_ID.match(value) or len(value) > LIST_ID_LIMIT:
        raise top.fail(
            "list_id", f"{value[:80]!r} is not a list id", f"use words joined by dots, at most {LIST_ID_LIMIT} in all"
        )
    return value


def derived_list_id(base_url: str) -> str:
    """The list id a publication without `list_id` gets: newsletter.<the archive's host>."""
    return f"newsletter.{urlsplit(base_url).hostname or 'localhost'}"


def _unsubscribe_mailto(top: Table) -> str:
    """`unsubscribe_mailto`: one plain address (it goes into List-Unsubscribe as a mailto: URI), or empty."""
    value = top.optional_string("unsubscribe_mailto")
    if not value:
        return ""
    fail: Fail = lambda message, hint: top.fail("unsubscribe_mailto", message, hint)  # noqa: E731
    if not re.fullmatch(r"[^\s<>@,;\\\"]+@[^\s<>@,;\\\"?&]+", value) or len(value) > 254:
        raise fail(f"{value[:80]!r} is not one plain address", "use leave@example.com")
    check_address(value, fail)
    return value


def _database_url(top: Table, root: Path) -> str:
    """NEWSLETTER_DATABASE_URL, else `database_url`, else the SQLite file in subscribers/; relative SQLite paths
    are relative to the publication. The store checks the rest when it opens it."""
    url, _ = top.overridable("database_url", "NEWSLETTER_DATABASE_URL", "sqlite:///subscribers/subscribers.db")
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite:///:memory:":
        url = prefix + str(root / url[len(prefix) :])
    return url


def _transport(top: Table) -> str:
    name, fail = top.overridable("transport", "NEWSLETTER_TRANSPORT", "file")
    if name not in TRANSPORTS:
        raise fail(f"{shown(name)} is not a transport", "use file, smtp or ses")
    return name


PERCENT = re.compile(r"\s*([0-9]{1,3}(?:\.[0-9]{1,6})?)\s*%\s*")


def _percent(top: Table, key: str, default: str) -> float:
    """A share above 0 and at most 100 %, written "5 %" (or 5, a number of percent); returned as a fraction."""
    value = top.get(key, default)
    found = PERCENT.fullmatch(value) if isinstance(value, str) else None
    if found is not None:
        number = float(found.group(1))
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        what = f"{shown(value)} is" if isinstance(value, str) else f"is {kind_of(value)},"
        raise top.fail(key, f"{what} not a percentage", f'write it like {key} = "{default}"')
    if not 0 < number <= 100:
        raise top.fail(key, f"{number:g} % is not above 0 and at most 100 %", f'use "{default}"')
    return number / 100


def _bounded_int(read: Table, key: str, env: str, default: int, low: int, high: int) -> int:
    """The environment variable `env`, else `key`: a whole number from `low` to `high` (the file's is checked
    either way)."""
    value = read.whole_number(key, default, low, high)
    return env_whole_number(env, value, low, high, f"is not a whole number from {low} to {high}", f"use {default}")


def _smtp(table: dict[str, Any]) -> SmtpSettings:
    read = Table(table.get("smtp", {}), "tool.newsletter.smtp", SMTP_KEYS)
    security = read.string("security", "starttls")
    if security not in {"starttls", "tls", "none"}:
        raise read.fail("security", f"{shown(security)} is not starttls, tls or none", "use starttls")
    host, fail = read.overridable("host", "NEWSLETTER_SMTP_HOST", "localhost")
    check_host(host, fail)
    port = read.whole_number("port", 587)
    if port > 65535:
        raise read.fail("port", f"{port!r} is not a port number", PORT_HINT)
    return SmtpSettings(
        host=host,
        port=env_whole_number(
            "NEWSLETTER_SMTP_PORT", port, 1, 65535, "is not a port number", "use a number from 1 to 65535"
        ),
        security=security,
        timeout=read.number("timeout", "seconds", 30, high=600) or SmtpSettings.timeout,
        connections=_bounded_int(read, "connections", "NEWSLETTER_SMTP_CONNECTIONS", 4, 1, 64),
    )


def _ses(table: dict[str, Any]) -> SesSettings:
    read = Table(table.get("ses", {}), "tool.newsletter.ses", SES_KEYS)
    return SesSettings(
        region=_aws_region(read),
        configuration_set=_configuration_set(read),
        endpoint_url=_url_override("NEWSLETTER_SES_ENDPOINT_URL"),
        queue_url=_url_override("NEWSLETTER_SES_QUEUE_URL") or _queue_url(read),
        topic_arns=_topic_arns(read),
        transient_bounces=read.whole_number("transient_bounces", 3),
        max_in_flight=_bounded_int(read, "max_in_flight", "NEWSLETTER_SES_MAX_IN_FLIGHT", 128, 1, 512),
    )


def _aws_region(read: Table) -> str:
    """AWS_REGION, else the `region` of [tool.newsletter.ses]: a region name such as ap-northeast-2."""
    region, fail = read.overridable("region", "AWS_REGION", "us-east-1")
    if not AWS_REGION.match(region):
        raise fail(f"{shown(region)} is not an AWS region", "use us-east-1, ap-northeast-2, …")
    return region


def _configuration_set(read: Table) -> str:
    """`configuration_set`: an SES configuration set name, or empty."""
    name = read.optional_string("configuration_set")
    if name and not CONFIGURATION_SET.match(name):
        raise read.fail(
            "configuration_set", f"{shown(name)} is not a configuration set name", "use letters, digits, _ and -"
        )
    return name


def _queue_url(read: Table) -> str:
    """`queue_url` of [tool.newsletter.ses]: the SQS queue's https URL, or empty."""
    url = read.optional_string("queue_url")
    if url:
        check_url(url, lambda message, hint: read.fail("queue_url", message, hint))
    return url


def _topic_arns(read: Table) -> tuple[str, ...]:
    """`topic_arn`: one SNS topic ARN or a list of them; empty (or absent) means none."""
    value = read.get("topic_arn", "")
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        what = f"{shown(value)} is" if isinstance(value, list) else f"is {kind_of(value)},"
        raise read.fail("topic_arn", f"{what} not an ARN or a list of ARNs", 'use "arn:aws:sns:…" or ["…", "…"]')
    arns = tuple(v.strip() for v in values if v.strip())
    for arn in arns:
        if not SNS_TOPIC_ARN.match(arn):
            raise read.fail(
                "topic_arn",
                f"{shown(arn)} is not an SNS topic ARN",
                "use arn:aws:sns:<region>:<12-digit account>:<topic name>, as the SNS console shows it",
            )
    return arns
