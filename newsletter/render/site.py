"""Build the archive site: edition pages, indexes, tag pages, feeds, sitemap and 404.

Outputs are rendered aside and swapped in only when all of them rendered, so a failed build leaves the
previous site untouched. An issue whose publication instant (issues.publication_instant) is after `now` is
left out of every output, as drafts are, unless the build is asked for `future` issues too. A cache
(`.cache/site/`) keyed by content hash makes a rebuild re-parse only changed files and re-render only outputs
whose inputs changed; listings read light records of each edition and load a full one only to render it. The
cache keeps the issues left out, so the first build after an issue's time renders its pages and parses nothing.
No output path may be written twice.
"""

from __future__ import annotations

import datetime as dt
import functools
import gc
import hashlib
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from markupsafe import Markup

from ..config import Settings
from ..errors import BuildError
from ..issues import (
    Edition,
    Issue,
    agreed_publish_at,
    edition_page_path,
    find_issue_files,
    group_by_issue,
    publication_instant,
    split_file_name,
)
from ..tags import TagClash, TagNames, tag_key
from .build_cache import BuildCache, ListedEdition, ListedSection, Prerendered, ScanResult, scan_issues
from .feeds import FeedEntries, FeedSpec, Paper, build_atom, build_paper_atom, build_rss, tag_uri, tagged_papers
from .parallel import MADE_DIRS, RenderJob, render_all, write_output
from .search import SEARCH_FOLDER, EditionPage, SearchResult, index_site, save_key
from .sitemap import build_sitemap
from .templates import Templates, format_date, load_templates
from .urls import lang_prefix, relative_url, resolve_root, rooted_url, tag_path, tag_slug, tag_versions


class ListingEntry(NamedTuple):
    """One edition on an index or tag page, ready to show."""

    edition: ListedEdition
    url: str  # its page, relative to the listing page
    date_iso: str
    date_text: str  # in the listing's language (strings.toml date_format)
    sections: tuple[ListedSection, ...]  # on a tag page, only those that carry the tag


@dataclass(frozen=True)
class BuildResult:
    """What a build did."""

    out: Path
    issues: int
    files: int
    pages_rendered: int
    pages_reused: int
    seconds: float
    not_yet_due: tuple[tuple[str, dt.datetime], ...] = ()  # (slug, instant) of issues whose time is after `now`
    future: bool = False  # whether those are in the site (build --future) or left out
    search: SearchResult | None = None  # the search index's build (None: search = false)


def _key(*parts: object) -> str:
    """A short digest of everything an output depends on."""
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=16).hexdigest()


