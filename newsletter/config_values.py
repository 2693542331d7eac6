"""Read one value of a settings table, or the environment variable that overrides it, and check it: text, whole
numbers, numbers, URLs, addresses, language tags, spans of time, unknown keys.

Each refusal is a ConfigError naming the file, the table and the key (or the variable). Which settings exist is
config.py's business, not this module's; nothing here reads files or touches the network.
"""

from __future__ import annotations

import datetime as dt
import difflib
import ipaddress
import math
import os
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from .errors import ConfigError

if TYPE_CHECKING:
    from email.headerregistry import Address

CONFIG_FILE = "pyproject.toml"
SHOWN_LIMIT = 80  # characters of a value a message quotes
LANGUAGE_PATTERN = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")  # the BCP 47 tags file names and paths can carry
LANGUAGE_LIMIT = 20  # characters of a code the store keeps per subscriber
# Header parts come from settings: these bounds keep every header line within RFC 5322's 998 octets.
HEADER_NAME_LIMIT = 200  # the display name of `from` and `reply_to`
ADDRESS_LIMIT = 254  # RFC 5321 §4.5.3.1: a path of 256 octets, brackets included
MULTILINE_KEYS = frozenset({"description"})  # the settings that may span lines
MULTILINE_CONTROLS = "\r\n\t"  # the control characters those may hold
LINE_BREAKS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
# RFC 3986 §2: the characters a URL may hold as they are (anything else is percent-encoded).
URL_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")
HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")  # RFC 1123 §2.1, and `_` as container names have
# Country codes often written for a language: their language, shown only when the code is no language at all.
COUNTRY_NOT_LANGUAGE = {
    "jp": "ja",
    "cn": "zh",
    "us": "en",
    "gb": "en",
    "gr": "el",
    "dk": "da",
    "cz": "cs",
    "vn": "vi",
    "ua": "uk",
    "il": "he",
    "ir": "fa",
    "at": "de",
    "hk": "zh-HK",
    "mx": "es",
    "cl": "es",
    "rs": "sr",
    "by": "be",
    "kz": "kk",
    "al": "sq",
    "ge": "ka",
    "np": "ne",
    "pk": "ur",
    "bd": "bn",
    "ph": "fil",
    "ke": "sw",
    "eg": "ar",
}

Fail = Callable[[str, str], ConfigError]  # (what is wrong, what to do) → the error naming the value's origin


def is_control(ch: str) -> bool:
    """C0 and C1 controls, DEL and the Unicode line and paragraph separators."""
    return ch <= "\x1f" or "\x7f" <= ch <= "\x9f" or ch in "\u2028\u2029"


def shown(value: object) -> str:
    """`value` as a message quotes it: repr(), cut to SHOWN_LIMIT characters, so any input stays one short line."""
    text = repr(value[: SHOWN_LIMIT + 1] if isinstance(value, str) else value)
    return text if len(text) <= SHOWN_LIMIT + 2 else text[: SHOWN_LIMIT + 1] + "…"


def kind_of(value: object) -> str:
    """What a TOML value is, in an editor's words."""
    kinds: list[tuple[type | tuple[type, ...], str]] = [
        (bool, "true or false"),
        (int, "a whole number"),
        (float, "a number"),
        (str, "text"),
        (dict, "a table"),
        (list, "a list"),
        (dt.datetime, "a date and time"),
        (dt.date, "a date"),
        (dt.time, "a time"),
    ]
    return next((name for kind, name in kinds if isinstance(value, kind)), type(value).__name__)


