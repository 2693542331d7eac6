"""The two mails a web sign-up gets, built here and sent by the worker (confirmations.py): the double opt-in
confirmation, and once confirmed, the welcome mail.

The welcome mail links to the newest issue that is out, found in issues/ (the publication `serve` runs in)
by the build's rule: not a draft, its publication instant passed. issues/ rather than the built site/, because
the archive may live on another host, and site/ may lag a build behind. It is an issue's kind of message (the
message layer's List-Id, List-Archive, Precedence, one-click List-Unsubscribe), text only like the
confirmation.
"""

from __future__ import annotations

import datetime as dt
import logging
from email import policy
from email.message import EmailMessage
from pathlib import Path

from .config import Settings
from .errors import IssueError
from .issues import Edition, find_issue_files, group_editions, parse_issue, publication_instant, split_file_name
from .messages import MessageTemplate, Recipient
from .render.email import RenderedEmail, preferences_url, unsubscribe_url
from .render.templates import Templates
from .render.urls import lang_prefix
from .tokens import confirm_token, unsubscribe_token
from .transports import OutgoingMessage

CONFIRMATIONS_SLUG = "confirmations"  # outbox/<slug>/ of the file transport, and the SES tag
WELCOME_SLUG = "welcome"

log = logging.getLogger("newsletter.confirmations")


def confirmation_message(
    settings: Settings, templates: Templates, secret: bytes, *, subscriber_id: int, email: str, lang: str, issued: int
) -> OutgoingMessage:
    """The double opt-in mail to `email`, its link stamped `issued` (Unix seconds), in `lang`."""
    t = templates.strings_for(lang, settings.language)
    wording = settings.for_language(lang)
    token = confirm_token(secret, settings.list_id, subscriber_id, issued)
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = settings.from_address
    message["To"] = email
    message["Subject"] = t.get("confirm_mail_subject", "{title}").format(title=wording.title)
    if settings.reply_to:
        message["Reply-To"] = settings.reply_to
    message["Auto-Submitted"] = "auto-replied"  # RFC 3834: a reply to the sign-up, not a newsletter
    body = templates.render(
        "web/confirm_email.txt.j2",
        t=t,
        site_title=wording.title,
        confirm_url=settings.app(f"confirm?token={token}"),  # the web app's host, not the archive's
        postal_address=settings.postal_address,
    )
    message.set_content(body, cte="base64")
    return OutgoingMessage(settings.from_address.addr_spec, email, (message.as_bytes(),), CONFIRMATIONS_SLUG, lang)


def welcome_message(
    settings: Settings,
    templates: Templates,
    secret: bytes,
    *,
    subscriber_id: int,
    email: str,
    name: str,
    lang: str,
    latest: Edition | None,
) -> tuple[OutgoingMessage, str]:
    """(the welcome mail to `email` in `lang`, its Message-ID), linking to `latest` (None: no issue is out yet).

    Raises MessageError for an address or name that cannot go into a message."""
    t = templates.strings_for(lang, settings.language)
    wording = settings.for_language(lang)
    # the listing of the language the latest issue is in: a language with no edition out yet has no listing, and
    # the default language's (the home page) is always made
    archive_url = settings.url(lang_prefix(latest.lang if latest else settings.language, settings))
    text = templates.render(
        "web/welcome_email.txt.j2",
        t=t,
        lang=lang,
        site_title=wording.title,
        latest_title=latest.title if latest else "",
        latest_url=settings.url(latest.page_path) if latest else "",
        archive_url=archive_url,
        preferences_url=preferences_url(settings),
        unsubscribe_url=unsubscribe_url(settings),
        postal_address=settings.postal_address,
    )
    subject = t.get("welcome_mail_subject", "{title}").format(title=wording.title)
    rendered = RenderedEmail(lang=lang, subject=subject, preheader="", html="", text=text, archive_url=archive_url)
    token = unsubscribe_token(secret, settings.list_id, subscriber_id)
    raw, message_id = MessageTemplate(rendered, settings, slug=WELCOME_SLUG).personalise(Recipient(email, name, token))
    return OutgoingMessage(settings.from_address.addr_spec, email, (raw,), WELCOME_SLUG, lang), message_id


def latest_edition(settings: Settings, lang: str, now: dt.datetime) -> Edition | None:
    """The newest issue out at `now` (not a draft, its publication instant passed), in `lang` if it has that
    edition (and it is no draft), else in the default language. Files that do not parse are passed over."""
    files: dict[str, dict[str, Path]] = {}
    for path in find_issue_files(settings):
        try:
            slug, edition_lang = split_file_name(path.name, settings)
        except ValueError:
            continue
        files.setdefault(slug, {})[edition_lang] = path
    for slug in sorted(files, reverse=True):  # YYYY-MM-DD-name: the newest first, as group_by_issue orders them
        langs = files[slug]
        wanted = [code for code in dict.fromkeys([settings.language, lang]) if code in langs]
        try:
            [issue] = group_editions([parse_issue(langs[code], settings) for code in wanted], settings)
        except IssueError as err:
            log.warning("welcome mail: %s is passed over: %s", slug, err)
            continue
        if issue.default.draft or publication_instant(issue, settings) > now:
            continue
        edition = issue.edition(lang)
        return edition if edition is not None and not edition.draft else issue.default
    return None