class _SiteBuilder:
    """Plans every output of one build: reuse it from the site on disk, or a job to render it."""

    def __init__(
        self,
        settings: Settings,
        templates: Templates,
        cache: BuildCache,
        previous: Path | None,
        staging: Path,
        config_digest: str,
        now: dt.datetime,
        future: bool = False,
    ) -> None:
        self.settings = settings
        self.now = now
        self.future = future
        self.templates = templates
        self.cache = cache
        self.issues: list[list[ListedEdition]] = []
        self.instants: dict[str, dt.datetime] = {}  # slug → publication instant of each issue in the site
        self.fresh: dict[str, Edition] = {}  # parse key → full edition, parsed in this build or loaded
        self.assumed_versions: dict[str, list[tuple[str, str]]] = {}
        self.prerendered: dict[str, str] = {}  # page path → key, rendered while parsing
        self.moved: list[str] = []  # paths rendered into staging that this build uses
        self.staging = staging
        self.previous = previous
        self.previous_prefix = f"{previous}/" if previous else ""
        self.salt = (config_digest, templates.digest)
        self.new_keys: dict[str, str] = {}
        self.sources: dict[str, str] = {}
        self.rendered = 0
        self.reused = 0
        self.articles: dict[str, str] = {}  # page path → article of a page rendered in this process
        self.entry_basics: dict[tuple[str, int], tuple[str, str, str]] = {}  # (page path, depth) → url, dates
        self.feed_entries = FeedEntries(settings, self.entry_content, self.published_of)
        self.by_tag: dict[str, dict[str, list[ListedEdition]]] = {}  # language → tag → editions, newest first
        self.jobs: list[RenderJob] = []
        self.edition_pages: list[ListedEdition] = []  # every edition with a page in this site
        self.tag_keys: dict[str, str] = {}  # tag → tags.tag_key(tag), for sections_with
        self.section_keys: dict[tuple[str, ...], frozenset[str]] = {}  # a section's tags → their keys
        self.listed_languages: list[str] = []  # the languages with an index and feeds: editions, or the default

    def assume_versions(self, paths: Iterable[Path]) -> None:
        """Guess each issue's language versions from the file names, so pages can render while parsing."""
        found: dict[str, dict[str, str]] = {}
        for path in paths:
            try:
                slug, lang = split_file_name(path.name, self.settings)
            except ValueError:
                continue
            found.setdefault(slug, {})[lang] = edition_page_path(slug, lang, lang == self.settings.language)
        order = self.settings.all_languages
        self.assumed_versions = {
            slug: [(lang, langs[lang]) for lang in order if lang in langs] for slug, langs in found.items()
        }

    def prerender(self, edition: Edition) -> Prerendered | None:
        """Render `edition`'s page into staging (in a parse worker); the plan keeps it if its key holds."""
        versions = self.assumed_versions.get(edition.slug)
        if edition.draft or not versions:
            return None
        # The edition's own instant; its issue's is the same unless only another edition gives publish_at, and
        # then the key differs and the plan renders the page again (or leaves it out, see _drop_unused).
        published = _instant(edition.slug, edition.date, edition.publish_at, self.settings)
        if published > self.now and not self.future:
            return None
        path = edition.page_path + "index.html"
        key = _key(*self.salt, self.edition_key(edition.source_hash, versions, published))  # as output() makes it
        article, page = self.render_edition_page(edition, versions, published)
        write_output(self.staging / path, page)
        return Prerendered(path, key, self.article_key(edition.source_hash, edition.page_path), article)

    def plan(self, issues: list[list[ListedEdition]], instants: dict[str, dt.datetime], scanned: ScanResult) -> None:
        """Plan every output of `issues` (newest first), published at `instants` (by slug)."""
        self.issues = issues
        self.instants = instants
        self.fresh = dict(scanned.fresh)
        self.prerendered = scanned.pages
        self.build()

    def full(self, listed: ListedEdition) -> Edition:
        """The full edition behind a record: parsed in this build, or loaded from the cache."""
        edition = self.fresh.get(listed.key)
        if edition is None:
            edition = self.fresh[listed.key] = self.cache.full(listed.key)
        return edition

    def prepare_listings(self) -> None:
        """Load what the listings and feeds need, so that forked render workers inherit it instead of each
        loading it (the parent does this while parse workers work)."""
        self.templates.preload("index.html.j2", "tag.html.j2", "tags.html.j2", "404.html.j2")
        import feedgen.feed  # noqa: F401  (lxml: tens of milliseconds each render worker would spend)

    # context ---------------------------------------------------------------

    def site_context(self, lang: str) -> dict[str, Any]:
        s = self.settings
        prefix = lang_prefix(lang, s)
        wording = s.for_language(lang)
        return {
            "title": wording.title,
            "description": wording.description,
            "base_url": s.base_url,
            "postal_address": s.postal_address,
            "is_default": lang == s.language,
            "home": prefix,
            "tags_index": f"{prefix}tags/",
            "atom_path": f"{prefix}feed.xml",
            "rss_path": f"{prefix}rss.xml",
            "atom_url": s.url(f"{prefix}feed.xml"),
            "rss_url": s.url(f"{prefix}rss.xml"),
            "og_image": s.url("static/og-image.png"),
            "search_path": f"{prefix}search/" if s.search else "",
            "subscribe_url": s.app("subscribe"),  # the web app's sign-up, on app_url (may be another host)
            "languages": [(code, self.strings(code).get("language_name", code)) for code in s.all_languages],
        }

    def page_context(
        self,
        lang: str,
        path: str,
        title: str,
        description: str,
        versions: Sequence[tuple[str, str]],
        og_type: str = "website",
        published: str = "",
        tag: str = "",
    ) -> dict[str, Any]:
        """Context for the page at site folder `path`; `versions` are (lang, path) of each language version."""
        s = self.settings
        t = self.templates.strings_for(lang, s.language)
        others = [(v_lang, v_path) for v_lang, v_path in versions if v_lang != lang]
        default_path = next((p for v_lang, p in versions if v_lang == s.language), None)
        translated = len(versions) > 1
        page = {
            "lang": lang,
            "title": title,
            "description": description,
            "canonical": s.url(path),
            "alternates": [{"lang": v_lang, "href": s.url(v_path)} for v_lang, v_path in versions]
            if translated
            else [],
            "x_default": s.url(default_path) if translated and default_path is not None else "",
            "og_type": og_type,
            "og_locale_alternates": [self.strings(v_lang).get("og_locale", v_lang) for v_lang, _ in others],
            "published": published,
            "switch": [
                {"lang": v_lang, "path": v_path, "name": self.strings(v_lang).get("language_name", v_lang)}
                for v_lang, v_path in others
            ],
            "tag": tag,
            "tag_feed": s.url(tag_path(tag, lang, s) + "feed.xml") if tag else "",
        }
        folder = path if path.endswith("/") or not path else path.rsplit("/", 1)[0] + "/" if "/" in path else ""
        return {
            "site": self.site_context(lang),
            "page": page,
            "t": t,
            "url": functools.partial(relative_url, from_dir=folder),
            "tag_path": functools.partial(tag_path, lang=lang, settings=s),
        }

    def strings(self, lang: str) -> Any:
        return self.templates.strings_for(lang, self.settings.language)

    # output with reuse -----------------------------------------------------------

    def output(self, path: str, key: str, make: Callable[[], str | bytes], source: str) -> None:
        """Plan `path`: take it from staging when a parse worker rendered it with the same key (all it depends
        on), keep it when the site on disk has it with that key, else queue a job to render it."""
        if path in self.sources:
            raise BuildError(
                path, f"would be written twice: by {self.sources[path]} and by {source}", "rename one of them"
            )
        self.sources[path] = source
        key = _key(*self.salt, key)
        self.new_keys[path] = key
        if self.prerendered.get(path) == key:  # rendered into staging while parsing, from the same inputs
            self.moved.append(path)
            self.rendered += 1
            return
        if (
            self.previous is not None
            and self.cache.pages.get(path) == key
            and os.path.isfile(self.previous_prefix + path)
        ):
            self.reused += 1
            return
        self.jobs.append(RenderJob(path, make))
        self.moved.append(path)
        self.rendered += 1

    def data(self, path: str, data: str | bytes, source: str) -> None:
        """An output whose content is known now (its key is its hash)."""
        raw = data.encode("utf-8") if isinstance(data, str) else data
        self.output(path, hashlib.blake2b(raw, digest_size=16).hexdigest(), lambda: raw, source)

    def page(self, path: str, key: str, template: str, context: Callable[[], dict[str, Any]], source: str) -> None:
        self.output(path, key, lambda: self.templates.render(template, **context()), source)

    # outputs -----------------------------------------------------------------

    @staticmethod
    def edition_key(source_hash: str, versions: Sequence[tuple[str, str]], published: dt.datetime) -> str:
        return _key(source_hash, *versions, published.isoformat())

    def published_of(self, edition: ListedEdition) -> dt.datetime:
        """The publication instant of `edition`'s issue."""
        return self.instants[edition.slug]

    def edition_context(
        self, edition: Edition, versions: Sequence[tuple[str, str]], published: dt.datetime
    ) -> dict[str, Any]:
        return self.page_context(
            edition.lang,
            edition.page_path,
            edition.title,
            edition.summary or edition.title,
            versions,
            og_type="article",
            published=published.isoformat(),
        )

    def render_article(self, edition: Edition, context: dict[str, Any]) -> str:
        """entry.html.j2 for an edition, its links marked as from the site root (urls.rooted_url): the page
        makes them relative to itself and the feeds absolute, so one rendering serves both."""
        return self.templates.render("entry.html.j2", **{**context, "url": rooted_url}, edition=edition)

    def render_edition_page(
        self, edition: Edition, versions: Sequence[tuple[str, str]], published: dt.datetime
    ) -> tuple[str, str]:
        """(the article, the whole page) of an edition."""
        context = self.edition_context(edition, versions, published)
        article = self.render_article(edition, context)
        on_page = resolve_root(article, "../" * edition.page_path.count("/"))
        return article, self.templates.render("page.html.j2", **context, edition=edition, article=Markup(on_page))

    def edition_page(self, issue: list[ListedEdition], listed: ListedEdition) -> None:
        versions = [(e.lang, e.page_path) for e in issue]
        key = self.edition_key(listed.source_hash, versions, self.published_of(listed))
        self.edition_pages.append(listed)
        self.output(listed.page_path + "index.html", key, lambda: self.edition_page_html(listed, versions), listed.path)

    def edition_page_html(self, listed: ListedEdition, versions: Sequence[tuple[str, str]]) -> str:
        article, page = self.render_edition_page(self.full(listed), versions, self.published_of(listed))
        self.articles[listed.page_path] = article  # for a feed this process may render
        return page

    def article_key(self, source_hash: str, page_path: str) -> str:
        """What an edition's article depends on: its source and page, the templates and the settings."""
        return _key(*self.salt, "article", source_hash, page_path)

    def entry_content(self, listed: ListedEdition) -> str:
        """The edition's content for feeds: its article (from this process' rendering of its page, else from
        the cache, else rendered now) with every link absolute, the editor's relative ones too. FeedEntries
        asks once per edition and process."""
        article = self.articles.pop(listed.page_path, None)
        if article is None:
            article = self.cache.article(listed.key, self.article_key(listed.source_hash, listed.page_path))
        if article is None:
            edition = self.full(listed)
            context = self.edition_context(edition, [(edition.lang, edition.page_path)], self.published_of(listed))
            article = self.render_article(edition, context)
        return resolve_root(article, self.settings.url(""))  # FeedEntries resolves the rest against the page

    def feed(
        self, path: str, spec: FeedSpec, editions: list[ListedEdition], build: Callable[..., bytes], source: str
    ) -> None:
        key = _key(path, spec, *(f"{e.source_hash}:{self.published_of(e).isoformat()}" for e in editions))
        self.output(path, key, lambda: build(spec, editions, self.feed_entries), source)

    def tag_feed(self, path: str, spec: FeedSpec, papers: list[Paper[ListedEdition]], source: str) -> None:
        """A tag's Atom feed: one entry per paper that carries the tag (feeds.tagged_papers)."""
        key = _key(
            path,
            spec,
            *(
                f"{p.edition.source_hash}:{self.published_of(p.edition).isoformat()}:{p.section and p.section.anchor}"
                for p in papers
            ),
        )
        self.output(path, key, lambda: build_paper_atom(spec, papers, self.feed_entries), source)

    def listing(
        self,
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
        size = self.settings.page_size
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
            pagination = {"number": number, "previous": previous, "next": following}
            key = _key(
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
                pagination: dict[str, Any] = pagination,
                path: str = path,
                page_versions: Sequence[tuple[str, str]] = page_versions,
            ) -> dict[str, Any]:
                wording = self.settings.for_language(lang)
                base_context = self.page_context(
                    lang, path, title, wording.description, page_versions, tag=extra.get("tag", "")
                )
                entries = [self.listing_entry(e, path, extra.get("tag")) for e in chunk]
                return {**base_context, **extra, "editions": chunk, "entries": entries, "pagination": pagination}

            self.page(path + "index.html", key, template, context, source)

    def listing_entry(self, edition: ListedEdition, from_dir: str, tag: str | None) -> ListingEntry:
        """An edition as a listing at site folder `from_dir` shows it: with everything the template would
        otherwise compute per entry (each edition appears in many listings), and on a tag page only the
        sections that carry the tag."""
        depth = from_dir.count("/")
        shown = self.entry_basics.get((edition.page_path, depth))
        if shown is None:
            strings = self.strings(edition.lang)
            shown = (
                relative_url(edition.page_path, from_dir),
                edition.date.isoformat(),
                format_date(edition.date, strings),
            )
            self.entry_basics[(edition.page_path, depth)] = shown
        sections = self.sections_with(edition, tag) if tag else edition.sections
        return ListingEntry(edition, *shown, sections)

    def sections_with(self, edition: ListedEdition, tag: str) -> tuple[ListedSection, ...]:
        """The sections of `edition` whose tags hold `tag` in any spelling (tags.carries), with each tag's key
        and each distinct tuple of section tags' keys computed once a build: tag pages ask tens of thousands
        of times, mostly of sections without the tag."""
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

    def language_outputs(
        self, lang: str, editions: list[ListedEdition], by_tag: dict[str, list[ListedEdition]]
    ) -> None:
        s = self.settings
        prefix = lang_prefix(lang, s)
        wording = s.for_language(lang)
        t = self.strings(lang)
        index_versions = [(code, lang_prefix(code, s)) for code in self.listed_languages]
        self.listing(lang, prefix, wording.title, "index.html.j2", editions, index_versions, "the index")

        newest = editions[: s.feed_size]
        for name, id_name, build in (("feed.xml", "feed", build_atom), ("rss.xml", "rss", build_rss)):
            spec = self.feed_spec(lang, wording.title, f"{id_name}/{lang}", prefix, name)
            self.feed(prefix + name, spec, newest, build, f"the {name} feed")

        if s.search:
            search_versions = [(code, f"{lang_prefix(code, s)}search/") for code in self.listed_languages]
            search_title = t.get("search_title", "Search")
            self.page(
                f"{prefix}search/index.html",
                _key(*search_versions, search_title),
                "search.html.j2",
                lambda: self.page_context(lang, f"{prefix}search/", search_title, wording.description, search_versions),
                "the search page",
            )

        counts = sorted(((tag, len(items)) for tag, items in by_tag.items()), key=lambda x: (-x[1], x[0]))
        tags_versions = [(code, f"{lang_prefix(code, s)}tags/") for code in self.listed_languages]
        all_tags = t.get("all_tags", "Tags")
        self.page(
            f"{prefix}tags/index.html",
            _key(*counts, *tags_versions),
            "tags.html.j2",
            lambda: {
                **self.page_context(lang, f"{prefix}tags/", all_tags, wording.description, tags_versions),
                "tags": counts,
            },
            "the tag index",
        )
        for tag, tagged in by_tag.items():
            path = tag_path(tag, lang, s)
            title = t.get("issues_tagged", "{tag}").format(tag=tag)
            versions = tag_versions(tag, self.by_tag, s)
            self.listing(lang, path, title, "tag.html.j2", tagged, versions, f"tag '{tag}'", tag=tag)
            feed_title = t.get("tag_feed_title", "{title}: {tag}").format(title=wording.title, tag=tag)
            spec = self.feed_spec(lang, feed_title, f"tags/{tag_slug(tag)}/{lang}", path, "feed.xml")
            self.tag_feed(path + "feed.xml", spec, tagged_papers(tagged, tag, s.feed_size), f"tag '{tag}'")

    def feed_spec(self, lang: str, title: str, id_name: str, folder: str, name: str) -> FeedSpec:
        """The feed `name` in site folder `folder`, standing for the page there."""
        s = self.settings
        return FeedSpec(
            lang, title, s.for_language(lang).description, tag_uri(s, id_name), s.url(folder + name), s.url(folder)
        )

    def build(self) -> None:
        s = self.settings
        by_lang: dict[str, list[ListedEdition]] = {code: [] for code in s.all_languages}
        for issue in self.issues:
            for edition in issue:
                by_lang[edition.lang].append(edition)
                self.edition_page(issue, edition)
        names = _tag_names(self.issues)
        self.by_tag = {code: _group_by_tag(editions, names) for code, editions in by_lang.items()}
        # A language with no edition yet gets no index, feeds or tag index, and no page links to one; the
        # default language's index is the site's home page, so it is there from the start.
        self.listed_languages = [code for code, editions in by_lang.items() if editions or code == s.language]
        for lang in self.listed_languages:
            self.language_outputs(lang, by_lang[lang], self.by_tag[lang])
        t = self.strings(s.language)
        context = self.page_context(
            s.language, "404.html", t.get("not_found_title", "404"), s.description, [(s.language, "404.html")]
        )
        self.data("404.html", self.templates.render("404.html.j2", **context), "the 404 page")
        listed = {code: by_lang[code] for code in self.listed_languages}
        self.data("sitemap.xml", build_sitemap(s, self.issues, listed, self.by_tag), "the sitemap")
        self.data("robots.txt", f"User-agent: *\nAllow: /\nSitemap: {s.url('sitemap.xml')}\n", "robots.txt")
        for name, file, where in self.templates.static_files():  # the theme's, each overridden by templates/static/
            if file.is_file():
                self.data(f"static/{name}", file.read_bytes(), where)


def _tag_names(issues: list[list[ListedEdition]]) -> TagNames:
    """Every tag's displayed form: its spelling in the oldest issue that has it (the default language's edition
    first), so a new issue never renames a tag page. Two tags that would share a page are refused."""
    names = TagNames()
    try:
        for issue in reversed(issues):
            for edition in issue:
                for tag in edition.tags:
                    names.add(tag, edition.path)
    except TagClash as clash:
        raise BuildError(
            clash.other_where, clash.describe(), "spell them one way, or tell them apart by a letter or digit"
        ) from None
    return names


def _group_by_tag(editions: list[ListedEdition], names: TagNames) -> dict[str, list[ListedEdition]]:
    """Each tag's editions by its displayed form, in the order given (newest first); tags in the order they
    first appear. An edition holds each tag once (issues.parse_issue merges its spellings)."""
    by_tag: defaultdict[str, list[ListedEdition]] = defaultdict(list)
    for edition in editions:
        for tag in edition.tags:
            by_tag[names.name(tag)].append(edition)
    return by_tag


def _instant(slug: str, date: dt.date, publish_at: dt.datetime | None, settings: Settings) -> dt.datetime:
    """The publication instant of the issue `slug` of `date` with `publish_at` (issues.publication_instant reads
    only these of an issue, so the build need not load full editions to ask it)."""
    return publication_instant(Issue(slug=slug, date=date, editions=(), publish_at=publish_at), settings)


def _issue_instant(
    issue: list[ListedEdition], settings: Settings, full: Callable[[ListedEdition], Edition]
) -> dt.datetime:
    """When `issue` (its editions' records) is published. Editions that disagree on publish_at are refused with
    the error `check` and `send` give (issues.agreed_publish_at, which reads the full editions)."""
    given = [e.publish_at for e in issue if e.publish_at is not None]
    if any(other != given[0] for other in given[1:]):
        agreed_publish_at(full(e) for e in issue)
    return _instant(issue[0].slug, issue[0].date, given[0] if given else None, settings)


def _split_by_time(
    issues: list[list[ListedEdition]], settings: Settings, now: dt.datetime, full: Callable[[ListedEdition], Edition]
) -> tuple[list[list[ListedEdition]], dict[str, dt.datetime], list[tuple[str, dt.datetime]]]:
    """(the issues whose time has come at `now`, in the order given; every issue's instant by slug; (slug,
    instant) of the others, soonest first)."""
    instants = {issue[0].slug: _issue_instant(issue, settings, full) for issue in issues}
    come = [issue for issue in issues if instants[issue[0].slug] <= now]
    later = sorted(((slug, at) for slug, at in instants.items() if at > now), key=lambda item: (item[1], item[0]))
    return come, instants, later


def _drop_unused(staging: Path, prerendered: Iterable[str], used: Iterable[str]) -> None:
    """Delete the pages parse workers rendered into staging that the plan does not use (a cold build makes
    staging the site whole, so such a page, of an issue left out, would go public)."""
    for path in set(prerendered) - set(used):
        (staging / path).unlink(missing_ok=True)


def _swap(out: Path, staging: Path, builder: _SiteBuilder, previous_pages: dict[str, str]) -> None:
    """Put the rendered outputs in place. Cold: the staging folder becomes the site in one rename.
    Incremental: each rendered file replaces its old version, a new search index its old one whole; outputs no
    longer made are removed (the search index too when search is off)."""
    if builder.previous is None:
        retired = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            os.replace(out, retired)
        os.replace(staging, out)
        _remove_in_background(retired)
        return
    for path in builder.moved:
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / path, target)
    index, new_index = out / SEARCH_FOLDER, staging / SEARCH_FOLDER
    if new_index.is_dir() or (not builder.settings.search and index.is_dir()):
        retired = out.parent / f".{out.name}.old-{os.getpid()}"
        retired.mkdir(exist_ok=True)
        if index.is_dir():
            os.replace(index, retired / SEARCH_FOLDER)
        if new_index.is_dir():
            os.replace(new_index, index)
        _remove_in_background(retired)
    for gone in set(previous_pages) - set(builder.new_keys):
        gone_path = out / gone
        gone_path.unlink(missing_ok=True)
        for parent in gone_path.parents:
            if parent == out or any(parent.iterdir()):
                break
            parent.rmdir()
    shutil.rmtree(staging, ignore_errors=True)


