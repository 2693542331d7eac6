"""The feeds of a language: Atom and RSS of its newest editions, one entry per issue, and an Atom feed per tag
with one entry per paper that carries the tag (feeds.tagged_papers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .build_cache import ListedEdition
from .feeds import FeedSpec, Paper, build_atom, build_paper_atom, build_rss, tag_uri, tagged_papers
from .output_plan import output_key
from .urls import lang_prefix, tag_path, tag_slug

if TYPE_CHECKING:
    from .site_build import SiteBuild


def feed_spec(build: SiteBuild, lang: str, title: str, id_name: str, folder: str, name: str) -> FeedSpec:
    """The feed `name` in site folder `folder`, standing for the page there."""
    s = build.settings
    return FeedSpec(
        lang, title, s.for_language(lang).description, tag_uri(s, id_name), s.url(folder + name), s.url(folder)
    )


def plan_feeds(build: SiteBuild, lang: str) -> None:
    """`lang`'s Atom and RSS feeds of its feed_size newest editions."""
    s = build.settings
    prefix = lang_prefix(lang, s)
    title = s.for_language(lang).title
    newest = build.by_lang[lang][: s.feed_size]
    for name, id_name, build_feed in (("feed.xml", "feed", build_atom), ("rss.xml", "rss", build_rss)):
        spec = feed_spec(build, lang, title, f"{id_name}/{lang}", prefix, name)
        _plan_feed(build, prefix + name, spec, newest, build_feed, f"the {name} feed")


def plan_tag_feeds(build: SiteBuild, lang: str) -> None:
    """Each of `lang`'s tags' Atom feed: one entry per paper that carries the tag."""
    s = build.settings
    title = s.for_language(lang).title
    t = build.strings(lang)
    for tag, tagged in build.by_tag[lang].items():
        path = tag_path(tag, lang, s)
        feed_title = t.get("tag_feed_title", "{title}: {tag}").format(title=title, tag=tag)
        spec = feed_spec(build, lang, feed_title, f"tags/{tag_slug(tag)}/{lang}", path, "feed.xml")
        _plan_tag_feed(build, path + "feed.xml", spec, tagged_papers(tagged, tag, s.feed_size), f"tag '{tag}'")


def _plan_feed(
    build: SiteBuild,
    path: str,
    spec: FeedSpec,
    editions: list[ListedEdition],
    build_feed: Callable[..., bytes],
    source: str,
) -> None:
    key = output_key(path, spec, *(f"{e.source_hash}:{build.published_of(e).isoformat()}" for e in editions))
    build.plan.output(path, key, lambda: build_feed(spec, editions, build.feed_entries), source)


def _plan_tag_feed(
    build: SiteBuild, path: str, spec: FeedSpec, papers: list[Paper[ListedEdition]], source: str
) -> None:
    key = output_key(
        path,
        spec,
        *(
            f"{p.edition.source_hash}:{build.published_of(p.edition).isoformat()}:{p.section and p.section.anchor}"
            for p in papers
        ),
    )
    build.plan.output(path, key, lambda: build_paper_atom(spec, papers, build.feed_entries), source)
