"""`newsletter preview`: each edition's email as a sample subscriber gets it, and its archive page as the build
makes it, written into a folder or handed to the preview server."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from .config import Settings
from .issues import Edition, Issue
from .messages import MessageTemplate, sample_recipient
from .render.email import UNSUBSCRIBE_TOKEN, render_email
from .render.templates import Templates
from .tokens import DEVELOPMENT_SECRET, TEST_SUBSCRIBER_ID, unsubscribe_token


@dataclass(frozen=True)
class PreviewEmail:
    """One edition's email for the sample subscriber: its HTML, its text part and the whole message."""

    html: str
    text: str
    message: bytes


def sample_token(settings: Settings) -> str:
    """The sample subscriber's unsubscribe token, signed with the public development secret."""
    return unsubscribe_token(DEVELOPMENT_SECRET.encode(), settings.list_id, TEST_SUBSCRIBER_ID)


def preview_email(settings: Settings, templates: Templates, issue: Issue, edition: Edition) -> PreviewEmail:
    """`edition`'s email as the sample subscriber gets it (the unsubscribe links carry a development token)."""
    token = sample_token(settings)
    email = render_email(edition, settings, templates)
    message, _ = MessageTemplate(email, settings, slug=issue.slug).personalise(sample_recipient(token))
    return PreviewEmail(
        email.html.replace(UNSUBSCRIBE_TOKEN, token), email.text.replace(UNSUBSCRIBE_TOKEN, token), message
    )


def archive_page(
    settings: Settings, templates: Templates, issue: Issue, edition: Edition, published: dt.datetime
) -> str:
    """`edition`'s archive page as `newsletter build` renders it, published at `published`. Its language versions
    are the issue's editions that the build puts in the site (not drafts), and `edition` itself."""
    from .render.edition_pages import render_edition_page  # the build's own, so the preview cannot drift from it

    versions = [(e.lang, e.page_path) for e in issue.editions if not e.draft or e is edition]
    _, page = render_edition_page(settings, templates, edition, versions, published)
    return page


def write_preview(settings: Settings, templates: Templates, issue: Issue, out: Path) -> list[Path]:
    """Write `<out>/<lang>/email.html`, `email.txt` and `message.eml` (the whole message) for every edition,
    as the sample subscriber gets them; returns the files written."""
    written: list[Path] = []
    for edition in issue.editions:
        email = preview_email(settings, templates, issue, edition)
        folder = out / edition.lang
        folder.mkdir(parents=True, exist_ok=True)
        files: list[tuple[str, bytes]] = [
            ("email.html", email.html.encode()),
            ("email.txt", email.text.encode()),
            ("message.eml", email.message),
        ]
        for name, content in files:
            path = folder / name
            temporary = path.with_suffix(path.suffix + ".tmp")
            temporary.write_bytes(content)
            os.replace(temporary, path)
            written.append(path)
    return written
