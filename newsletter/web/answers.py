"""What every answer gets: security headers (and the development banner), and the error pages that HTTP errors
and an unavailable store turn into."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Response, request
from werkzeug.exceptions import HTTPException

from .context import context
from .pages import best_language, error

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
STORE_RETRY_AFTER = "30"  # seconds, in the 503 a locked or unreachable store gives
ERROR_WORDING = {404: "error_not_found", 429: "error_too_many", 405: "error_method", 413: "error_too_large"}

log = logging.getLogger("newsletter.web")


def content_security_policy(archive_origin: str) -> str:
    """The policy of every answer; `archive_origin` (the archive's own host, or "") may give style and images."""
    return CONTENT_SECURITY_POLICY.format(archive=f" {archive_origin}" if archive_origin else "")


def origin(url: str) -> str:
    """The scheme and host (and port) of `url`: what a Content-Security-Policy source names."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def security_headers(response: Response) -> Response:
    """Add the policy and security headers (HSTS when `app_url` is HTTPS), and the development banner."""
    shared = context()
    response.headers.setdefault("Content-Security-Policy", shared.policy)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if shared.settings.app("").startswith("https://"):  # the host this app answers on, not the archive's
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if shared.development_note is not None:
        response.headers[DEVELOPMENT_HEADER] = shared.development_note
        if response.mimetype == "text/html" and response.status_code != 304:
            _add_banner(response, DEVELOPMENT_BANNER.format(what=shared.development_note))
    return response


def http_error(err: HTTPException) -> Response:
    """An HTTP error (404, 405, 413, 429, 400) as the error page; a 405 keeps its Allow header."""
    response = error(err.code or 400, best_language(), ERROR_WORDING.get(err.code or 400, "error_bad_link"))
    for name, value in err.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def store_unavailable(err: Exception) -> Response:
    """A locked SQLite file or an unreachable PostgreSQL: 503, try again later; one line in the log."""
    detail = str(getattr(err, "orig", None) or err).strip().splitlines()
    log.error("%s %s: the store is unavailable: %s", request.method, request.path, detail[0] if detail else "")
    response = error(503, best_language(), "error_busy")
    response.headers["Retry-After"] = STORE_RETRY_AFTER
    return response


def _add_banner(response: Response, banner_html: str) -> None:
    """Put the development banner right after the page's <body> tag (the web pages and the archive's)."""
    response.direct_passthrough = False
    html = response.get_data()
    start = html.find(b"<body")
    end = html.find(b">", start) if start >= 0 else -1
    banner = banner_html.encode()
    response.set_data(html[: end + 1] + banner + html[end + 1 :] if end >= 0 else banner + html)
