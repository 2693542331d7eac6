"""The web app (WSGI, Flask): one-click unsubscribe, double opt-in subscribe, preferences, SES notifications,
and the built archive.

RFC 8058 rules kept here: only a POST changes anything (mail scanners follow links with GET and HEAD); every
view branches on `request.method == "POST"`, other methods get 405 with an Allow header. The one-click POST
needs no cookie, CSRF token or login, answers 200 with a short page (never a redirect) and is idempotent.
Every page is escaped by Jinja, sends security headers, and never redirects to a URL from a request.
Links are checked with NEWSLETTER_SECRET_KEY; the public development secret only in development mode, which
serves only on a loopback address and says so on every page.

The app answers on `app_url`, which may be another host than the archive's `base_url` (the archive then lives
on a static host): its pages link back to the archive and take the archive's style sheet, and HSTS follows
`app_url`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import Flask, Response, g, request, send_from_directory
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import PathConverter

from .config import Settings
from .confirmations import ConfirmationWorker
from .errors import StoreError
from .render.templates import Templates, load_templates
from .store import (
    Store,
    SubscriberStatus,
    confirm_subscription,
    confirmation_is_current,
    get_subscriber,
    record_unsubscribe,
    request_subscription,
    resubscribe,
    set_language,
)
from .tokens import (
    DEVELOPMENT_SECRET,
    MAX_TOKEN_LENGTH,
    TEST_SUBSCRIBER_ID,
    server_secret_key,
    verify_confirm_token,
    verify_unsubscribe_token,
)

CONFIRM_MAX_AGE = 7 * 24 * 3600  # the confirmation link works for 7 days
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'{archive}; img-src 'self' https:{archive}; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
DEVELOPMENT_HEADER = "X-Newsletter-Development"  # sent on every answer in development mode
DEVELOPMENT_BANNER = (
    '<p class="development-banner" role="alert"><strong>Development mode:</strong> {what} '
    "Never serve real subscribers like this.</p>"
)
DEVELOPMENT_SECRET_IN_USE = "links are checked with the public development secret, so anyone can forge them."
DEVELOPMENT_ONLY = "this server answers on this machine only."
CONFIRMATIONS = "newsletter.confirmations"  # app.extensions key of the ConfirmationWorker
STORE_RETRY_AFTER = "30"  # seconds, in the 503 a locked or unreachable store gives

log = logging.getLogger("newsletter.web")


POST_ONLY = ("resubscribe", "ses/notifications")  # the archive's GET route must not match these


class ArchivePath(PathConverter):
    """A path under site/ that is not a POST-only route, so GET /resubscribe is a 405, not the archive's 404."""

    regex = r"(?!(?:" + "|".join(POST_ONLY) + r")/?$)[^/].*?"


