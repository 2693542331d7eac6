"""The subscriber's routes: unsubscribe, resubscribe, preferences, subscribe and confirm, and the SNS endpoint.

Only a POST changes anything: link scanners follow every link with GET and HEAD, so each GET shows a page
whose button POSTs. README.md's route tables list these routes; tests/test_web.py keeps them in step.
"""

from __future__ import annotations

from flask import Blueprint, Response, request
from werkzeug.exceptions import NotFound

from ..store import (
    Subscriber,
    SubscriberStatus,
    confirm_subscription,
    get_subscriber,
    record_unsubscribe,
    request_subscription,
    resubscribe,
    set_language,
    set_tracking_consent,
)
from ..tokens import MAX_TOKEN_LENGTH, TEST_SUBSCRIBER_ID, verify_unsubscribe_token
from .context import context
from .pages import (
    action,
    best_language,
    confirm_link_subscriber,
    error,
    languages,
    page,
    query_token,
    strings,
    unsubscribe_link_subscriber,
)

views = Blueprint("newsletter", __name__)


def _unsubscribe_page(subscriber: Subscriber, state: str) -> Response:
    """The unsubscribe page in `state` (ask, done, back), its forms posting to this app."""
    return page(
        "unsubscribe.html.j2",
        subscriber.lang,
        state=state,
        email=subscriber.email,
        action=action("unsubscribe"),
        resubscribe_action=action("resubscribe"),
    )


def _test_link_page() -> Response:
    """A preview's or `newsletter doctor`'s link: it names nobody, so the page is shown and nothing is read or
    changed; that it verifies proves this app checks links with the sender's key."""
    lang = best_language()
    state = "done" if request.method == "POST" else "ask"
    return page("unsubscribe.html.j2", lang, state=state, email=strings(lang).get("test_link_address", ""),
                action=action("unsubscribe"), resubscribe_action="", test_link=True)  # fmt: skip


@views.route("/unsubscribe", methods=["GET", "POST"])
def unsubscribe() -> Response:
    """GET: the page with one button. POST: RFC 8058 one-click or that button; idempotent, 200, never a redirect."""
    shared = context()
    token = query_token()
    if len(token) <= MAX_TOKEN_LENGTH:
        if verify_unsubscribe_token(shared.secret, shared.settings.list_id, token) == TEST_SUBSCRIBER_ID:
            return _test_link_page()
    subscriber = unsubscribe_link_subscriber()
    if isinstance(subscriber, Response):
        return subscriber
    if request.method != "POST":  # GET and HEAD never change anything: scanners fetch every link
        return _unsubscribe_page(subscriber, "done" if subscriber.status == SubscriberStatus.UNSUBSCRIBED else "ask")
    # RFC 8058 §3.2: the body is List-Unsubscribe=One-Click (urlencoded or multipart); the page's button sends
    # the same plus via=page. Either way the POST is the recipient's decision. A POST without it (a scanner that
    # posts to links, a hand-made request) changes nothing and gets the page with the button.
    if not _one_click_body():
        return _unsubscribe_page(subscriber, "done" if subscriber.status == SubscriberStatus.UNSUBSCRIBED else "ask")
    method = "page" if request.form.get("via") == "page" else "one-click"
    if subscriber.status in {SubscriberStatus.ACTIVE, SubscriberStatus.PENDING}:
        record_unsubscribe(shared.store, subscriber.id, method)
    return _unsubscribe_page(subscriber, "done")


ONE_CLICK = "One-Click"


def _one_click_body() -> bool:
    """Whether the POST carries RFC 8058's List-Unsubscribe=One-Click: as a form field (urlencoded or multipart),
    or as the whole body of a request that names no form type."""
    if request.form.get("List-Unsubscribe") == ONE_CLICK:
        return True
    return request.get_data(cache=True).strip() == f"List-Unsubscribe={ONE_CLICK}".encode()


@views.post("/resubscribe")
def resubscribe_view() -> Response:
    """POST only (the unsubscribed page's button): undo that subscriber's unsubscribe of the last hour, or mark a
    confirmation mail due for an older one (store.resubscribe)."""
    shared = context()
    subscriber = unsubscribe_link_subscriber()
    if isinstance(subscriber, Response):
        return subscriber
    done = resubscribe(shared.store, subscriber.id, confirm=shared.limits.per_address.allow(subscriber.email.lower()))
    response = _unsubscribe_page(subscriber, "confirm" if done == "confirm" else "back")
    if done == "confirm":
        response.call_on_close(shared.mails.wake)  # the confirmation worker sends it after this answer
    return response


TRACKING_FROM_PREFERENCES = "preferences page"
TRACKING_FROM_SUBSCRIBE = "subscribe form"


