"""Listings: a language's index and each tag's page list editions, newest first, paginated with the pages
numbered from the oldest so that old page URLs and contents stay stable as issues are added."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ..tags import tag_key
from .build_cache import ListedEdition, ListedSection
from .output_plan import output_key
from .page_context import Fields, PageContexts
from .templates import format_date
from .urls import lang_prefix, relative_url

if TYPE_CHECKING:
    from .site_build import SiteBuild


class ListingEntry(NamedTuple):
    """One edition on an index or tag page, ready to show."""

    edition: ListedEdition
    url: str  # its page, relative to the listing page
    date_iso: str
    date_text: str  # in the listing's language (strings.toml date_format)
    sections: tuple[ListedSection, ...]  # on a tag page, only those that carry the tag


class ListingEntries:
    """Editions as listings show them, with what each costs computed once a build: each edition appears in many
    listings, and tag pages ask tens of thousands of times which sections carry their tag."""

    def __init__(self, contexts: PageContexts) -> None:
        self.contexts = contexts
        self.basics: dict[tuple[str, int], tuple[str, str, str]] = {}  # (page path, depth) → url, dates
        self.tag_keys: dict[str, str] = {}  # tag → tags.tag_key(tag)
        self.section_keys: dict[tuple[str, ...], frozenset[str]] = {}  # a section's tags → their keys

    def entry(self, edition: ListedEdition, from_dir: str, tag: str | None) -> ListingEntry:
        """`edition` as a listing at site folder `from_dir` shows it; on a tag page only the sections that carry
        the tag."""
        depth = from_dir.count("/")
        shown = self.basics.get((edition.page_path, depth))
        if shown is None:
            strings = self.contexts.strings(edition.lang)
            shown = (
                relative_url(edition.page_path, from_dir),
                edition.date.isoformat(),
                format_date(edition.date, strings),
            )
            self.basics[(edition.page_path, depth)] = shown
        sections = self.sections_with(edition, tag) if tag else edition.sections
        return ListingEntry(edition, *shown, sections)

    def sections_with(self, edition: ListedEdition, tag: str) -> tuple[ListedSection, ...]:
        """The sections of `edition` whose tags hold `tag` in any spelling (tags.carries)."""
        key = self.tag_keys.get(tag)
        if key is None:
            key = self.tag_keys[tag] = tag_key(tag)
        found = []
        for section in edition.sections:
            keys = self.section_keys.get(section.tags)
            if keys is None:
                keys = self.section_keys[section.tags] = frozenset(map(tag_key, section.tags))
            if key in keys:
                found.append(section)
        return tuple(found)


def plan_index_pages(build: SiteBuild, lang: str) -> None:
    """`lang`'s index: its home page and the numbered pages of its older editions."""
    s = build.settings
    index_versions = [(code, lang_prefix(code, s)) for code in build.listed_languages]
    title = s.for_language(lang).title
    editions = build.by_lang[lang]
    plan_listing(build, lang, lang_prefix(lang, s), title, "index.html.j2", editions, index_versions, "the index")


def plan_listing(
    build: SiteBuild,
    lang: str,
    base: str,
    title: str,
    template: str,
    editions: list[ListedEdition],
    versions: Sequence[tuple[str, str]],
    source: str,
    **extra: Any,
) -> None:
    """A list of editions (newest first). Its folder `base` shows the newest page_size of them; when there
    are more, base/page/1/ … base/page/N/ hold them all, numbered from the oldest, page_size a page (the
    newest page holds the rest). So a new issue changes the index, the newest page and its neighbour's
    link, and every older page keeps its URL and its content (nothing on it depends on the page count)."""
    size = build.settings.page_size
    count = -(-len(editions) // size) if len(editions) > size else 0  # numbered pages
    oldest_first = editions[::-1]
    older = f"{base}page/{(len(editions) - size - 1) // size + 1}/" if count else None
    pages: list[tuple[str, int | None, list[ListedEdition], str | None, str | None]] = [
        (base, None, editions[:size], None, older)
    ]
    for n in range(1, count + 1):
        newer = f"{base}page/{n + 1}/" if n < count else base
        chunk = oldest_first[(n - 1) * size : n * size][::-1]
        pages.append((f"{base}page/{n}/", n, chunk, newer, f"{base}page/{n - 1}/" if n > 1 else None))
    for path, number, chunk, previous, following in pages:
        pagination = Fields(number=number, previous=previous, next=following)
        key = output_key(
            path,
            title,
            number,
            previous,
            following,
            *(f"{e.source_hash}:{e.page_path}" for e in chunk),
            *(versions if number is None else ()),
            *sorted(extra.items()),
        )
        page_versions = versions if number is None else [(lang, path)]

        def context(
            chunk: list[ListedEdition] = chunk,
            pagination: Fields = pagination,
            path: str = path,
            page_versions: Sequence[tuple[str, str]] = page_versions,
        ) -> dict[str, Any]:
            wording = build.settings.for_language(lang)
            base_context = build.contexts.page(
                lang, path, title, wording.description, page_versions, tag=extra.get("tag", "")
            )
            entries = [build.listing_entries.entry(e, path, extra.get("tag")) for e in chunk]
            return {**base_context, **extra, "editions": chunk, "entries": entries, "pagination": pagination}

        build.page(path + "index.html", key, template, context, source)
