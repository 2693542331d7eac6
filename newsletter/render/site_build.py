"""One site build as its output verbs see it: the settings, templates and cache, the issues going into the site
with their publication instants, the output plan, and what the verbs share (editions grouped by language and by
tag, each edition's article for the feeds, the feed entries and the listings' entries)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import Settings
from ..issues import Edition
from .build_cache import BuildCache, ListedEdition
from .edition_pages import edition_article
from .feeds import FeedEntries
from .listings import ListingEntries
from .output_plan import OutputPlan
from .page_context import PageContexts
from .tag_pages import group_by_tag, tag_names
from .templates import Templates
from .urls import resolve_root


@dataclass
class SiteBuild:
    """What the output verbs (plan_edition_pages, plan_index_pages, …) read and share."""

    settings: Settings
    templates: Templates
    cache: BuildCache
    plan: OutputPlan
    issues: list[list[ListedEdition]]  # the issues in the site, newest first, each its editions' records
    instants: dict[str, dt.datetime]  # slug → publication instant of each issue
    fresh: dict[str, Edition]  # parse key → full edition, parsed in this build or loaded
    contexts: PageContexts = field(init=False)
    by_lang: dict[str, list[ListedEdition]] = field(init=False)  # language → its editions, newest first
    by_tag: dict[str, dict[str, list[ListedEdition]]] = field(init=False)  # language → tag → editions
    listed_languages: list[str] = field(init=False)  # the languages with an index and feeds
    edition_pages: list[ListedEdition] = field(default_factory=list)  # every edition with a page in this site
    articles: dict[str, str] = field(default_factory=dict)  # page path → article of a page rendered in this process
    feed_entries: FeedEntries[ListedEdition] = field(init=False)
    listing_entries: ListingEntries = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.contexts = PageContexts(s, self.templates)
        self.by_lang = {code: [] for code in s.all_languages}
        for issue in self.issues:
            for edition in issue:
                self.by_lang[edition.lang].append(edition)
        names = tag_names(self.issues)
        self.by_tag = {code: group_by_tag(editions, names) for code, editions in self.by_lang.items()}
        # A language with no edition yet gets no index, feeds or tag index, and no page links to one; the
        # default language's index is the site's home page, so it is there from the start.
        self.listed_languages = [code for code, editions in self.by_lang.items() if editions or code == s.language]
        self.feed_entries = FeedEntries(s, self.entry_content, self.published_of)
        self.listing_entries = ListingEntries(self.contexts)

    def full(self, listed: ListedEdition) -> Edition:
        """The full edition behind a record: parsed in this build, or loaded from the cache."""
        return full_edition(listed, self.fresh, self.cache)

    def published_of(self, edition: ListedEdition) -> dt.datetime:
        """The publication instant of `edition`'s issue."""
        return self.instants[edition.slug]

    def strings(self, lang: str) -> Any:
        return self.contexts.strings(lang)

    def page(self, path: str, key: str, template: str, context: Callable[[], dict[str, Any]], source: str) -> None:
        """Plan the page `path` that `template` renders with `context()`."""
        self.plan.output(path, key, lambda: self.templates.render(template, **context()), source)

    def entry_content(self, listed: ListedEdition) -> str:
        """The edition's content for feeds: its article with every link absolute, the editor's relative ones too.
        FeedEntries asks once per edition and process, and resolves the rest against the page."""
        return resolve_root(edition_article(self, listed), self.settings.url(""))


def full_edition(listed: ListedEdition, fresh: dict[str, Edition], cache: BuildCache) -> Edition:
    """The full edition behind a record: in `fresh` (parsed in this build, by parse key), else loaded from the
    cache into `fresh`."""
    edition = fresh.get(listed.key)
    if edition is None:
        edition = fresh[listed.key] = cache.full(listed.key)
    return edition
