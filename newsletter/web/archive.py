"""The built archive (site/), served read-only by GET and HEAD on every path no other route takes."""

from __future__ import annotations

from flask import Blueprint, Response, send_from_directory
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import NotFound
from werkzeug.routing import PathConverter

from .context import context

archive = Blueprint("archive", __name__)
POST_ONLY = ("resubscribe", "ses/notifications")  # the archive's GET route must not match these
# The archive's pages may run the build's own script files (the search page's Pagefind: its module, its WebAssembly,
# the index it fetches) and show its data: icons, never inline scripts; the web app's own pages keep the policy that
# runs no script at all.
ARCHIVE_SCRIPTS = "; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'; worker-src 'self'"


def archive_policy(policy: str) -> str:
    """The web app's policy, opened for what the archive's own pages need."""
    return policy.replace("img-src 'self'", "img-src 'self' data:", 1) + ARCHIVE_SCRIPTS


class ArchivePath(PathConverter):
    """A path under site/ that is not a POST-only route, so GET /resubscribe is a 405, not the archive's 404."""

    regex = r"(?!(?:" + "|".join(POST_ONLY) + r")/?$)[^/].*?"


@archive.record_once
def _converter(state: BlueprintSetupState) -> None:
    """The `archive:` converter must be known before the routes below are added."""
    state.app.url_map.converters["archive"] = ArchivePath


@archive.get("/", defaults={"path": ""})
@archive.get("/<archive:path>")
def archive_file(path: str) -> Response:
    """A file of the built archive (a folder's index.html); a missing one is the site's 404 page. A symbolic link
    that leads out of site/ is missing too (the build makes none; one planted there serves nothing)."""
    site = context().site
    try:
        if path == "" or path.endswith("/") or (site / path).is_dir():
            path = path.rstrip("/") + ("/index.html" if path else "index.html")
        if not (site / path.lstrip("/")).resolve().is_relative_to(site.resolve()):
            raise NotFound()
        response = send_from_directory(site, path.lstrip("/"), max_age=300)
    except (NotFound, OSError, ValueError, RuntimeError):  # a name refused (too long, NUL, a link loop) is absent
        missing = site / "404.html"
        if missing.is_file():
            return Response(missing.read_bytes(), status=404, mimetype="text/html")
        raise NotFound() from None
    response.headers["Content-Security-Policy"] = archive_policy(context().policy)
    if path.endswith(".xml") and path.rsplit("/", 1)[-1] in {"feed.xml", "rss.xml"}:
        kind = "atom" if path.endswith("feed.xml") else "rss"
        response.headers["Content-Type"] = f"application/{kind}+xml; charset=utf-8"
    return response
