"""Edition pages: each edition's article (entry.html.j2, which the feeds reuse) inside page.html.j2. A parse
worker renders the page of each edition it parses (Prerenderer); the plan keeps it when its key holds."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from ..config import Settings
from ..issues import Edition, edition_page_path, split_file_name
from .build_cache import ListedEdition, Prerendered
from .due import instant_of
from .output_plan import output_key
from .page_context import PageContexts
from .parallel import write_output
from .templates import Templates
from .urls import resolve_root, rooted_url

if TYPE_CHECKING:
    from .site_build import SiteBuild


def edition_key(source_hash: str, versions: Sequence[tuple[str, str]], published: dt.datetime) -> str:
    """What an edition's page depends on besides the templates and settings."""
    return output_key(source_hash, *versions, published.isoformat())


def article_key(salt: tuple[str, ...], source_hash: str, page_path: str) -> str:
    """What an edition's article depends on: its source and page, the templates and the settings."""
    return output_key(*salt, "article", source_hash, page_path)


def edition_context(
    contexts: PageContexts, edition: Edition, versions: Sequence[tuple[str, str]], published: dt.datetime
) -> dict[str, Any]:
    return contexts.page(
        edition.lang,
        edition.page_path,
        edition.title,
        edition.summary or edition.title,
        versions,
        og_type="article",
        published=published.isoformat(),
    )


def render_article(templates: Templates, edition: Edition, context: dict[str, Any]) -> str:
    """entry.html.j2 for an edition, its links marked as from the site root (urls.rooted_url): the page
    makes them relative to itself and the feeds absolute, so one rendering serves both."""
    return templates.render("entry.html.j2", **{**context, "url": rooted_url}, edition=edition)


def render_edition_page(
    settings: Settings,
    templates: Templates,
    edition: Edition,
    versions: Sequence[tuple[str, str]],
    published: dt.datetime,
) -> tuple[str, str]:
    """(the article, the whole page) of `edition` published at `published`, with `versions` ((lang, page path)
    of each language version) as the build renders it; the preview shows this very page."""
    context = edition_context(PageContexts(settings, templates), edition, versions, published)
    article = render_article(templates, edition, context)
    on_page = resolve_root(article, "../" * edition.page_path.count("/"))
    return article, templates.render("page.html.j2", **context, edition=edition, article=Markup(on_page))


@dataclass
class Prerenderer:
    """Renders an edition's page into staging in the parse worker that parsed it, with the language versions
    guessed from the file names; the plan keeps the page if its key (made as plan_edition_pages makes it) holds."""

    settings: Settings
    templates: Templates
    salt: tuple[str, ...]
    staging: Path
    now: dt.datetime
    future: bool
    versions: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # slug → (lang, page path)

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
        self.versions = {
            slug: [(lang, langs[lang]) for lang in order if lang in langs] for slug, langs in found.items()
        }

    def __call__(self, edition: Edition) -> Prerendered | None:
        versions = self.versions.get(edition.slug)
        if edition.draft or not versions:
            return None
        # The edition's own instant; its issue's is the same unless only another edition gives publish_at, and
        # then the key differs and the plan renders the page again (or leaves it out, see staging.drop_unused).
        published = instant_of(edition.slug, edition.date, edition.publish_at, self.settings)
        if published > self.now and not self.future:
            return None
        path = edition.page_path + "index.html"
        key = output_key(*self.salt, edition_key(edition.source_hash, versions, published))  # as OutputPlan makes it
        article, page = render_edition_page(self.settings, self.templates, edition, versions, published)
        write_output(self.staging / path, page)
        return Prerendered(path, key, article_key(self.salt, edition.source_hash, edition.page_path), article)


def plan_edition_pages(build: SiteBuild) -> None:
    """A page for every edition of the site, its language versions the issue's editions."""
    for issue in build.issues:
        versions = [(e.lang, e.page_path) for e in issue]
        for listed in issue:
            key = edition_key(listed.source_hash, versions, build.published_of(listed))
            build.edition_pages.append(listed)
            build.plan.output(listed.page_path + "index.html", key, _page_maker(build, listed, versions), listed.path)


def _page_maker(build: SiteBuild, listed: ListedEdition, versions: Sequence[tuple[str, str]]) -> Callable[[], str]:
    return lambda: _edition_page_html(build, listed, versions)


def _edition_page_html(build: SiteBuild, listed: ListedEdition, versions: Sequence[tuple[str, str]]) -> str:
    edition = build.full(listed)
    article, page = render_edition_page(build.settings, build.templates, edition, versions, build.published_of(listed))
    build.articles[listed.page_path] = article  # for a feed this process may render
    return page


def edition_article(build: SiteBuild, listed: ListedEdition) -> str:
    """The edition's article, with its links from the site root: from this process' rendering of its page, else
    from the cache, else rendered now."""
    article = build.articles.pop(listed.page_path, None)
    if article is None:
        article = build.cache.article(listed.key, article_key(build.plan.salt, listed.source_hash, listed.page_path))
    if article is None:
        edition = build.full(listed)
        context = edition_context(
            build.contexts, edition, [(edition.lang, edition.page_path)], build.published_of(listed)
        )
        article = render_article(build.templates, edition, context)
    return article
