"""`newsletter preview --serve`: a read-only WSGI app over the preview's state, run under waitress as `newsletter
serve` runs it (server.listen, guarded_server.create_server), with a reload stream (Server-Sent Events).

Only GET and HEAD are answered (anything else is 405). Every path is looked up among the issues, editions and
static files the state knows, never joined onto a folder, so no path (`..`, `%2e%2e`, `%2f`) reaches a file.
"""

from __future__ import annotations

import datetime as dt
import json
import mimetypes
import re
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

from .errors import NewsletterError
from .preview_pages import edition_page, index_page, not_found_page
from .preview_state import Change, Failure, PreviewState, describe
from .server import listen, waitress_options

THREADS = 16  # each open preview tab holds one for its reload stream
HEARTBEAT = 10.0  # seconds between comments on a reload stream: they keep it open and find closed tabs
STREAM_SECONDS = 120.0  # a reload stream then ends; the browser reconnects at once, saying the last change it got
TAILS = {"", "text", "archive", "email.html", "email.txt"}  # what may follow /issues/<slug>/<lang>/
DARK = re.compile(r"\(\s*prefers-color-scheme\s*:\s*dark\s*\)")
LIGHT = re.compile(r"\(\s*prefers-color-scheme\s*:\s*light\s*\)")

StartResponse = Callable[..., Any]


def as_dark(html: str) -> str:
    """`html` with its `prefers-color-scheme: dark` rules always on (and `light` ones off): a dark-mode client."""
    return LIGHT.sub("(max-width: 0px)", DARK.sub("(min-width: 0px)", html))


