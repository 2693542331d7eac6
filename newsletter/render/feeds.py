"""Editions → Atom and RSS 2.0 bytes with feedgen: stable tag: ids, full content, each entry dated by its issue's
publication instant.

Entry content is the web rendering (entry.html.j2) with every link absolute against the edition's page
(feed_content), never the inlined email HTML. The main feeds hold one entry per edition; a tag's feed one per
paper that carries the tag, linked to its anchor on the page.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import quote

from ..config import Settings
from ..errors import BuildError
from ..tags import carries, unique_tags
from .feed_content import FeedContent, feed_content

ID_SAFE = "/%#:@!$&'()*+,;="  # kept as they are in a tag: URI's specific part (RFC 4151, RFC 3986 pchar)


class FeedSection(Protocol):
    """What a paper's entry needs of a section (a Section, or the site builder's ListedSection)."""

    @property
    def anchor(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def tags(self) -> tuple[str, ...]: ...


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
    @property
    def path(self) -> str: ...
    @property
    def issue_tags(self) -> tuple[str, ...]: ...
    @property
    def sections(self) -> Sequence[FeedSection]: ...


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
    """A permanent id (RFC 4151), e.g. tag:papers.example.com,2023-09-25:feed/ko for a feed; what a URI cannot
    carry as it is (the Hangul of a tag's segment) percent-encoded, as validators and readers expect."""
    return f"tag:{settings.host},{settings.id_date}:{quote(name, safe=ID_SAFE)}"


def entry_id(edition: FeedEdition, settings: Settings) -> str:
    """Atom id / RSS guid of an edition, e.g. tag:papers.example.com,2023-09-25:2023-09-25-top-ml-papers/ko."""
    return tag_uri(settings, f"{edition.slug}/{edition.lang}")


def paper_id(edition: FeedEdition, anchor: str, settings: Settings) -> str:
    """Atom id of a paper's entry: its edition's id and the paper's anchor, e.g.
    tag:papers.example.com,2023-09-25:2023-09-25-top-ml-papers/ko#the-reversal-curse (RFC 4151 allows the
    fragment). It survives a change of base_url, as every id does; it changes only with the paper's heading."""
    return f"{entry_id(edition, settings)}#{quote(anchor, safe='-_.~')}"


E = TypeVar("E", bound=FeedEdition)


@dataclass(frozen=True)
class Paper(Generic[E]):
    """One entry of a tag's feed: a paper (section) of an edition, or the whole edition when it has none."""

    edition: E
    section: FeedSection | None
    position: int = 0  # of the section in its edition: the entry is dated that many seconds before its issue


def paper_time(published: dt.datetime, position: int) -> dt.datetime:
    """When a paper's entry is dated: its issue's instant, less a second per paper before it on the page, so the
    papers of one issue have times of their own (the W3C validator's DuplicateUpdated) and readers that sort by
    time keep the page's order."""
    return published - dt.timedelta(seconds=position)


def tagged_papers(editions: Sequence[E], tag: str, size: int) -> list[Paper[E]]:
    """The first `size` papers that carry `tag` in `editions` (newest first), in page order within each: a
    paper carries its own `#tags` and its issue's front-matter tags. An issue without papers is one entry."""
    papers: list[Paper[E]] = []
    for edition in editions:
        if len(papers) >= size:
            break
        if not edition.sections:
            papers.append(Paper(edition, None))
            continue
        everyone = carries(edition.issue_tags, tag)
        papers.extend(Paper(edition, s, n) for n, s in enumerate(edition.sections) if everyone or carries(s.tags, tag))
    return papers[:size]


class FeedEntries(Generic[E]):
    """One feedgen entry per edition and per paper, made on first use and shared by every feed that carries it
    (the main feeds, each tag's feed): an entry's data does not depend on the feed.

    `content_of` gives an edition's article with its site links absolute (links relative to its page, `#anchor`
    among them, are resolved here); `published_of` its issue's publication instant (issues.publication_instant),
    which is each entry's published and updated time."""

    def __init__(
        self, settings: Settings, content_of: Callable[[E], str], published_of: Callable[[E], dt.datetime]
    ) -> None:
        self.settings = settings
        self.content_of = content_of
        self.published_of = published_of
        self.made: dict[str, Any] = {}  # page path (and '#anchor' for a paper) → entry
        self.contents: dict[str, FeedContent] = {}  # page path → the edition's content

    def content(self, edition: E) -> FeedContent:
        """The edition's content with absolute links, and each of its papers'."""
        found = self.contents.get(edition.page_path)
        if found is None:
            anchors = [section.anchor for section in edition.sections]
            found = feed_content(self.content_of(edition), self.settings.url(edition.page_path), anchors)
            self.contents[edition.page_path] = found
        return found

    def __call__(self, edition: E) -> Any:
        entry = self.made.get(edition.page_path)
        if entry is None:
            entry = self._entry(
                edition, entry_id(edition, self.settings), edition.title, "", self.published_of(edition)
            )
            entry.summary(edition.summary or edition.title)
            entry.content(self.content(edition).whole, type="html")
            if edition.tags:
                entry.category([{"term": tag} for tag in edition.tags])
            self.made[edition.page_path] = entry
        return entry

    def paper(self, paper: Paper[E]) -> Any:
        """The entry of one paper: its section of the page, linked to its anchor there."""
        edition, section = paper.edition, paper.section
        if section is None:
            return self(edition)
        key = f"{edition.page_path}#{section.anchor}"
        entry = self.made.get(key)
        if entry is None:
            html = self.content(edition).papers.get(section.anchor)
            if html is None:
                raise BuildError(
                    edition.path,
                    f"paper '{section.title}' has no element with id '{section.anchor}' in entry.html.j2's output",
                    'keep id="{{ section.anchor }}" on each paper: its tag feeds and links need it',
                )
            fragment = "#" + quote(section.anchor, safe="-_.~")
            when = paper_time(self.published_of(edition), paper.position)
            entry = self._entry(
                edition, paper_id(edition, section.anchor, self.settings), section.title, fragment, when
            )
            entry.summary(edition.title)  # which issue the paper is from
            entry.content(html, type="html")
            tags = unique_tags((*section.tags, *edition.issue_tags)).values()
            if tags:
                entry.category([{"term": tag} for tag in tags])
            self.made[key] = entry
        return entry

    def _entry(self, edition: E, id_: str, title: str, fragment: str, when: dt.datetime) -> Any:
        from .feed_entry import SharedFeedEntry

        entry = SharedFeedEntry()
        entry.id(id_)
        entry.title(title)
        entry.link(href=self.settings.url(edition.page_path) + fragment, rel="alternate")
        entry.published(when)
        entry.updated(when)
        return entry


def _generator(spec: FeedSpec, settings: Settings, made: Sequence[tuple[Any, dt.datetime]], self_type: str) -> Any:
    """A FeedGenerator for `spec` holding the entries of `made` ((entry, its time), newest first)."""
    from feedgen.feed import FeedGenerator  # lxml loads only when a feed is rendered

    fg = FeedGenerator()
    fg.id(spec.feed_id)
    fg.title(spec.title)
    fg.subtitle(spec.subtitle)
    fg.author({"name": settings.author, "email": settings.from_address.addr_spec})
    fg.language(spec.lang)
    # RSS channel <link> is the last link() call: self first, the website last. The web app's sign-up page, on
    # app_url, is Atom's rel="related" (feedgen writes only the self link of the others into RSS).
    fg.link(href=spec.self_url, rel="self", type=self_type)
    fg.link(href=settings.app(f"subscribe?lang={spec.lang}"), rel="related", type="text/html")
    fg.link(href=spec.home_url, rel="alternate")
    fg.generator("newsletter")
    stamp = (
        max(when for _, when in made)
        if made
        else dt.datetime.combine(
            dt.date.fromisoformat(settings.id_date), settings.publish_time, tzinfo=settings.timezone
        )
    )
    fg.updated(stamp)
    fg.lastBuildDate(stamp)
    for entry, _ in made:  # newest first; append keeps that order
        fg.add_entry(entry, order="append")
    return fg


def _editions(editions: Sequence[E], entries: FeedEntries[E]) -> list[tuple[Any, dt.datetime]]:
    return [(entries(e), entries.published_of(e)) for e in editions]


def build_atom(spec: FeedSpec, editions: Sequence[E], entries: FeedEntries[E]) -> bytes:
    """Atom 1.0 bytes of `editions` (sorted newest first, cut to the feed size)."""
    made = _editions(editions, entries)
    return _generator(spec, entries.settings, made, "application/atom+xml").atom_str(pretty=True)


def build_rss(spec: FeedSpec, editions: Sequence[E], entries: FeedEntries[E]) -> bytes:
    """RSS 2.0 bytes of `editions`: summary in <description>, full HTML in <content:encoded>."""
    made = _editions(editions, entries)
    return _generator(spec, entries.settings, made, "application/rss+xml").rss_str(pretty=True)


def build_paper_atom(spec: FeedSpec, papers: Sequence[Paper[E]], entries: FeedEntries[E]) -> bytes:
    """Atom 1.0 bytes of a tag's feed: one entry per paper of `papers` (tagged_papers)."""
    made = [(entries.paper(p), paper_time(entries.published_of(p.edition), p.position)) for p in papers]
    return _generator(spec, entries.settings, made, "application/atom+xml").atom_str(pretty=True)
