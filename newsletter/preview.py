"""`newsletter preview`: write each edition's email as a sample subscriber would get it, and serve it locally."""

from __future__ import annotations

import functools
import http.server
import os
import threading
import webbrowser
from pathlib import Path

from .config import Settings
from .issues import Issue
from .messages import MessageTemplate, sample_recipient
from .render.email import UNSUBSCRIBE_TOKEN, render_email
from .render.templates import Templates
from .tokens import DEVELOPMENT_SECRET, TEST_SUBSCRIBER_ID, unsubscribe_token


def write_preview(settings: Settings, templates: Templates, issue: Issue, out: Path) -> list[Path]:
    """Write `<out>/<lang>/email.html`, `email.txt` and `message.eml` (the whole message) for every edition,
    as the sample subscriber gets them; returns the files written."""
    written: list[Path] = []
    token = unsubscribe_token(DEVELOPMENT_SECRET.encode(), settings.list_id, TEST_SUBSCRIBER_ID)
    for edition in issue.editions:
        email = render_email(edition, settings, templates)
        message, _ = MessageTemplate(email, settings, slug=issue.slug).personalise(sample_recipient(token))
        folder = out / edition.lang
        folder.mkdir(parents=True, exist_ok=True)
        files: list[tuple[str, bytes]] = [
            ("email.html", email.html.replace(UNSUBSCRIBE_TOKEN, token).encode()),
            ("email.txt", email.text.replace(UNSUBSCRIBE_TOKEN, token).encode()),
            ("message.eml", message),
        ]
        for name, content in files:
            path = folder / name
            temporary = path.with_suffix(path.suffix + ".tmp")
            temporary.write_bytes(content)
            os.replace(temporary, path)
            written.append(path)
    return written


def serve_folder(folder: Path, *, open_browser: bool, port: int = 0) -> None:
    """Serve `folder` on 127.0.0.1 until Ctrl-C; prints the URL and opens it if asked."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        print(f"Serving {folder} at {url} (Ctrl-C to stop)", flush=True)
        if open_browser:
            threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