def key_text(key: str) -> str:
    """A key as TOML writes it: bare when it can be, else quoted (and cut)."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]{1,80}", key) else shown(key)


def nearest(key: str, candidates: Iterable[str]) -> str | None:
    """The candidate `key` most likely misspells, if one is close: case, '-' for '_', a letter or two."""
    options = list(candidates)
    folded = key.strip().lower().replace("-", "_").replace(" ", "_")[:100]
    if folded in options:
        return folded
    squeezed = {option.replace("_", ""): option for option in options}
    if folded.replace("_", "") in squeezed:
        return squeezed[folded.replace("_", "")]
    matches = difflib.get_close_matches(folded, options, n=1, cutoff=0.6)
    return matches[0] if matches else None


class Table:
    """One table of the settings (`[tool.newsletter]`, `[tool.newsletter.smtp]`, …): typed values out of it, each
    refusal naming the file, the table and the key. `keys` are the keys it may hold."""

    def __init__(self, values: dict[str, Any], name: str, keys: Iterable[str]) -> None:
        self.values = values
        self.name = name
        self.where = f"{CONFIG_FILE} [{name}]"
        self.keys = frozenset(keys)

    def fail(self, key: str, message: str, hint: str) -> ConfigError:
        return ConfigError(f"{self.where} {key_text(key)}", message, hint)

    def get(self, key: str, default: Any = None) -> Any:
        assert key in self.keys, f"{key} is read but not among the keys of [{self.name}]"
        return self.values.get(key, default)

    def unknown(self, key: str, elsewhere: dict[str, str], special: dict[str, str]) -> ConfigError:
        """The refusal of `key`, which is not among the keys: the nearest known key as the hint, or the table of
        `elsewhere` (key → table name) that has it, or the word of `special` for it."""
        if key in special:
            return self.fail(key, "unknown setting", special[key])
        guess = nearest(key, self.keys)
        if guess is None and (other := nearest(key, elsewhere)) is not None:
            return self.fail(key, "unknown setting", f"did you mean [{elsewhere[other]}] {other}?")
        if guess is not None:
            return self.fail(key, "unknown setting", f"did you mean {guess}?")
        keys = sorted(self.keys)
        if len(keys) > 8:
            return self.fail(key, "unknown setting", "remove it; the README's settings table lists every key")
        return self.fail(key, "unknown setting", f"use {', '.join(keys[:-1])} or {keys[-1]}")

    def string(self, key: str, default: str | None = None) -> str:
        """Text on one line (`description` may span lines), not empty, without control characters; stripped."""
        value = self.get(key, default)
        if value is None:
            raise self.fail(key, "is missing", f'add {key} = "…" to [{self.name}]')
        if not isinstance(value, str):
            raise self.fail(key, f"is {kind_of(value)}, not text", f'write it in quotes: {key} = "…"')
        if not value.strip():
            raise self.fail(key, "is empty", f'write {key} = "…" or remove the line for the default')
        allowed = MULTILINE_CONTROLS if key in MULTILINE_KEYS else ""
        control = next((ch for ch in value if is_control(ch) and ch not in allowed), None)
        if control is not None and control in LINE_BREAKS:
            raise self.fail(key, "contains a line break", "write it on one line")
        if control is not None:
            raise self.fail(key, f"contains the control character U+{ord(control):04X}", "remove it")
        return value.strip()

    def optional_string(self, key: str) -> str:
        """A text setting that may be absent or empty (then ""), checked like string() otherwise."""
        return "" if self.get(key, "") == "" else self.string(key)

    def overridable(self, key: str, env: str, default: str | None = None) -> tuple[str, Fail]:
        """A text setting that the environment variable `env` overrides when set: (its value, how to report a
        problem with it, naming the variable or the key, wherever the value came from)."""
        value = environment_text(env)
        if not value:
            return self.string(key, default), lambda message, hint: self.fail(key, message, hint)
        return value, lambda message, hint: ConfigError(env, message, hint)

    def whole_number(self, key: str, default: int, low: int = 1, high: int | None = None) -> int:
        """A whole number from `low` to `high` (no bound: "positive" when `low` is 1)."""
        value = self.get(key, default)
        what = f"from {low} to {high}" if high is not None else "positive" if low == 1 else f"of at least {low}"
        problem = f"a whole number {what}" if high is not None else f"a {what} whole number"
        if isinstance(value, int) and not isinstance(value, bool):
            if value < low or (high is not None and value > high):
                raise self.fail(key, f"{value} is not {problem}", f"use {default}")
            return value
        if isinstance(value, float):
            raise self.fail(key, f"{value!r} is not {problem}", f"use {default}")

        def fits(text: str) -> bool:
            return re.fullmatch(r"[0-9]{1,9}", text) is not None and low <= int(text) <= (
                10**9 if high is None else high
            )

        raise self._wrong_kind(key, value, problem, default, fits)

    def number(self, key: str, what: str, example: float, high: float = math.inf) -> float | None:
        """A positive finite number (of `what`) up to `high`, or None when the key is absent."""
        value = self.get(key)
        if value is None:
            return None
        problem = f"a positive number of {what}"
        if not isinstance(value, int | float) or isinstance(value, bool):

            def fits(text: str) -> bool:
                return re.fullmatch(r"[0-9]{1,9}(\.[0-9]{1,9})?", text) is not None and 0 < float(text) <= high

            raise self._wrong_kind(key, value, problem, example, fits)
        if not math.isfinite(value) or value <= 0:
            raise self.fail(key, f"{value!r} is not {problem}", f"use {example:g}")
        if value > high:
            raise self.fail(key, f"{value!r} is more than {high:g} {what}", f"use at most {high:g}")
        return float(value)

    def _wrong_kind(
        self, key: str, value: object, problem: str, example: float, fits: Callable[[str], bool]
    ) -> ConfigError:
        """The refusal of a value that is not a number at all: text that `fits` is told to lose its quotes."""
        if isinstance(value, str):
            text = value.strip()
            hint = f"write it without quotes: {key} = {text}" if fits(text) else f"use {example:g}"
            return self.fail(key, f"{shown(value)} is text, not {problem}", hint)
        return self.fail(key, f"is {kind_of(value)}, not {problem}", f"use {example:g}")

    def address(self, key: str, *, required: bool) -> Address | None:
        """One address, `Name <a@b.org>` or `a@b.org`, whose address part email-validator accepts in ASCII."""
        if self.get(key) is None and not required:
            return None
        from email.headerregistry import AddressHeader, HeaderRegistry  # only here: a tenth of the start-up

        text = self.string(key)
        try:
            header = HeaderRegistry()("To", text)
            assert isinstance(header, AddressHeader)
            (address,) = header.addresses
        except (ValueError, IndexError, TypeError) as err:
            raise self.fail(key, f"{shown(text)} is not one email address", "use 'Name <a@b.org>'") from err
        if not address.username or not address.domain or header.defects:
            raise self.fail(key, f"{shown(text)} is not one email address", "use 'Name <a@b.org>'")
        if len(address.display_name) > HEADER_NAME_LIMIT or len(address.addr_spec) > ADDRESS_LIMIT:
            raise self.fail(
                key,
                f"is {len(text):,} characters long; a mail header takes a name of at most {HEADER_NAME_LIMIT} "
                f"and an address of at most {ADDRESS_LIMIT}",
                "shorten it",
            )
        check_address(address.addr_spec, lambda message, hint: self.fail(key, message, hint))
        return address


def check_address(addr_spec: str, fail: Fail) -> None:
    """Refuse an address that email-validator refuses, or one that is not ASCII (headers carry it as it is)."""
    from email_validator import EmailNotValidError, validate_email

    try:
        checked = validate_email(addr_spec, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as err:
        raise fail(f"{shown(addr_spec)} is not an email address: {err}", "use 'Name <a@b.org>'") from None
    if not addr_spec.isascii():
        raise fail(f"{shown(addr_spec)} has a domain in Unicode", f"write it in ASCII: {checked.ascii_email}")


LOGO_PATH = re.compile(r"static/(?:[A-Za-z0-9_-][A-Za-z0-9._-]*/)*[A-Za-z0-9_-][A-Za-z0-9._-]*")
LOGO_TYPES = (".png", ".jpg", ".jpeg", ".gif")  # what Gmail, Apple Mail and Outlook all show (not SVG, not WebP)


def check_logo(value: str, fail: Fail) -> str:
    """`value` if it is an http(s) URL of an image or a path under the site's static/ folder of a PNG, JPEG or
    GIF file (`static/logo.png`, a file of templates/static/)."""
    hint = 'use "static/logo.png" (a file of templates/static/) or "https://…/logo.png"'
    if value.startswith(("http://", "https://")):
        check_url(value, fail)
        path = urlsplit(value).path.lower()
    elif LOGO_PATH.fullmatch(value):
        path = value.lower()
    else:
        raise fail(f"{shown(value)} is neither an http(s) URL nor a path under static/", hint)
    if path.endswith((".svg", ".svgz", ".webp")):
        raise fail(f"{shown(value)} is an image Gmail or Outlook does not show", "use a PNG, JPEG or GIF")
    if not value.startswith("http") and not path.endswith(LOGO_TYPES):
        raise fail(f"{shown(value)} is not a PNG, JPEG or GIF file", hint)
    return value


def hide_password(text: str) -> str:
    """`text` with the password of any `scheme://user:password@` in it replaced by ***."""
    return re.sub(r"(://[^/:@\s]*:)[^/@\s]*@", r"\1***@", text)


def check_url(url: str, fail: Fail) -> None:
    """Refuse what is not an absolute http(s) URL of ASCII characters, including what urlsplit cannot parse."""
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port  # both check what they parse
    except ValueError as err:  # an unclosed [IPv6 bracket, a port out of range
        raise fail(f"{shown(url)} is not a URL: {err}", "use https://host/path") from None
    if parts.scheme not in {"http", "https"} or not host or any(ch.isspace() for ch in url):
        raise fail(f"{shown(url)} is not an absolute URL", "use https://host/path")
    if not url.isascii():
        hint = f"write it as {ascii_url(url)}" if len(url) <= SHOWN_LIMIT else "percent-encode it, host in punycode"
        raise fail(f"{shown(url)} is not ASCII, which mail headers need", hint)
    if not URL_CHARACTERS.fullmatch(url):
        bad = next(ch for ch in url if not URL_CHARACTERS.fullmatch(ch))
        raise fail(f"{shown(url)} holds {shown(bad)}, which a URL cannot", f"percent-encode it as %{ord(bad):02X}")


def ascii_url(url: str) -> str:
    """`url` with its host in IDNA (punycode) and the rest percent-encoded: how a header can carry it."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_host = quote(host)
    netloc = ascii_host + (f":{parts.port}" if parts.port else "")
    safe = "/:@!$&'()*+,;=-._~%"
    return parts._replace(
        netloc=netloc, path=quote(parts.path, safe=safe), query=quote(parts.query, safe=safe)
    ).geturl()


