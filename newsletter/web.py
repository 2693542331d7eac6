"""The web app (WSGI, Flask): one-click unsubscribe, double opt-in subscribe, preferences, SES notifications,
and the built archive.

RFC 8058 rules kept here: a GET never changes anything (mail scanners follow links); the one-click POST
needs no cookie, CSRF token or login, answers 200 with a short page (never a redirect) and is idempotent.
Every page is escaped by Jinja, sends security headers, and never redirects to a URL from a request.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from flask import Flask, Response, request, send_from_directory
from werkzeug.exceptions import HTTPException, NotFound

from .config import Settings
from .render.templates import Templates, load_templates
from .store import (
    Store,
    SubscriberStatus,
    confirm_subscription,
    get_subscriber,
    record_unsubscribe,
    request_subscription,
    resubscribe,
    set_language,
)
from .tokens import (
    MAX_TOKEN_LENGTH,
    confirm_token,
    secret_key,
    verify_confirm_token,
    verify_unsubscribe_token,
)
from .transports import OutgoingMessage, SendStatus, open_transport

CONFIRM_MAX_AGE = 7 * 24 * 3600  # the confirmation link works for 7 days
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' https:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


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
) -> Flask:
    """The WSGI app. `events_handler` takes SNS HTTP notifications (see events.py)."""
    templates = templates or load_templates(settings)
    secret, _ = secret_key(settings.transport)
    site = (site_dir or settings.root / "site").resolve()
    per_client = SlidingWindow(limit=10, seconds=600)  # sign-ups per client address per 10 minutes
    per_address = SlidingWindow(limit=3, seconds=24 * 3600)  # confirmation mails per address per day
    app = Flask("newsletter", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024

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
            root="../" * depth or "./",
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
        if kind == "confirm":
            subscriber_id = verify_confirm_token(secret, settings.list_id, token, CONFIRM_MAX_AGE, now=clock())
        else:
            subscriber_id = verify_unsubscribe_token(secret, settings.list_id, token)
        subscriber = get_subscriber(store, subscriber_id) if subscriber_id is not None else None
        if subscriber is None:
            return None, error(400, best_language(), "error_bad_link")
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
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if settings.base_url.startswith("https://"):
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
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
        subscriber, problem = token_subscriber("unsubscribe")
        if problem:
            return problem
        if request.method == "GET":  # never changes anything: scanners fetch every link
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
        if request.method == "GET":
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
        subscriber, _ = request_subscription(store, email, lang, consent=f"web form, {settings.base_url}/subscribe")
        if subscriber is not None and per_address.allow(email.lower()):
            send_confirmation(subscriber.id, subscriber.email, subscriber.lang or lang)
        # The same answer whether the address was new, known, or refused: no enumeration.
        return subscribe_page(lang, state="sent")

    def send_confirmation(subscriber_id: int, email: str, lang: str) -> None:
        t = strings(lang)
        wording = settings.for_language(lang)
        url = settings.url(f"confirm?token={confirm_token(secret, settings.list_id, subscriber_id, clock())}")
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
            confirm_url=url,
            postal_address=settings.postal_address,
        )
        message.set_content(body, cte="base64")
        transport = open_transport(settings.transport, settings, slug="confirmations")
        try:
            result = transport.send(
                OutgoingMessage(settings.from_address.addr_spec, email, message.as_bytes(), "confirmations", lang)
            )
        finally:
            transport.close()
        if result.status != SendStatus.SENT:
            app.logger.warning("confirmation mail to subscriber %s not sent: %s", subscriber_id, result.error)

    @app.route("/confirm", methods=["GET", "POST"])
    def confirm() -> Response:
        subscriber, problem = token_subscriber("confirm")
        if problem:
            return problem
        if subscriber.status in {SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED}:
            return error(400, subscriber.lang, "error_bad_link")
        if request.method == "GET" and subscriber.status != SubscriberStatus.ACTIVE:
            return page(
                "confirm.html.j2", subscriber.lang, state="ask", email=subscriber.email, action=action("confirm")
            )
        if request.method == "POST":
            subscriber = confirm_subscription(store, subscriber.id) or subscriber
        return page("confirm.html.j2", subscriber.lang, state="done", email=subscriber.email, action=action("confirm"))

    @app.post("/ses/notifications")
    def ses_notifications() -> Response:
        if events_handler is None:
            raise NotFound()
        status, text = events_handler(request.get_data(cache=False), dict(request.headers))
        return Response(text, status=status, mimetype="text/plain")

    @app.get("/", defaults={"path": ""})
    @app.get("/<path:path>")
    def archive(path: str) -> Response:
        target = site / path
        if path == "" or path.endswith("/") or target.is_dir():
            path = path.rstrip("/") + ("/index.html" if path else "index.html")
        try:
            response = send_from_directory(site, path.lstrip("/"), max_age=300)
        except NotFound:
            missing = site / "404.html"
            if missing.is_file():
                return Response(missing.read_bytes(), status=404, mimetype="text/html")
            raise
        if path.endswith(".xml") and path.rsplit("/", 1)[-1] in {"feed.xml", "rss.xml"}:
            kind = "atom" if path.endswith("feed.xml") else "rss"
            response.headers["Content-Type"] = f"application/{kind}+xml; charset=utf-8"
        return response

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Response:
        key = "error_too_many" if err.code == 429 else "error_bad_link"
        return error(err.code or 400, best_language(), key)

    return app


def serve(settings: Settings, *, host: str, port: int, threads: int = 8, trusted_proxy: str | None = None) -> None:
    """Run the app under waitress (a production WSGI server) until interrupted."""
    try:
        import waitress
    except ModuleNotFoundError:
        from .errors import MissingExtraError

        raise MissingExtraError("newsletter serve", "web") from None
    from .events import sns_handler
    from .store import open_store

    store = open_store(settings.database_url)
    handler = sns_handler(settings, store=store, transient_limit=settings.ses.transient_bounces)
    app = create_app(settings, store, events_handler=handler)
    options: dict[str, Any] = {"host": host, "port": port, "threads": threads, "ident": "newsletter"}
    if trusted_proxy:
        options |= {
            "trusted_proxy": trusted_proxy,
            "trusted_proxy_headers": "x-forwarded-for x-forwarded-proto",
            "clear_untrusted_proxy_headers": True,
        }
    waitress.serve(app, **options)
