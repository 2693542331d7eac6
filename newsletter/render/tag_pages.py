"""Tag pages: the tag index of each language (every tag with its count) and each tag's listing of the editions
whose papers carry it. A tag's displayed form is its spelling in the oldest issue that has it."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from ..errors import BuildError
from ..tags import TagClash, TagNames
from .build_cache import ListedEdition
from .listings import plan_listing
from .output_plan import output_key
from .urls import lang_prefix, tag_path, tag_versions

if TYPE_CHECKING:
    from .site_build import SiteBuild


def tag_names(issues: list[list[ListedEdition]]) -> TagNames:
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


def group_by_tag(editions: list[ListedEdition], names: TagNames) -> dict[str, list[ListedEdition]]:
    """Each tag's editions by its displayed form, in the order given (newest first); tags in the order they
    first appear. An edition holds each tag once (issues.parse_issue merges its spellings)."""
    by_tag: defaultdict[str, list[ListedEdition]] = defaultdict(list)
    for edition in editions:
        for tag in edition.tags:
            by_tag[names.name(tag)].append(edition)
    return by_tag


def plan_tag_pages(build: SiteBuild, lang: str) -> None:
    """`lang`'s tag index and each of its tags' listing pages."""
    s = build.settings
    prefix = lang_prefix(lang, s)
    wording = s.for_language(lang)
    t = build.strings(lang)
    by_tag = build.by_tag[lang]
    counts = sorted(((tag, len(items)) for tag, items in by_tag.items()), key=lambda x: (-x[1], x[0]))
    tags_versions = [(code, f"{lang_prefix(code, s)}tags/") for code in build.listed_languages]
    all_tags = t.get("all_tags", "Tags")
    build.page(
        f"{prefix}tags/index.html",
        output_key(*counts, *tags_versions),
        "tags.html.j2",
        lambda: {
            **build.contexts.page(lang, f"{prefix}tags/", all_tags, wording.description, tags_versions),
            "tags": counts,
        },
        "the tag index",
    )
    for tag, tagged in by_tag.items():
        title = t.get("issues_tagged", "{tag}").format(tag=tag)
        versions = tag_versions(tag, build.by_tag, s)
        plan_listing(
            build, lang, tag_path(tag, lang, s), title, "tag.html.j2", tagged, versions, f"tag '{tag}'", tag=tag
        )