def check_host(host: str, fail: Fail) -> None:
    """Refuse what is not a host name (RFC 1123 labels) or an IP address."""
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    name, _, port = host.rpartition(":")
    if name and port.isdigit() and ":" not in name:
        raise fail(f"{shown(host)} holds a port", f"write the host alone and set port = {port[:5]}")
    labels = host.removesuffix(".").split(".")
    if len(host) > 253 or not all(HOST_LABEL.match(label) for label in labels):
        hint = "use smtp.example.com or an IP address"
        if not host.isascii() and not any(ch.isspace() for ch in host):
            try:
                hint = f"write it in ASCII: {host.encode('idna').decode('ascii')}"
            except UnicodeError:
                pass
        raise fail(f"{shown(host)} is not a host name", hint)


def check_language(code: str, fail: Fail) -> str:
    """`code` if it is a BCP 47 tag (RFC 5646, langcodes' registry data) in canonical form that file names can
    carry; the canonical form is the hint when it is another (ko_KR → ko-KR, EN → en, iw → he)."""
    import langcodes  # only here: a twelfth of the start-up

    if len(code) > 100 or not langcodes.tag_is_valid(code):
        guess = COUNTRY_NOT_LANGUAGE.get(code.lower())
        hint = f"use {guess}: {code.lower()} is a country code" if guess else "use ko, en, …"
        raise fail(f"{shown(code)} is not a BCP 47 language code", hint)
    canonical = langcodes.standardize_tag(code)
    if canonical != code:
        raise fail(f"{shown(code)} is not in BCP 47's canonical form", f"use {canonical}")
    if not LANGUAGE_PATTERN.match(code):
        raise fail(
            f"{shown(code)} has a private-use or extension part, which file names and paths do not carry",
            "use a language with an optional script and region, such as ko, en-US or zh-Hant",
        )
    if len(code) > LANGUAGE_LIMIT:
        raise fail(f"{shown(code)} is longer than {LANGUAGE_LIMIT} characters", "leave out its variants")
    return code