class SlidingWindow:
    """At most `limit` events per key in the last `seconds` (clock injected for tests)."""

    def __init__(self, limit: int, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.seconds = seconds
        self.clock = clock
        self.events: dict[str, deque[float]] = {}
        self.lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = self.clock()
        with self.lock:
            recent = self.events.setdefault(key, deque())
            while recent and recent[0] <= now - self.seconds:
                recent.popleft()
            if len(recent) >= self.limit:
                return False
            recent.append(now)
            if len(self.events) > 100_000:  # forget idle keys so memory stays bounded
                self.events = {k: v for k, v in self.events.items() if v and v[-1] > now - self.seconds}
            return True


def create_app(
    settings: Settings,
    store: Store,
    *,
    templates: Templates | None = None,
    site_dir: Path | None = None,
    clock: Callable[[], float] = time.time,
    events_handler: Callable[[bytes, dict[str, str]], tuple[int, str]] | None = None,
    secret: bytes | None = None,
    development: bool = False,
    sign_ups_per_client: int = 10,
) -> Flask:
    """The WSGI app. `events_handler` takes SNS HTTP notifications (see events.py).

    `secret` signs and checks links (default: NEWSLETTER_SECRET_KEY, required unless `development`). The
    app's ConfirmationWorker is in `app.extensions[CONFIRMATIONS]`, not started: `serve` starts it.
    """
    templates = templates or load_templates(settings)
    if secret is None:
        secret = server_secret_key(development)
    development_note = DEVELOPMENT_SECRET_IN_USE if secret == DEVELOPMENT_SECRET.encode() else DEVELOPMENT_ONLY
    site = (site_dir or settings.root / "site").resolve()
    per_client = SlidingWindow(limit=sign_ups_per_client, seconds=600)  # sign-ups per client per 10 minutes
    per_address = SlidingWindow(limit=3, seconds=24 * 3600)  # confirmation mails per address per day
    confirmations = ConfirmationWorker(settings, store, templates, secret, clock=clock)
    # On its own host the app's pages link back to the archive and use its style sheet (which the CSP allows).
    archive_root = settings.url("") if settings.app_url != settings.base_url else ""
    policy = CONTENT_SECURITY_POLICY.format(archive=f" {_origin(settings.base_url)}" if archive_root else "")
    app = Flask("newsletter", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    app.url_map.converters["archive"] = ArchivePath
    app.extensions[CONFIRMATIONS] = confirmations

    def strings(lang: str | None) -> Any:
        return templates.strings_for(lang or settings.language, settings.language)

    titles = {
        "unsubscribe.html.j2": "unsubscribe_title",
        "subscribe.html.j2": "subscribe_title",
        "confirm.html.j2": "confirm_title",
        "preferences.html.j2": "preferences_title",
    }

    def page(template: str, lang: str | None, status: int = 200, **context: Any) -> Response:
        lang = lang if lang in settings.all_languages else settings.language
        wording = settings.for_language(lang)
        t = strings(lang)
        context.setdefault("title", t.get(titles.get(template, ""), wording.title).format(title=wording.title))
        depth = request.path.count("/") - 1
        body = templates.render(
            f"web/{template}",
            t=t,
            lang=lang,
            site_title=wording.title,
            site_description=wording.description,
            root=archive_root or "../" * depth or "./",
            **context,
        )
        response = Response(body, status=status, mimetype="text/html")
        response.headers["Cache-Control"] = "no-store"
        return response

    def error(status: int, lang: str | None, message_key: str) -> Response:
        t = strings(lang)
        return page(
            "error.html.j2", lang, status, title=t.get("error_title", "Error"), message=t.get(message_key, message_key)
        )

    def token_subscriber(kind: str) -> tuple[Any, Response | None]:
        """(the subscriber the request's token names, or an error page)."""
        token = request.args.get("token", "")
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None, error(400, best_language(), "error_bad_link")
        issued: int | None = None
        if kind == "confirm":
            confirmation = verify_confirm_token(secret, settings.list_id, token, CONFIRM_MAX_AGE, now=clock())
            subscriber_id, issued = confirmation if confirmation else (None, None)
            g.confirm_issued = issued
        else:
            subscriber_id = verify_unsubscribe_token(secret, settings.list_id, token)
        subscriber = get_subscriber(store, subscriber_id) if subscriber_id is not None else None
        if subscriber is None:
            return None, error(400, best_language(), "error_bad_link")
        if issued is not None and not confirmation_is_current(subscriber, issued):
            # older than their unsubscribe (or than the row): an old link never undoes an unsubscribe
            return None, error(400, subscriber.lang, "error_old_confirmation")
        return subscriber, None

    def best_language() -> str:
        wanted = request.args.get("lang")
        if wanted in settings.all_languages:
            return wanted
        return request.accept_languages.best_match(settings.all_languages) or settings.language

    def action(path: str) -> str:
        """The form action: this page's own path and query, relative (never a URL from the request)."""
        token = request.args.get("token", "")
        return f"{path}?token={token}" if token else path

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", policy)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if settings.app("").startswith("https://"):  # the host this app answers on, not the archive's
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        if development:
            response.headers[DEVELOPMENT_HEADER] = development_note
            if response.mimetype == "text/html" and response.status_code != 304:
                _add_banner(response, DEVELOPMENT_BANNER.format(what=development_note))
        return response

    def unsubscribe_page(subscriber: Any, state: str) -> Response:
        return page(
            "unsubscribe.html.j2",
            subscriber.lang,
            state=state,
            email=subscriber.email,
            action=action("unsubscribe"),
            resubscribe_action=action("resubscribe"),
        )

    @app.route("/unsubscribe", methods=["GET", "POST"])
    def unsubscribe() -> Response:
        token = request.args.get("token", "")
        named = verify_unsubscribe_token(secret, settings.list_id, token) if len(token) <= MAX_TOKEN_LENGTH else None
        if named == TEST_SUBSCRIBER_ID:
            # A preview's or `newsletter doctor`'s link. It names nobody, so the page is shown and nothing is
            # read or changed; that it verifies proves this app checks links with the sender's key.
            lang = best_language()
            state = "done" if request.method == "POST" else "ask"
            return page("unsubscribe.html.j2", lang, state=state, email=strings(lang).get("test_link_address", ""),
                        action=action("unsubscribe"), resubscribe_action="", test_link=True)  # fmt: skip
        subscriber, problem = token_subscriber("unsubscribe")
        if problem:
            return problem
        if request.method != "POST":  # GET and HEAD never change anything: scanners fetch every link
            state = "done" if subscriber.status == SubscriberStatus.UNSUBSCRIBED else "ask"
        else:
            # RFC 8058 §3.2: the body is List-Unsubscribe=One-Click (urlencoded or multipart); the page's
            # button sends the same plus via=page. Either way the POST is the recipient's decision.
            method = "page" if request.form.get("via") == "page" else "one-click"
            if subscriber.status in {SubscriberStatus.ACTIVE, SubscriberStatus.PENDING}:
                record_unsubscribe(store, subscriber.id, method)
            state = "done"
        return unsubscribe_page(subscriber, state)

    @app.post("/resubscribe")
    def resubscribe_view() -> Response:
        subscriber, problem = token_subscriber("unsubscribe")
        if problem:
            return problem
        resubscribe(store, subscriber.id)
        return unsubscribe_page(subscriber, "back")

    @app.route("/preferences", methods=["GET", "POST"])
    def preferences() -> Response:
        subscriber, problem = token_subscriber("unsubscribe")
        if problem:
            return problem
        saved = False
        if request.method == "POST":
            if request.form.get("action") == "unsubscribe":
                record_unsubscribe(store, subscriber.id, "preferences")
                return unsubscribe_page(subscriber, "done")
            lang = request.form.get("lang", "")
            if lang not in settings.all_languages:
                return error(400, subscriber.lang, "error_bad_link")
            set_language(store, subscriber.id, lang)
            subscriber = get_subscriber(store, subscriber.id)
            saved = True
        return page(
            "preferences.html.j2",
            subscriber.lang,
            email=subscriber.email,
            saved=saved,
            subscriber_lang=subscriber.lang or settings.language,
            languages=languages(),
            action=action("preferences"),
        )

    def languages() -> list[tuple[str, str]]:
        return [(code, strings(code).get("language_name", code)) for code in settings.all_languages]

    def subscribe_page(
        lang: str, status: int = 200, *, state: str = "form", email: str = "", problem: str = ""
    ) -> Response:
        return page(
            "subscribe.html.j2",
            lang,
            status,
            state=state,
            email=email,
            selected_lang=lang,
            languages=languages(),
            error=problem,
            action="subscribe",
        )

    @app.route("/subscribe", methods=["GET", "POST"])
    def subscribe() -> Response:
        lang = best_language()
        if request.method != "POST":
            return subscribe_page(lang)
        from .subscriber_csv import normalise_address

        lang = request.form.get("lang", lang)
        if lang not in settings.all_languages:
            lang = settings.language
        raw = request.form.get("email", "").strip()
        try:
            email = normalise_address(raw) if len(raw) <= 254 else ""
        except ValueError:
            email = ""
        if not email:
            return subscribe_page(lang, 400, email=raw, problem=strings(lang).get("subscribe_invalid", ""))
        if not per_client.allow(request.remote_addr or "?"):
            return error(429, lang, "error_too_many")
        request_subscription(
            store,
            email,
            lang,
            consent=f"web form, {settings.app('subscribe')}",
            confirm=per_address.allow(email.lower()),
        )
        # The same answer, in the same time, whether the address was new, known, or refused: no enumeration.
        # The worker is woken for every sign-up, and only once the answer has been written, so its sending
        # never competes with this answer (see ConfirmationWorker.wake).
        response = subscribe_page(lang, state="sent")
        response.call_on_close(confirmations.wake)
        return response

    @app.route("/confirm", methods=["GET", "POST"])
    def confirm() -> Response:
        subscriber, problem = token_subscriber("confirm")
        if problem:
            return problem
        if subscriber.status in {SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED}:
            return error(400, subscriber.lang, "error_bad_link")
        if request.method != "POST" and subscriber.status != SubscriberStatus.ACTIVE:
            return page(
                "confirm.html.j2", subscriber.lang, state="ask", email=subscriber.email, action=action("confirm")
            )
        if request.method == "POST":
            confirmed, _ = confirm_subscription(store, subscriber.id, g.confirm_issued)
            subscriber = confirmed or subscriber
            if subscriber.status != SubscriberStatus.ACTIVE:  # unsubscribed after the link was made, just now
                return error(400, subscriber.lang, "error_old_confirmation")
        return page("confirm.html.j2", subscriber.lang, state="done", email=subscriber.email, action=action("confirm"))

    @app.post("/ses/notifications")
    def ses_notifications() -> Response:
        if events_handler is None:
            raise NotFound()
        status, text = events_handler(request.get_data(cache=False), dict(request.headers))
        return Response(text, status=status, mimetype="text/plain")

    @app.get("/", defaults={"path": ""})
    @app.get("/<archive:path>")
    def archive(path: str) -> Response:
        try:
            if path == "" or path.endswith("/") or (site / path).is_dir():
                path = path.rstrip("/") + ("/index.html" if path else "index.html")
            response = send_from_directory(site, path.lstrip("/"), max_age=300)
        except (NotFound, OSError, ValueError):  # a name the file system refuses (too long, NUL, loop…) is absent
            missing = site / "404.html"
            if missing.is_file():
                return Response(missing.read_bytes(), status=404, mimetype="text/html")
            raise NotFound() from None
        if path.endswith(".xml") and path.rsplit("/", 1)[-1] in {"feed.xml", "rss.xml"}:
            kind = "atom" if path.endswith("feed.xml") else "rss"
            response.headers["Content-Type"] = f"application/{kind}+xml; charset=utf-8"
        return response

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Response:
        key = {404: "error_not_found", 429: "error_too_many", 405: "error_method", 413: "error_too_large"}.get(
            err.code or 400, "error_bad_link"
        )
        response = error(err.code or 400, best_language(), key)
        for name, value in err.get_headers():  # 405 keeps its Allow header
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(StoreError)
    @app.errorhandler(sa.exc.OperationalError)
    def store_unavailable(err: Exception) -> Response:
        """A locked SQLite file or an unreachable PostgreSQL: 503, try again later; one line in the log."""
        detail = str(getattr(err, "orig", None) or err).strip().splitlines()
        log.error("%s %s: the store is unavailable: %s", request.method, request.path, detail[0] if detail else "")
        response = error(503, best_language(), "error_busy")
        response.headers["Retry-After"] = STORE_RETRY_AFTER
        return response

    return app


def _origin(url: str) -> str:
    """The scheme and host (and port) of `url`: what a Content-Security-Policy source names."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _add_banner(response: Response, banner_html: str) -> None:
    """Put the development banner right after the page's <body> tag (the web pages and the archive's)."""
    response.direct_passthrough = False
    html = response.get_data()
    start = html.find(b"<body")
    end = html.find(b">", start) if start >= 0 else -1
    banner = banner_html.encode()
    response.set_data(html[: end + 1] + banner + html[end + 1 :] if end >= 0 else banner + html)
