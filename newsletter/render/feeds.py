"""Editions → Atom and RSS 2.0 bytes with feedgen: stable tag: ids, full content, each entry dated by its issue's
publication instant.

Entry content is the web rendering (entry.html.j2) with absolute URLs, never the inlined email HTML.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urljoin

from ..config import Settings

# The value of an href or src attribute that is neither absolute nor a fragment. It starts with the literal
# '="' so that re skips ahead by a fast search, and checks the attribute's name behind it (any case).
RELATIVE_URL = re.compile(
    r'="(?:(?<=\s[hH][rR][eE][fF]=")|(?<=\s[sS][rR][cC]="))(?![a-zA-Z][a-zA-Z0-9+.-]*:|#)([^"]*)"'
)


class FeedEdition(Protocol):
    """What a feed needs of an edition (an Edition, or the site builder's lighter record of one)."""

    @property
    def slug(self) -> str: ...
    @property
    def lang(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def summary(self) -> str: ...
    @property
    def tags(self) -> tuple[str, ...]: ...
    @property
    def page_path(self) -> str: ...


@dataclass(frozen=True)
class FeedSpec:
    """What one feed is: its title, where it lives and links to, and the language of its entries."""

    lang: str
    title: str
    subtitle: str
    feed_id: str  # tag: URI, never changes
    self_url: str
    home_url: str  # the website page the feed stands for


def tag_uri(settings: Settings, name: str) -> str:
    """A permanent id (RFC 4151), e.g. tag:papers.example.com,2023-09-25:feed/ko for a feed."""
    return f"tag:{settings.host},{settings.id_date}:{name}"


def entry_id(edition: FeedEdition, settings: Settings) -> str:
    """Atom id / RSS guid of an edition, e.g. tag:papers.example.com,2023-09-25:2023-09-25-top-ml-papers/ko."""
    return tag_uri(settings, f"{edition.slug}/{edition.lang}")


def absolutize(html: str, base: str) -> str:
    """Make relative href/src values absolute against `base` (feed readers have no page URL)."""
    return RELATIVE_URL.sub(lambda m: f'="{urljoin(base, m[1])}"', html)


E = TypeVar("E", bound=FeedEdition)


class FeedEntries(Generic[E]):
    """One feedgen entry per edition, made on first use and shared by every feed that carries the edition
    (the main feeds and each of its tags' feeds): an entry's data does not depend on the feed.

    `published_of` gives an edition's publication instant (its issue's: issues.publication_instant), which is
    the entry's published and updated time."""

    def __init__(
        self, settings: Settings, content_of: Callable[[E], str], published_of: Callable[[E], dt.datetime]
    ) -> None:
        self.settings = settings
        self.content_of = content_of
        self.published_of = published_of
        self.made: dict[str, Any] = {}

    def __call__(self, edition: E) -> Any:
        entry = self.made.get(edition.page_path)
        if entry is None:
            from .feed_entry import SharedFeedEntry

            settings = self.settings
            when = self.published_of(edition)
            entry = SharedFeedEntry()
            entry.id(entry_id(edition, settings))
            entry.title(edition.title)
            entry.link(href=settings.url(edition.page_path), rel="alternate")
            entry.published(when)
            entry.updated(when)
            entry.summary(edition.summary or edition.title)
            entry.content(self.content_of(edition), type="html")
            if edition.tags:
                entry.category([{"term": tag} for tag in edition.tags])
            self.made[edition.page_path] = entry
        return entry


def _generator(spec: FeedSpec, editions: Sequence[E], entries: FeedEntries[E], self_type: str) -> Any:
    from feedgen.feed import FeedGenerator  # lxml loads only when a feed is rendered

    settings = entries.settings
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
    newest = [entries.published_of(e) for e in editions]
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
        fg.add_entry(entries(edition), order="append")
    return fg


def build_atom(spec: FeedSpec, editions: Sequence[E], entries: FeedEntries[E]) -> bytes:
    """Atom 1.0 bytes of `editions` (sorted newest first, cut to the feed size)."""
    return _generator(spec, editions, entries, "application/atom+xml").atom_str(pretty=True)


def build_rss(spec: FeedSpec, editions: Sequence[E], entries: FeedEntries[E]) -> bytes:
    """RSS 2.0 bytes of `editions`: summary in <description>, full HTML in <content:encoded>."""
    return _generator(spec, editions, entries, "application/rss+xml").rss_str(pretty=True)