SPAN = re.compile(r"(?:([0-9]{1,6})d)?(?:([0-9]{1,6})h)?(?:([0-9]{1,6})m)?(?:([0-9]{1,6})s)?")


def span(table: Table, key: str, default: str) -> dt.timedelta:
    """`key`: a positive span of time such as "90m", "24h", "2d" or "1h30m"."""
    value = table.get(key, default)
    if isinstance(value, int) and not isinstance(value, bool):
        raise table.fail(key, f"{value} has no unit", f'write "{value}h", or use s, m or d')
    text = table.string(key, default)
    match = SPAN.fullmatch(text.replace(" ", ""))
    if not text or not match or not any(match.groups()):
        raise table.fail(
            key, f"{shown(text)} is not a span of time", f'use a number and s, m, h or d, such as "{default}"'
        )
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    result = dt.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if not result:
        raise table.fail(key, f"{shown(text)} is no time at all", f'use a positive span, such as "{default}"')
    return result


def env_whole_number(env: str, value: int, low: int, high: int, problem: str, hint: str) -> int:
    """The environment variable `env` as a whole number from `low` to `high`, else `value` when it is unset."""
    text = os.environ.get(env, "").strip()
    if not text:
        return value
    if not (text.isascii() and text.isdigit() and len(text) <= 6 and low <= int(text) <= high):
        raise ConfigError(env, f"{shown(text)} {problem}", hint)
    return int(text)


def environment_text(env: str) -> str:
    """The environment variable `env` stripped, "" when unset or empty; only spaces or a line break or control
    character in it is refused, naming the variable (a value set by mistake never passes for "not set")."""
    value = os.environ.get(env, "")
    if value and (not value.strip() or any(not ch.isprintable() for ch in value)):
        raise ConfigError(
            env,
            f"{hide_password(shown(value))} is empty or holds a line break or control character",
            "set it on one line",
        )
    return value.strip()
