"""The web app (WSGI, Flask): one-click unsubscribe, double opt-in subscribe, preferences, SES notifications,
and the built archive.

RFC 8058 rules kept here: only a POST changes anything (mail scanners follow links with GET and HEAD); other
methods get 405 with an Allow header. The one-click POST needs no cookie, CSRF token or login, answers 200
with a short page (never a redirect) and is idempotent. Every page is escaped by Jinja, sends security
headers, and never redirects to a URL from a request. Links are checked with NEWSLETTER_SECRET_KEY; the
public development secret only in development mode, which serves only on a loopback address and says so on
every page.

The app answers on `app_url`, which may be another host than the archive's `base_url` (the archive then lives
on a static host): its pages link back to the archive and take the archive's style sheet, and HSTS follows
`app_url`.

Modules: `context` (what the views share, kept on the app), `pages` (rendering, links' subscribers),
`views` (the subscriber's routes), `archive` (site/), `answers` (headers and error pages).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from flask import Flask
from werkzeug.exceptions import HTTPException

from ..config import Settings
from ..confirmations import ConfirmationWorker
from ..errors import StoreError
from ..render.templates import Templates, load_templates
from ..store import Store
from ..tokens import DEVELOPMENT_SECRET, server_secret_key
from .answers import content_security_policy, http_error, origin, security_headers, store_unavailable
from .archive import archive
from .context import EXTENSION, EventsHandler, Limits, WebContext, context
from .views import views

CONFIRMATIONS = "newsletter.confirmations"  # app.extensions key of the ConfirmationWorker (`serve` starts it)
DEVELOPMENT_SECRET_IN_USE = "links are checked with the public development secret, so anyone can forge them."
DEVELOPMENT_ONLY = "this server answers on this machine only."

__all__ = ["CONFIRMATIONS", "EXTENSION", "WebContext", "context", "create_app"]


def create_app(
    settings: Settings,
    store: Store,
    *,
    templates: Templates | None = None,
    site_dir: Path | None = None,
    clock: Callable[[], float] = time.time,
    events_handler: EventsHandler | None = None,
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
    note = DEVELOPMENT_SECRET_IN_USE if secret == DEVELOPMENT_SECRET.encode() else DEVELOPMENT_ONLY
    # On its own host the app's pages link back to the archive and use its style sheet (which the CSP allows).
    archive_root = settings.url("") if settings.app_url != settings.base_url else ""
    shared = WebContext(
        settings=settings,
        store=store,
        templates=templates,
        secret=secret,
        limits=Limits.for_sign_ups(sign_ups_per_client),
        clock=clock,
        site=(site_dir or settings.root / "site").resolve(),
        mails=ConfirmationWorker(settings, store, templates, secret, clock=clock),
        events_handler=events_handler,
        archive_root=archive_root,
        policy=content_security_policy(origin(settings.base_url) if archive_root else ""),
        development_note=note if development else None,
    )
    app = Flask("newsletter", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    app.extensions[EXTENSION] = shared
    app.extensions[CONFIRMATIONS] = shared.mails
    app.register_blueprint(views)
    app.register_blueprint(archive)
    app.after_request(security_headers)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(StoreError, store_unavailable)
    app.register_error_handler(sa.exc.OperationalError, store_unavailable)
    return app
