"""Editions → Atom and RSS 2.0 bytes with feedgen: stable tag: ids, full content, deterministic dates.

Entry content is the web rendering (entry.html.j2) with absolute URLs, never the inlined email HTML.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from ..config import Settings
from ..issues import Edition

# The value of an href or src attribute that is neither absolute nor a fragment. It starts with the literal
# '="' so that re skips ahead by a fast search, and checks the attribute's name behind it (any case).
RELATIVE_URL = re.compile(
    r'="(?:(?<=\s[hH][rR][eE][fF]=")|(?<=\s[sS][rR][cC]="))(?![a-zA-Z][a-zA-Z0-9+.-]*:|#)([^"]*)"'
)


@dataclass(frozen=True)
class FeedSpec:
    """What one feed is: its title, where it lives and links to, and the language of its entries."""

    lang: str
    title: str
    subtitle: str
    feed_id: str  # tag: URI, never changes
    self_url: str
    home_url: str  # the website page the feed stands for


def published_at(edition: Edition, settings: Settings) -> dt.datetime:
    """The publication instant: the front-matter date at publish_time in the publication's zone."""
    return dt.datetime.combine(edition.date, settings.publish_time, tzinfo=settings.timezone)


def entry_id(edition: Edition, settings: Settings) -> str:
    """Permanent Atom id / RSS guid, e.g. tag:papers.example.com,2023-09-25:2023-09-25-top-ml-papers/ko."""
    return f"tag:{settings.host},{settings.id_date}:{edition.slug}/{edition.lang}"


def feed_id(settings: Settings, name: str) -> str:
    """Permanent id of a feed, e.g. tag:papers.example.com,2023-09-25:feed/ko."""
    return f"tag:{settings.host},{settings.id_date}:{name}"


def absolutize(html: str, base: str) -> str:
    """Make relative href/src values absolute against `base` (feed readers have no page URL)."""
    return RELATIVE_URL.sub(lambda m: f'="{urljoin(base, m[1])}"', html)


def _generator(
    spec: FeedSpec,
    editions: Sequence[Edition],
    settings: Settings,
    content_of: Callable[[Edition], str],
    self_type: str,
) -> Any:
    from feedgen.feed import FeedGenerator  # lxml loads only when a feed is rendered

    fg = FeedGenerator()
    fg.id(spec.feed_id)
    fg.title(spec.title)
    fg.subtitle(spec.subtitle)
    fg.author({"name": settings.author, "email": settings.from_address.addr_spec})
    fg.language(spec.lang)
    # RSS channel <link> is the last link() call: self first, the website last.
    fg.link(href=spec.self_url, rel="self", type=self_type)
    fg.link(href=spec.home_url, rel="alternate")
    fg.generator("newsletter")
    newest = [published_at(e, settings) for e in editions]
    stamp = (
        max(newest)
        if newest
        else dt.datetime.combine(
            dt.date.fromisoformat(settings.id_date), settings.publish_time, tzinfo=settings.timezone
        )
    )
    fg.updated(stamp)
    fg.lastBuildDate(stamp)
    for edition in editions:  # newest first; append keeps that order
        url = settings.url(edition.page_path)
        when = published_at(edition, settings)
        entry = fg.add_entry(order="append")
        entry.id(entry_id(edition, settings))
        entry.title(edition.title)
        entry.link(href=url, rel="alternate")
        entry.published(when)
        entry.updated(when)
        entry.summary(edition.summary or edition.title)
        entry.content(content_of(edition), type="html")
        if edition.tags:
            entry.category([{"term": tag} for tag in edition.tags])
    return fg


def build_atom(
    spec: FeedSpec, editions: Sequence[Edition], settings: Settings, content_of: Callable[[Edition], str]
) -> bytes:
    """Atom 1.0 bytes of `editions` (sorted newest first, cut to the feed size).

    `content_of` gives an edition's HTML with absolute URLs (see absolutize)."""
    return _generator(spec, editions, settings, content_of, "application/atom+xml").atom_str(pretty=True)


def build_rss(
    spec: FeedSpec, editions: Sequence[Edition], settings: Settings, content_of: Callable[[Edition], str]
) -> bytes:
    """RSS 2.0 bytes of `editions`: summary in <description>, full HTML in <content:encoded>."""
    return _generator(spec, editions, settings, content_of, "application/rss+xml").rss_str(pretty=True)
