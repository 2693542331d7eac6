"""`newsletter init`'s answers, each checked as it is given, by the same checks the settings get (config.py).

A refusal names the flag that gives the answer (`--base-url`), so a script knows what to fix, and an editor at
the prompt is asked again.
"""

from __future__ import annotations

from email.headerregistry import Address

from .config import check_public_url, timezone_of
from .config_values import Table, check_language
from .errors import ConfigError

# answer → (its flag, its key in [tool.newsletter])
ANSWERS = {
    "title": ("--title", "title"),
    "description": ("--description", "description"),
    "base_url": ("--base-url", "base_url"),
    "app_url": ("--app-url", "app_url"),
    "from_address": ("--from", "from"),
    "postal_address": ("--postal-address", "postal_address"),
    "timezone": ("--timezone", "timezone"),
    "author": ("--author", "author"),
}


class _Answer(Table):
    """One answer as a one-key settings table whose refusals name its flag."""

    def __init__(self, name: str, value: str) -> None:
        self.flag, key = ANSWERS[name]
        super().__init__({key: value}, "tool.newsletter", (key,))
        self.key = key

    def fail(self, key: str, message: str, hint: str) -> ConfigError:
        return ConfigError(self.flag, message, hint)


def check_answer(name: str, value: str) -> str:
    """`value` as the settings will hold it (stripped); ConfigError naming the flag when they would refuse it."""
    answer = _Answer(name, value)
    if name in ("base_url", "app_url"):
        return check_public_url(answer.string(answer.key), lambda message, hint: answer.fail(name, message, hint))
    if name == "from_address":
        answer.address(answer.key, required=True)
        return answer.string(answer.key)
    if name == "timezone":
        timezone_of(answer)
        return answer.string(answer.key)
    return answer.string(answer.key)


def check_languages(codes: tuple[str, ...]) -> tuple[str, ...]:
    """`codes` if each is a canonical BCP 47 tag (`ko_KR` gets the hint `use ko-KR`); ConfigError naming --language."""
    if not codes:
        raise ConfigError("--language", "names no language", "give a code such as en or ko")
    for code in codes:
        check_language(code, lambda message, hint: ConfigError("--language", message, hint))
    return codes


def check_app_url_for_ci(base_url: str, app_url: str) -> None:
    """With --ci github the archive goes to GitHub Pages, which cannot answer /unsubscribe: `newsletter serve`
    must run on another host, and every mail must link there."""
    if not app_url or app_url.rstrip("/") == base_url.rstrip("/"):
        raise ConfigError(
            "--app-url",
            "is needed with --ci github, and must differ from --base-url: GitHub Pages serves the archive but "
            "cannot answer /unsubscribe",
            "pass --app-url with the address where `newsletter serve` runs, such as https://app.example.com",
        )


def default_from_address(title: str, base_url: str) -> str:
    """`Title <newsletter@host>` with the archive's host, or example.com when it has no real domain name; the name
    is quoted when it holds a character an address header gives a meaning to (`"Dr. Who Weekly" <…>`)."""
    from urllib.parse import urlsplit

    host = urlsplit(base_url).hostname or ""
    domain = host if "." in host and not host.replace(".", "").isdigit() else "example.com"
    return str(Address(display_name=title, addr_spec=f"newsletter@{domain}"))
