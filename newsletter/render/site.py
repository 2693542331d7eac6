"""Build the archive site: edition pages, indexes, tag pages, feeds, sitemap and 404.

Outputs are rendered aside and swapped in only when all of them rendered (staging.py), so a failed build leaves
the previous site untouched. An issue whose publication instant (issues.publication_instant) is after `now` is
left out of every output, as drafts are, unless the build is asked for `future` issues too. A cache
(`.cache/site/`) keyed by content hash makes a rebuild re-parse only changed files and re-render only outputs
whose inputs changed (output_plan.py); listings read light records of each edition and load a full one only to
render it. The cache keeps the issues left out, so the first build after an issue's time renders its pages and
parses nothing. No output path may be written twice.
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import BuildError
from ..issues import find_issue_files, group_by_issue
from .build_cache import BuildCache, scan_issues
from .due import split_by_time
from .edition_pages import Prerenderer, plan_edition_pages
from .feed_outputs import plan_feeds, plan_tag_feeds
from .listings import plan_index_pages
from .output_plan import OutputPlan
from .parallel import render_all
from .search import EditionPage, SearchResult, index_site, save_key
from .site_build import SiteBuild, full_edition
from .site_files import plan_search_page, plan_site_files
from .staging import drop_unused, make_staging, swap
from .tag_pages import plan_tag_pages
from .templates import Templates, format_date, load_templates


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


def plan_outputs(build: SiteBuild) -> None:
    """Every output of the site, kind by kind, into the build's plan."""
    plan_edition_pages(build)
    for lang in build.listed_languages:
        plan_index_pages(build, lang)
        plan_feeds(build, lang)
        plan_search_page(build, lang)
        plan_tag_pages(build, lang)
        plan_tag_feeds(build, lang)
    plan_site_files(build)


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


def _config_digest(settings: Settings) -> str:
    raw = (settings.root / "pyproject.toml").read_bytes()
    urls = f"{settings.base_url}\x1f{settings.app_url}".encode()  # both may come from the environment
    return hashlib.blake2b(raw + urls, digest_size=16).hexdigest()


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
    staging = make_staging(out)
    salt = (_config_digest(settings), templates.digest)
    known = set(cache.listed)
    try:
        files = find_issue_files(settings)
        prerender = Prerenderer(settings, templates, salt, staging, now, future)
        prerender.assume_versions(files)
        scanned = scan_issues(settings, cache, workers, prerender, files, lambda: _prepare_listings(templates))
        issues = group_by_issue((e for e in scanned.listed if not e.draft), settings)
        fresh = dict(scanned.fresh)  # so that full() finds what this build parsed
        come, instants, later = split_by_time(issues, settings, now, lambda e: full_edition(e, fresh, cache))
        if not future:
            issues = come
        plan = OutputPlan(salt, previous, cache.pages, scanned.pages)
        build = SiteBuild(settings, templates, cache, plan, issues, instants, fresh)
        plan_outputs(build)
        drop_unused(staging, scanned.pages, plan.moved)
        parsed_any = set(cache.listed) != known or bool(scanned.fresh)
        index_missing = cache.folder is not None and not (cache.folder / "index.pickle").is_file()
        render_all(plan.jobs, staging, workers, cache.save_index if parsed_any or index_missing else lambda: None)
        search, search_key = _index(settings, build, out, staging, previous) if settings.search else (None, "")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    previous_pages = cache.pages
    cache.forget_pages()
    swap(
        out,
        staging,
        cold=previous is None,
        moved=plan.moved,
        outputs=plan.new_keys.keys(),
        previous_outputs=previous_pages,
        search=settings.search,
    )
    cache.save_pages(plan.new_keys)
    if search is not None and not search.skipped:
        save_key(cache.folder, search_key)
    return BuildResult(
        out,
        len(issues),
        len(plan.new_keys),
        plan.rendered,
        plan.reused,
        time.perf_counter() - started,
        tuple(later),
        future,
        search,
    )


def _prepare_listings(templates: Templates) -> None:
    """Load what the listings and feeds need, so that forked render workers inherit it instead of each
    loading it (the parent does this while parse workers work)."""
    templates.preload("index.html.j2", "tag.html.j2", "tags.html.j2", "404.html.j2")
    import feedgen.feed  # noqa: F401  (lxml: tens of milliseconds each render worker would spend)


def _index(
    settings: Settings, build: SiteBuild, out: Path, staging: Path, previous: Path | None
) -> tuple[SearchResult, str]:
    """Index the papers of every edition page, each read where it is now (rendered into staging, or kept in the
    site), unless the site's index is of these very pages."""
    rendered = set(build.plan.moved)
    wording = {lang: build.strings(lang) for lang in {e.lang for e in build.edition_pages}}
    pages = [
        EditionPage(
            path=(path := e.page_path + "index.html"),
            file=(staging if path in rendered else out) / path,
            lang=e.lang,
            title=e.title,
            date=e.date.isoformat(),
            date_text=format_date(e.date, wording[e.lang]),
            anchors=tuple((s.anchor, s.title, s.tags) for s in e.sections),
            issue=e.slug,
            tag_filter=str(wording[e.lang].get("search_tag_filter", "tag")),
            date_label=str(wording[e.lang].get("search_date", "date")),
        )
        for e in build.edition_pages
    ]
    return index_site(settings, pages, build.plan.new_keys, staging, previous, build.cache.folder)
