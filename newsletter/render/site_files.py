"""The pages and files a site has once: each language's search page (when search is on), the 404 page, the
sitemap, robots.txt and the theme's static files (each overridden by the publication's templates/static/)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .output_plan import output_key
from .sitemap import build_sitemap
from .urls import lang_prefix

if TYPE_CHECKING:
    from .site_build import SiteBuild


def plan_search_page(build: SiteBuild, lang: str) -> None:
    """`lang`'s search page, when the publication has search."""
    s = build.settings
    if not s.search:
        return
    prefix = lang_prefix(lang, s)
    description = s.for_language(lang).description
    versions = [(code, f"{lang_prefix(code, s)}search/") for code in build.listed_languages]
    title = build.strings(lang).get("search_title", "Search")
    build.page(
        f"{prefix}search/index.html",
        output_key(*versions, title),
        "search.html.j2",
        lambda: build.contexts.page(lang, f"{prefix}search/", title, description, versions),
        "the search page",
    )


def plan_site_files(build: SiteBuild) -> None:
    """The 404 page, sitemap.xml, robots.txt and static/."""
    s = build.settings
    t = build.strings(s.language)
    context = build.contexts.page(
        s.language, "404.html", t.get("not_found_title", "404"), s.description, [(s.language, "404.html")]
    )
    build.plan.data("404.html", build.templates.render("404.html.j2", **context), "the 404 page")
    listed = {code: build.by_lang[code] for code in build.listed_languages}
    build.plan.data("sitemap.xml", build_sitemap(s, build.issues, listed, build.by_tag), "the sitemap")
    build.plan.data("robots.txt", f"User-agent: *\nAllow: /\nSitemap: {s.url('sitemap.xml')}\n", "robots.txt")
    for name, file, where in build.templates.static_files():
        if file.is_file():
            build.plan.data(f"static/{name}", file.read_bytes(), where)
