"""The pieces every view answers with: a page of the theme in the reader's language, an error page, the
subscriber a link's token names, and the form actions (this page's own path, never a URL from a request)."""

from __future__ import annotations

from typing import Any

from flask import Response, request

from ..store import Subscriber, confirmation_is_current, get_subscriber
from ..tokens import MAX_TOKEN_LENGTH, verify_confirm_token, verify_unsubscribe_token
from .context import context

CONFIRM_MAX_AGE = 7 * 24 * 3600  # the confirmation link works for 7 days
TITLES = {  # a page's title key in strings.toml (others take the publication's title)
    "unsubscribe.html.j2": "unsubscribe_title",
    "subscribe.html.j2": "subscribe_title",
    "confirm.html.j2": "confirm_title",
    "preferences.html.j2": "preferences_title",
}


def strings(lang: str | None) -> Any:
    """The wording of `lang` (the default language's for None)."""
    settings = context().settings
    return context().templates.strings_for(lang or settings.language, settings.language)


def page(template: str, lang: str | None, status: int = 200, **values: Any) -> Response:
    """The theme's web/`template` in `lang` (the default language if it is none of the publication's)."""
    shared = context()
    settings = shared.settings
    lang = lang if lang in settings.all_languages else settings.language
    wording = settings.for_language(lang)
    t = strings(lang)
    values.setdefault("title", t.get(TITLES.get(template, ""), wording.title).format(title=wording.title))
    depth = request.path.count("/") - 1
    body = shared.templates.render(
        f"web/{template}",
        t=t,
        lang=lang,
        site_title=wording.title,
        site_description=wording.description,
        root=shared.archive_root or "../" * depth or "./",
        **values,
    )
    response = Response(body, status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


def error(status: int, lang: str | None, message_key: str) -> Response:
    """The error page with the wording of `message_key`."""
    t = strings(lang)
    return page(
        "error.html.j2", lang, status, title=t.get("error_title", "Error"), message=t.get(message_key, message_key)
    )


def best_language() -> str:
    """The page language: `?lang=` if it is the publication's, else the browser's best match, else the default."""
    settings = context().settings
    wanted = request.args.get("lang")
    if wanted in settings.all_languages:
        return wanted
    return request.accept_languages.best_match(settings.all_languages) or settings.language


def action(path: str) -> str:
    """The form action: this page's own path and query, relative (never a URL from the request)."""
    token = request.args.get("token", "")
    return f"{path}?token={token}" if token else path


def languages() -> list[tuple[str, str]]:
    """(code, name in its own language) of each language of the publication."""
    return [(code, strings(code).get("language_name", code)) for code in context().settings.all_languages]


def query_token() -> str:
    """The request's `token` (from the query only; a token in a form is ignored)."""
    return request.args.get("token", "")


def unsubscribe_link_subscriber() -> Subscriber | Response:
    """The subscriber the request's unsubscribe token names (also the preferences' and resubscribe's), or the
    error page to answer instead."""
    shared = context()
    token = query_token()
    subscriber_id = None
    if token and len(token) <= MAX_TOKEN_LENGTH:
        subscriber_id = verify_unsubscribe_token(shared.secret, shared.settings.list_id, token)
    subscriber = get_subscriber(shared.store, subscriber_id) if subscriber_id is not None else None
    return subscriber or error(400, best_language(), "error_bad_link")


def confirm_link_subscriber() -> tuple[Subscriber, int] | Response:
    """(the subscriber the request's confirmation token names, when it was issued), or the error page: the link
    must be no older than 7 days, nor than their latest unsubscribe (an old link never undoes an unsubscribe)."""
    shared = context()
    token = query_token()
    confirmation = None
    if token and len(token) <= MAX_TOKEN_LENGTH:
        confirmation = verify_confirm_token(
            shared.secret, shared.settings.list_id, token, CONFIRM_MAX_AGE, now=shared.clock()
        )
    subscriber = get_subscriber(shared.store, confirmation.subscriber_id) if confirmation else None
    if confirmation is None or subscriber is None:
        return error(400, best_language(), "error_bad_link")
    if not confirmation_is_current(subscriber, confirmation.issued_at):
        return error(400, subscriber.lang, "error_old_confirmation")
    return subscriber, confirmation.issued_at