def _remove_in_background(folder: Path) -> None:
    """Delete a retired site in a detached grandchild so the command returns at once."""
    if not folder.exists():
        return
    try:
        child = os.fork()
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        return
    if child == 0:  # pragma: no cover - runs in the forked children
        try:
            if os.fork() == 0:
                shutil.rmtree(folder, ignore_errors=True)
        finally:
            os._exit(0)
    os.waitpid(child, 0)


def remove_stale_folders(out: Path) -> list[Path]:
    """Remove (in the background) the staging and retired folders of builds whose process is gone: a
    killed build leaves its `.site.new-<pid>` behind. Folders of a build still running are kept."""
    stale = []
    for kind in ("new", "old"):
        for folder in out.parent.glob(f".{out.name}.{kind}-*"):
            pid = folder.name.rsplit("-", 1)[1]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)) and folder.is_dir():
                stale.append(folder)
                _remove_in_background(folder)
    return stale


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _config_digest(settings: Settings) -> str:
    raw = (settings.root / "pyproject.toml").read_bytes()
    urls = f"{settings.base_url}\x1f{settings.app_url}".encode()  # both may come from the environment
    return hashlib.blake2b(raw + urls, digest_size=16).hexdigest()


def build_site(settings: Settings, **options: Any) -> BuildResult:
    """Build the whole archive into `out` (default `<root>/site`); see _build_site for the options.

    The cyclic garbage collector is paused meanwhile: a build allocates many objects and frees them
    all at the end, and collections during it cost a large share of the time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _build_site(settings, **options)
    finally:
        if was_enabled:
            gc.enable()


def check_out_folder(out: Path, settings: Settings, *, hint: str = "build into a folder of its own: site/") -> None:
    """Refuse an output folder that holds a source of the publication or lies inside one: a build replaces
    the whole folder (and writes .md files), and a preview writes its files into it, so either would delete or
    pollute the issues, templates or settings."""
    root = settings.root.resolve()
    sources = {
        "pyproject.toml": root / "pyproject.toml",
        "issues/": settings.issues_dir.resolve(),
        "templates/": settings.templates_dir.resolve(),
        "build cache": (root / ".cache").resolve(),
    }
    prefix = "sqlite:///"
    if settings.database_url.startswith(prefix) and settings.database_url != "sqlite:///:memory:":
        sources["subscriber store"] = Path(settings.database_url[len(prefix) :]).resolve()
    for name, source in sources.items():
        if source == out or source.is_relative_to(out):
            raise BuildError(f"--out {out}", f"holds the publication's {name}", hint)
        if out.is_relative_to(source):
            raise BuildError(f"--out {out}", f"is inside the publication's {name}", hint)


def _build_site(
    settings: Settings,
    *,
    out: Path | None = None,
    templates: Templates | None = None,
    workers: int | None = None,
    use_cache: bool = True,
    now: dt.datetime | None = None,
    future: bool = False,
) -> BuildResult:
    """`now` (timezone-aware; the real time by default) decides which issues' time has come; with `future`, the
    issues whose time is still to come are built too."""
    started = time.perf_counter()
    now = now or dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    out = (out or settings.root / "site").resolve()
    check_out_folder(out, settings)
    templates = templates or load_templates(settings)
    templates.preload("page.html.j2", "entry.html.j2")  # before the parse workers fork, which use them
    workers = workers or min(2, os.cpu_count() or 1)
    cache = BuildCache.load(settings.root / ".cache" / "site" if use_cache else None)
    previous = out if out.is_dir() and cache.pages else None
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_folders(out)
    staging = out.parent / f".{out.name}.new-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    MADE_DIRS.clear()
    builder = _SiteBuilder(settings, templates, cache, previous, staging, _config_digest(settings), now, future)
    known = set(cache.listed)
    try:
        files = find_issue_files(settings)
        builder.assume_versions(files)
        scanned = scan_issues(settings, cache, workers, builder.prerender, files, builder.prepare_listings)
        issues = group_by_issue((e for e in scanned.listed if not e.draft), settings)
        builder.fresh = dict(scanned.fresh)  # so that full() finds what this build parsed
        come, instants, later = _split_by_time(issues, settings, now, builder.full)
        if not future:
            issues = come
        builder.plan(issues, instants, scanned)
        _drop_unused(staging, scanned.pages, builder.moved)
        parsed_any = set(cache.listed) != known or bool(scanned.fresh)
        index_missing = cache.folder is not None and not (cache.folder / "index.pickle").is_file()
        render_all(builder.jobs, staging, workers, cache.save_index if parsed_any or index_missing else lambda: None)
        search, search_key = _index(settings, builder, out, staging, cache) if settings.search else (None, "")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    previous_pages = cache.pages
    cache.forget_pages()
    _swap(out, staging, builder, previous_pages)
    cache.save_pages(builder.new_keys)
    if search is not None and not search.skipped:
        save_key(cache.folder, search_key)
    return BuildResult(
        out,
        len(issues),
        len(builder.new_keys),
        builder.rendered,
        builder.reused,
        time.perf_counter() - started,
        tuple(later),
        future,
        search,
    )


def _index(
    settings: Settings, builder: _SiteBuilder, out: Path, staging: Path, cache: BuildCache
) -> tuple[SearchResult, str]:
    """Index the papers of every edition page, each read where it is now (rendered into staging, or kept in the
    site), unless the site's index is of these very pages."""
    rendered = set(builder.moved)
    pages = [
        EditionPage(
            path=(path := e.page_path + "index.html"),
            file=(staging if path in rendered else out) / path,
            lang=e.lang,
            title=e.title,
            date=e.date.isoformat(),
            anchors=tuple((s.anchor, s.title, s.tags) for s in e.sections),
        )
        for e in builder.edition_pages
    ]
    return index_site(settings, pages, builder.new_keys, staging, builder.previous, cache.folder)
