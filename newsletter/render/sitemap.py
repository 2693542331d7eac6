"""sitemap.xml (sitemaps.org) with hreflang alternates for every page that has translations."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from html import escape

from ..config import Settings
from .build_cache import ListedEdition
from .urls import lang_prefix, tag_path, tag_versions

NEEDS_ESCAPING = re.compile(r"[&<>\"']")


def build_sitemap(
    settings: Settings,
    issues: Iterable[list[ListedEdition]],
    by_lang: dict[str, list[ListedEdition]],
    by_tag: dict[str, dict[str, list[ListedEdition]]],
) -> str:
    """sitemaps.org XML with hreflang alternates (xhtml:link) for each page that has translations.

    `by_lang` holds the editions of each language that has an index (site_build.SiteBuild.listed_languages), newest
    first; `by_tag`, per language, each tag's editions newest first."""
    s = settings
    rows: list[str] = []

    def url(path: str) -> str:
        url = s.url(path)
        return escape(url) if NEEDS_ESCAPING.search(url) else url

    def url_entry(path: str, lastmod: str, versions: Sequence[tuple[str, str]]) -> None:
        links = ""
        if len(versions) > 1:
            links = "".join(
                f'\n    <xhtml:link rel="alternate" hreflang="{code}" href="{url(p)}"/>' for code, p in versions
            )
        rows.append(f"  <url>\n    <loc>{url(path)}</loc>\n    <lastmod>{lastmod}</lastmod>{links}\n  </url>")

    newest = {code: (eds[0].date.isoformat() if eds else s.id_date) for code, eds in by_lang.items()}
    index_versions = [(code, lang_prefix(code, s)) for code in by_lang]
    for code in by_lang:
        url_entry(lang_prefix(code, s), newest[code], index_versions)
    for issue in issues:
        versions = [(e.lang, e.page_path) for e in issue]
        for edition in issue:
            url_entry(edition.page_path, edition.date.isoformat(), versions)
    for code, groups in by_tag.items():
        for tag, tagged in sorted(groups.items()):
            url_entry(tag_path(tag, code, s), tagged[0].date.isoformat(), tag_versions(tag, by_tag, s))
    body = "\n".join(rows)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
        'xmlns:xhtml="http://www.w3.org/1999/xhtml">\n'
        f"{body}\n</urlset>\n"
    )
