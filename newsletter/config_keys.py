"""The keys each table of the settings may hold, and the refusal of any other: the nearest known key as the hint,
the table a key belongs in, or what to do instead (a secret goes in the environment).

Reading the values is config.py's job; this module only says which keys exist.
"""

from __future__ import annotations

from typing import Any

from .config_values import Table, key_text, kind_of, nearest
from .errors import ConfigError

# The keys of each table. A key not listed is refused, with the nearest listed one as the hint.
TOP_KEYS = (
    "title",
    "description",
    "base_url",
    "app_url",
    "language",
    "languages",
    "author",
    "from",
    "reply_to",
    "postal_address",
    "feed_size",
    "page_size",
    "timezone",
    "publish_time",
    "id_date",
    "database_url",
    "transport",
    "list_id",
    "unsubscribe_mailto",
    "rate",
    "ambiguous_retries",
    "max_late",
    "logo",
    "logo_alt",
    "email_layout",
    "search",
    "welcome_mail",
    "max_bounce_rate",
    "max_complaint_rate",
    "guard_minimum",
)
LANGUAGE_KEYS = ("title", "description", "logo_alt")  # of [tool.newsletter.<code>], for each code in `languages`
SMTP_KEYS = ("host", "port", "security", "timeout", "connections")
SES_KEYS = ("region", "configuration_set", "queue_url", "topic_arn", "transient_bounces", "max_in_flight")
SUBTABLES = {"smtp": SMTP_KEYS, "ses": SES_KEYS}
# Keys an editor may well write that belong elsewhere: the word that says where.
SPECIAL_KEYS = {
    "tool.newsletter": {
        "secret_key": "never put a secret in the file: set NEWSLETTER_SECRET_KEY in the environment",
        "secret": "never put a secret in the file: set NEWSLETTER_SECRET_KEY in the environment",
        "unsubscribe_base_url": "did you mean app_url?",
    },
    "tool.newsletter.smtp": {
        "user": "never put a secret in the file: set NEWSLETTER_SMTP_USER in the environment",
        "username": "never put a secret in the file: set NEWSLETTER_SMTP_USER in the environment",
        "password": "never put a secret in the file: set NEWSLETTER_SMTP_PASSWORD in the environment",
    },
    "tool.newsletter.ses": {
        "endpoint_url": "set NEWSLETTER_SES_ENDPOINT_URL instead: it is only for tests and local stand-ins",
        "aws_access_key_id": "never put a secret in the file: boto3 finds credentials in the environment or ~/.aws",
        "aws_secret_access_key": "never put a secret in the file: boto3 finds credentials in the environment or ~/.aws",
    },
}


def refuse_unknown_values(top: Table, table: dict[str, Any]) -> None:
    """Refuse a key of [tool.newsletter] that is no setting (tables are looked at once the languages are known)."""
    listed = table.get("languages")
    codes = set(listed) if isinstance(listed, list) and all(isinstance(x, str) for x in listed) else set()
    elsewhere = {key: f"tool.newsletter.{name}" for name, keys in SUBTABLES.items() for key in keys}
    for key, value in table.items():
        if key not in top.keys and key not in codes and not isinstance(value, dict):
            raise top.unknown(key, elsewhere, SPECIAL_KEYS["tool.newsletter"])


def refuse_unknown_tables(top: Table, table: dict[str, Any], language: str, languages: tuple[str, ...]) -> None:
    """Refuse a table of [tool.newsletter] that is neither smtp, ses nor a language of `languages`, and any
    unknown key in those."""
    back = {key: "tool.newsletter" for key in TOP_KEYS}
    for key, value in table.items():
        if key in TOP_KEYS:
            continue  # its value is checked with the others: a table there is the wrong type, not a table name
        keys = SUBTABLES.get(key) or (LANGUAGE_KEYS if key in languages else None)
        if keys is not None:
            if not isinstance(value, dict):
                raise top.fail(key, f"is {kind_of(value)}, not a table", f"write its settings under [{top.name}.{key}]")
            sub = Table(value, f"{top.name}.{key}", keys)
            for sub_key in value:
                if sub_key not in keys:
                    raise sub.unknown(sub_key, back, SPECIAL_KEYS.get(sub.name, {}))
        elif isinstance(value, dict):
            raise _unlisted_table(top, key, language, languages)


def _unlisted_table(top: Table, key: str, language: str, languages: tuple[str, ...]) -> ConfigError:
    """The refusal of the table [tool.newsletter.<key>]: the default language's, another language's, or a typo."""
    where = f"{top.where[:-1]}.{key_text(key)}]"
    if key == language:
        return ConfigError(
            where,
            f"is a table for {key}, the default language, whose title and description are [{top.name}]'s",
            "move them there and remove the table",
        )
    import langcodes

    near = next((code for code in languages if code.lower() == key.lower().replace("_", "-")), None)
    if near is not None:
        return ConfigError(where, "names no language in languages", f"did you mean [{top.name}.{near}]?")
    if len(key) <= 20 and langcodes.tag_is_valid(key) and key not in SUBTABLES:
        guess = nearest(key, SUBTABLES)
        also = f", or did you mean [{top.name}.{guess}]?" if guess else ""
        return ConfigError(
            where, "is a table for a language that is not in languages", f'add "{key}" to languages{also}'
        )
    return top.unknown(key, {}, {})