@views.route("/preferences", methods=["GET", "POST"])
def preferences() -> Response:
    """GET: the subscriber's settings. POST: save their language and their tracking consent (the form's checkbox:
    ticked gives it, unticked withdraws it), or unsubscribe them (`action=unsubscribe`)."""
    shared = context()
    subscriber = unsubscribe_link_subscriber()
    if isinstance(subscriber, Response):
        return subscriber
    saved = False
    if request.method == "POST":
        if request.form.get("action") == "unsubscribe":
            record_unsubscribe(shared.store, subscriber.id, "preferences")
            return _unsubscribe_page(subscriber, "done")
        lang = request.form.get("lang", "")
        if lang not in shared.settings.all_languages:
            return error(400, subscriber.lang, "error_bad_link")
        set_language(shared.store, subscriber.id, lang)
        if request.form.get("tracking_shown") == "yes":  # a form without the checkbox leaves the choice alone
            given = request.form.get("tracking") == "yes"
            set_tracking_consent(shared.store, subscriber.id, given, TRACKING_FROM_PREFERENCES)
        subscriber = get_subscriber(shared.store, subscriber.id) or subscriber
        saved = True
    return page(
        "preferences.html.j2",
        subscriber.lang,
        email=subscriber.email,
        saved=saved,
        subscriber_lang=subscriber.lang or shared.settings.language,
        tracking=subscriber.tracking,
        languages=languages(),
        action=action("preferences"),
    )


def _subscribe_page(
    lang: str, status: int = 200, *, state: str = "form", email: str = "", problem: str = ""
) -> Response:
    """The sign-up form (`state` form) or its answer (`state` sent)."""
    return page("subscribe.html.j2", lang, status, state=state, email=email, selected_lang=lang,
                languages=languages(), error=problem, action="subscribe")  # fmt: skip


@views.route("/subscribe", methods=["GET", "POST"])
def subscribe() -> Response:
    """GET: the form. POST (`email`, `lang`, `tracking`): mark a confirmation mail due; the same answer, in the
    same time, for a new, known or refused address. A ticked `tracking` is a new address's consent to tracking."""
    from ..subscriber_csv import normalise_address

    shared = context()
    settings = shared.settings
    lang = best_language()
    if request.method != "POST":
        return _subscribe_page(lang)
    lang = request.form.get("lang", lang)
    if lang not in settings.all_languages:
        lang = settings.language
    raw = request.form.get("email", "").strip()
    try:
        email = normalise_address(raw) if len(raw) <= 254 else ""
    except ValueError:
        email = ""
    if not email:
        return _subscribe_page(lang, 400, email=raw, problem=strings(lang).get("subscribe_invalid", ""))
    if not shared.limits.per_client.allow(request.remote_addr or "?"):
        return error(429, lang, "error_too_many")
    consent = f"web form, {settings.app('subscribe')}"
    confirm = shared.limits.per_address.allow(email.lower())
    tracking = TRACKING_FROM_SUBSCRIBE if request.form.get("tracking") == "yes" else None
    request_subscription(shared.store, email, lang, consent=consent, confirm=confirm, tracking=tracking)
    # The worker is woken for every sign-up, and only once the answer has been written, so its sending never
    # competes with this answer (see ConfirmationWorker.wake).
    response = _subscribe_page(lang, state="sent")
    response.call_on_close(shared.mails.wake)
    return response


@views.route("/confirm", methods=["GET", "POST"])
def confirm() -> Response:
    """GET: the page with one button (once active, that they are subscribed). POST: `pending` → `active`, and on
    the first confirmation a welcome mail is due (the worker sends it once, however often this is posted)."""
    shared = context()
    named = confirm_link_subscriber()
    if isinstance(named, Response):
        return named
    subscriber, issued = named
    if subscriber.status in {SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED}:
        return error(400, subscriber.lang, "error_bad_link")
    activated = False
    if request.method != "POST" and subscriber.status != SubscriberStatus.ACTIVE:
        return page("confirm.html.j2", subscriber.lang, state="ask", email=subscriber.email, action=action("confirm"))
    if request.method == "POST":
        confirmed, activated = confirm_subscription(
            shared.store, subscriber.id, issued, welcome=shared.settings.welcome_mail
        )
        subscriber = confirmed or subscriber
        if subscriber.status != SubscriberStatus.ACTIVE:  # unsubscribed after the link was made, just now
            return error(400, subscriber.lang, "error_old_confirmation")
    response = page("confirm.html.j2", subscriber.lang, state="done", email=subscriber.email, action=action("confirm"))
    if activated:  # the welcome mail it made due goes out after this answer
        response.call_on_close(shared.mails.wake)
    return response


@views.post("/ses/notifications")
def ses_notifications() -> Response:
    """POST only: an SNS HTTP delivery of SES events, applied by the configured handler (404 without one)."""
    handler = context().events_handler
    if handler is None:
        raise NotFound()
    status, text = handler(request.get_data(cache=False), dict(request.headers))
    return Response(text, status=status, mimetype="text/plain")