class PreviewApp:
    """The WSGI app: the index, each edition's views and raw parts, its archive page, static files, /events."""

    def __init__(self, state: PreviewState, now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.state = state
        self.now = now

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _send(start_response, method, "405 Method Not Allowed", b"the preview only reads: GET or HEAD\n",
                         "text/plain; charset=utf-8", [("Allow", "GET, HEAD")])  # fmt: skip
        path = _decoded_path(environ)
        if path is None:
            return self._not_found(start_response, method, "No such page.")
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if path == "/":
            return _html(start_response, method, index_page(self.state, self.now()))
        if path == "/events":
            return self._events(environ, start_response, method, query)
        if path.startswith("/site/static/"):
            return self._static(start_response, method, path.removeprefix("/site/static/"))
        with self.state.lock:  # what the page is looked up in stays as it is until it is made
            if path.startswith("/issues/"):
                return self._edition(start_response, method, path.removeprefix("/issues/"), query)
            if path.startswith("/site/"):
                return self._site(start_response, method, path.removeprefix("/site/"))
        return self._not_found(start_response, method, "No such page.")

    def _edition(self, start_response: StartResponse, method: str, rest: str, query: dict[str, list[str]]) -> Any:
        parts = rest.split("/")
        if len(parts) != 3 or parts[2] not in TAILS or not self.state.knows(parts[0], parts[1]):
            return self._not_found(start_response, method, "No such issue or edition in issues/.")
        slug, lang, tail = parts
        if tail in ("", "text", "archive"):
            dark = query.get("scheme") == ["dark"]
            return _html(start_response, method, edition_page(self.state, slug, lang, tail, dark))
        email = self.state.email(slug, lang)
        if isinstance(email, Failure):
            return _failure(start_response, method, email)
        if tail == "email.txt":
            return _send(start_response, method, "200 OK", email.text.encode(), "text/plain; charset=utf-8")
        return _html(start_response, method, as_dark(email.html) if query.get("scheme") == ["dark"] else email.html)

    def _static(self, start_response: StartResponse, method: str, name: str) -> Any:
        """A file of the theme's static/ folder, or of templates/static/ that overrides it."""
        with self.state.lock:
            templates = self.state.templates
        try:
            found = {name: path for name, path, _ in templates.static_files()} if templates else {}
            path = found.get(name)
            if path is None or not path.is_file():
                return self._not_found(start_response, method, "No such file in static/.")
            body = path.read_bytes()
        except (NewsletterError, OSError) as err:
            return _failure(start_response, method, describe(err))
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        kind += "; charset=utf-8" if kind.startswith("text/") else ""
        return _send(start_response, method, "200 OK", body, kind)

    def _site(self, start_response: StartResponse, method: str, rest: str) -> Any:
        """An edition's archive page at its path in the site, so that its relative links (static/) work."""
        page_path = rest.removesuffix("index.html")
        where = next(
            (
                (entry.slug, edition.lang)
                for entry in self.state.entries.values()
                if entry.issue is not None
                for edition in entry.issue.editions
                if edition.page_path == page_path
            ),
            None,
        )
        if where is None:
            return self._not_found(start_response, method, "The preview has each edition's archive page only.")
        page = self.state.archive(*where)
        if isinstance(page, Failure):
            return _failure(start_response, method, page)
        return _html(start_response, method, page)

    def _events(
        self, environ: dict[str, Any], start_response: StartResponse, method: str, query: dict[str, list[str]]
    ) -> Any:
        """The reload stream: an `change` event (its data {"version", "slugs"}, slugs null for every page) for
        each batch of changes after the version the page was made at (`since`, or Last-Event-ID on reconnect)."""
        given = environ.get("HTTP_LAST_EVENT_ID") or (query.get("since") or [""])[0]
        since = int(given) if given.isdigit() else self.state.version
        start_response(
            "200 OK",
            [
                ("Content-Type", "text/event-stream; charset=utf-8"),
                ("Cache-Control", "no-store"),
                ("X-Accel-Buffering", "no"),
            ],
        )
        return [b""] if method == "HEAD" else self._stream(since)

    def _stream(self, since: int) -> Iterator[bytes]:
        yield b"retry: 1000\n\n"
        if since > self.state.version:  # the page is from an earlier run of the server: reload it
            since = -1
        deadline = time.monotonic() + STREAM_SECONDS
        while time.monotonic() < deadline:
            change = self.state.changes_since(since) if since < 0 else self.state.wait(since, HEARTBEAT)
            if self.state.closed:
                return
            if change is None:
                yield b": waiting for changes\n\n"
                continue
            since = change.version
            yield _event(change)

    def _not_found(self, start_response: StartResponse, method: str, what: str) -> Any:
        return _send(start_response, method, "404 Not Found", not_found_page(self.state, what).encode(), _HTML)


_HTML = "text/html; charset=utf-8"


def _event(change: Change) -> bytes:
    slugs = None if change.slugs is None else sorted(change.slugs)
    data = json.dumps({"version": change.version, "slugs": slugs}, ensure_ascii=False)
    return f"id: {change.version}\nevent: change\ndata: {data}\n\n".encode()


def _decoded_path(environ: dict[str, Any]) -> str | None:
    """The request's path as text (WSGI gives it percent-decoded, as latin-1), or None if it names no page: not
    UTF-8, or with a `.`/`..` segment, a backslash or a NUL."""
    try:
        path = str(environ.get("PATH_INFO", "")).encode("latin-1").decode("utf-8")
    except UnicodeError:
        return None
    if not path.startswith("/") or "\\" in path or "\0" in path:
        return None
    if any(segment in (".", "..") for segment in path.split("/")):
        return None
    return path


def _send(
    start_response: StartResponse,
    method: str,
    status: str,
    body: bytes,
    kind: str,
    extra: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    headers = [
        ("Content-Type", kind),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),  # always the files as they are now
        ("X-Content-Type-Options", "nosniff"),
        *(extra or []),
    ]
    start_response(status, headers)
    return [b""] if method == "HEAD" else [body]


def _html(start_response: StartResponse, method: str, page: str) -> list[bytes]:
    return _send(start_response, method, "200 OK", page.encode(), _HTML)


def _failure(start_response: StartResponse, method: str, failure: Failure) -> list[bytes]:
    return _send(
        start_response, method, "500 Internal Server Error", f"{failure}\n".encode(), "text/plain; charset=utf-8"
    )


def serve_preview(state: PreviewState, *, host: str, port: int, announce: Callable[[str], None]) -> None:
    """Serve `state` on host:port and reload it as its files change, until Ctrl-C (or SIGTERM).

    `announce` gets the address to open once the port is bound and the watcher sees every change; a host or port
    that cannot be used is a one-line ConfigError naming --host or --port.
    """
    from .guarded_server import create_server
    from .preview_watch import Watcher

    options = waitress_options(host, port, THREADS) | {"send_bytes": 1}  # each reload event leaves at once
    server = listen(create_server, PreviewApp(state), host, port, options)
    watcher = Watcher(state)

    def stop(signum: int, frame: Any) -> None:
        state.close()  # the reload streams end, so waitress' threads stop at once
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        watcher.start()
        watcher.ready.wait()
        shown = f"[{host}]" if ":" in host else host
        announce(f"http://{shown}:{getattr(server, 'effective_port', port)}/")
        server.run()  # waitress returns on KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    finally:
        state.close()
        watcher.stop()
        server.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
