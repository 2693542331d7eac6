"""Build the archive site: edition pages, indexes, tag pages, feeds, sitemap and 404, written aside and swapped in.

A cache keyed by content hash (`.cache/` in the publication) lets a rebuild re-parse and re-render only
what changed; unchanged pages are hard-linked from the previous site. A failed build leaves the previous
site untouched. No output path may be written twice.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import os
import pickle
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

from ..config import Settings
from ..errors import BuildError, IssueError
from ..issues import Edition, Issue, find_issue_files, group_editions, parse_issue
from .feeds import FeedSpec, absolutize, build_atom, build_rss, feed_id, published_at
from .templates import Templates, load_templates

CACHE_VERSION = "site-1"
PARALLEL_THRESHOLD = 64  # below this many files to parse, worker start-up costs more than it saves


@dataclass(frozen=True)
class BuildResult:
    """What a build did."""

    out: Path
    issues: int
    files: int
    pages_rendered: int
    pages_reused: int
    seconds: float


# ---------------------------------------------------------------- site paths


def lang_prefix(lang: str, settings: Settings) -> str:
    return "" if lang == settings.language else f"{lang}/"


def tag_slug(tag: str) -> str:
    return tag.lower()


def tag_path(tag: str, lang: str, settings: Settings) -> str:
    return f"{lang_prefix(lang, settings)}tags/{tag_slug(tag)}/"


@functools.lru_cache(maxsize=65536)
def _quoted(path: str) -> str:
    target, _, fragment = path.partition("#")
    url = quote(target, safe="/.-_~%")
    return f"{url}#{quote(fragment, safe='-_.~%')}" if fragment else url


def relative_url(target: str, from_dir: str) -> str:
    """URL of site path `target` as seen from the folder `from_dir` (both relative to the site root).

    Goes up to the root and down again (`../../tags/x/`), so it works from file:// and under any base path.
    """
    up = "../" * from_dir.count("/")
    return up + _quoted(target) if up or target else "./"


# ---------------------------------------------------------------- output


class _Writer:
    """Claims paths in a fresh folder, refusing a second claim of one path (naming both sources)."""

    def __init__(self, folder: Path, previous: Path | None) -> None:
        self.folder = folder
        self.previous = previous
        self.sources: dict[str, str] = {}
        self.made_dirs: set[Path] = set()

    def claim(self, path: str, source: str) -> Path:
        if path in self.sources:
            raise BuildError(path, f"would be written twice: by {self.sources[path]} and by {source}",
                             "rename one of them")
        self.sources[path] = source
        target = self.folder / path
        if target.parent not in self.made_dirs:
            target.parent.mkdir(parents=True, exist_ok=True)
            self.made_dirs.add(target.parent)
        return target

    def write(self, path: str, data: str | bytes, source: str) -> None:
        _write(self.claim(path, source), data)

    def reuse(self, path: str, target: Path) -> bool:
        """Hard-link `path` from the previous site into `target`; False if it is not there."""
        if self.previous is None:
            return False
        old = self.previous / path
        try:
            os.link(old, target)
        except FileNotFoundError:
            return False
        except OSError:
            shutil.copy2(old, target)
        return True


def _write(target: Path, data: str | bytes) -> None:
    target.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


@dataclass(frozen=True)
class _Job:
    """One output still to render: where it goes and how to make it."""

    target: Path
    make: Callable[[], str | bytes]


_PENDING: list[_Job] = []  # set before forking render workers, which inherit it


def _run_jobs(indices: list[int]) -> int:
    for index in indices:
        job = _PENDING[index]
        _write(job.target, job.make())
    return len(indices)


def _run_all(jobs: list[_Job], workers: int) -> None:
    """Render and write every job, split over forked workers when there are many."""
    global _PENDING
    if len(jobs) < PARALLEL_THRESHOLD or workers < 2:
        for job in jobs:
            _write(job.target, job.make())
        return
    _PENDING = jobs
    try:
        shares = [list(range(n, len(jobs), workers)) for n in range(workers)]
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork")) as pool:
            list(pool.map(_run_jobs, shares))
    finally:
        _PENDING = []


# ---------------------------------------------------------------- parsing with a cache


class _Cache:
    """The build cache under `.cache/site/`: one pickle per parsed edition, named by the hash of its
    file, plus the key of every output of the last build. Anything unreadable counts as absent."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.pages: dict[str, str] = {}
        if folder is None:
            return
        try:
            with (folder / "pages.pickle").open("rb") as handle:
                version, pages = pickle.load(handle)
            if version == CACHE_VERSION:
                self.pages = pages
        except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError):
            pass

    def edition_file(self, key: str) -> Path | None:
        return self.folder / "editions" / f"{key}.pickle" if self.folder else None

    def edition(self, key: str) -> Edition | None:
        path = self.edition_file(key)
        try:
            with path.open("rb") as handle:  # type: ignore[union-attr]
                edition = pickle.load(handle)
            return edition if isinstance(edition, Edition) else None
        except (AttributeError, OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError):
            return None

    def save(self, pages: dict[str, str], keep: set[str]) -> None:
        """Record the outputs' keys and forget editions whose files changed or went away."""
        if self.folder is None:
            return
        _atomic_pickle(self.folder / "pages.pickle", (CACHE_VERSION, pages))
        for old in (self.folder / "editions").glob("*.pickle"):
            if old.stem not in keep:
                old.unlink(missing_ok=True)


def _atomic_pickle(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("wb") as handle:
        pickle.dump(value, handle, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(temporary, path)


def _parse_key(path: Path, raw: bytes, settings: Settings) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for part in (CACHE_VERSION, path.name, settings.language, ",".join(settings.languages)):
        digest.update(part.encode() + b"\0")
    digest.update(raw)
    return digest.hexdigest()


def _parse_batch(batch: list[tuple[str, Path, bytes]], settings: Settings,
                 cache: _Cache) -> list[Edition | tuple[Any, ...]]:
    """Parse (in a worker) and cache each edition; an IssueError comes back as its fields."""
    results: list[Edition | tuple[Any, ...]] = []
    for key, path, raw in batch:
        try:
            edition = parse_issue(path, settings, raw)
        except IssueError as err:
            results.append((err.path, err.line, err.message, err.hint))
            continue
        cache_file = cache.edition_file(key)
        if cache_file is not None:
            _atomic_pickle(cache_file, edition)
        results.append(edition)
    return results


def parse_all(settings: Settings, cache: _Cache, workers: int) -> tuple[list[Edition], set[str]]:
    """(every issue file as an Edition, their cache keys): from the cache when the bytes are unchanged."""
    wanted: list[tuple[str, Path, bytes]] = []
    editions: dict[str, Edition] = {}
    for path in find_issue_files(settings):
        raw = path.read_bytes()
        key = _parse_key(path, raw, settings)
        cached = cache.edition(key)
        if cached is not None:
            editions[key] = cached
        else:
            wanted.append((key, path, raw))
    if len(wanted) >= PARALLEL_THRESHOLD and workers > 1:
        size = -(-len(wanted) // (workers * 4))
        batches = [wanted[i : i + size] for i in range(0, len(wanted), size)]
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork")) as pool:
            chunks = pool.map(_parse_batch, batches, [settings] * len(batches), [cache] * len(batches))
            parsed = [result for chunk in chunks for result in chunk]
    else:
        parsed = _parse_batch(wanted, settings, cache)
    for (key, _, _), result in zip(wanted, parsed, strict=True):
        if isinstance(result, tuple):
            raise IssueError(*result)
        editions[key] = result
    return sorted(editions.values(), key=lambda e: e.path), set(editions)


# ---------------------------------------------------------------- the build


def _key(*parts: object) -> str:
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=16).hexdigest()


class _SiteBuilder:
    """Renders every output of one build into a _Writer, reusing unchanged outputs of the last build."""

    def __init__(self, settings: Settings, templates: Templates, issues: list[Issue], writer: _Writer,
                 cache: _Cache, config_digest: str) -> None:
        self.settings = settings
        self.templates = templates
        self.issues = issues
        self.writer = writer
        self.cache = cache
        self.salt = (config_digest, templates.digest)
        self.new_keys: dict[str, str] = {}
        self.rendered = 0
        self.reused = 0
        self.content_cache: dict[tuple[str, str], str] = {}
        self.tags_by_lang: dict[str, set[str]] = {}
        self.jobs: list[_Job] = []

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
        }

    def page_context(self, lang: str, path: str, title: str, description: str,
                     versions: Sequence[tuple[str, str]], og_type: str = "website",
                     published: str = "", tag: str = "") -> dict[str, Any]:
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
            "alternates": [{"lang": v_lang, "href": s.url(v_path)} for v_lang, v_path in versions] if translated else [],
            "x_default": s.url(default_path) if translated and default_path is not None else "",
            "og_type": og_type,
            "og_locale_alternates": [self.strings(v_lang).get("og_locale", v_lang) for v_lang, _ in others],
            "published": published,
            "switch": [{"lang": v_lang, "path": v_path, "name": self.strings(v_lang).get("language_name", v_lang)}
                       for v_lang, v_path in others],
            "tag": tag,
            "tag_feed": s.url(tag_path(tag, lang, s) + "feed.xml") if tag else "",
        }
        folder = path if path.endswith("/") or not path else path.rsplit("/", 1)[0] + "/" if "/" in path else ""
        return {
            "site": self.site_context(lang),
            "page": page,
            "t": t,
            "url": functools.partial(relative_url, from_dir=folder),
            "tag_path": functools.partial(_tag_path_in, lang=lang, settings=s),
        }

    def strings(self, lang: str) -> Any:
        return self.templates.strings_for(lang, self.settings.language)

    # output with reuse -----------------------------------------------------------

    def output(self, path: str, key: str, make: Callable[[], str | bytes], source: str) -> None:
        """Plan `path`: hard-link it from the last build when its key (all it depends on) is unchanged,
        else queue it for rendering."""
        key = _key(*self.salt, key)
        self.new_keys[path] = key
        target = self.writer.claim(path, source)
        if self.cache.pages.get(path) == key and self.writer.reuse(path, target):
            self.reused += 1
            return
        self.jobs.append(_Job(target, make))
        self.rendered += 1

    def page(self, path: str, key: str, template: str, context: Callable[[], dict[str, Any]], source: str) -> None:
        self.output(path, key, lambda: self.templates.render(template, **context()), source)

    # outputs -----------------------------------------------------------------

    def edition_page(self, issue: Issue, edition: Edition) -> None:
        versions = [(e.lang, e.page_path) for e in issue.editions]
        key = _key(edition.source_hash, *(f"{e.lang}:{e.title}" for e in issue.editions))

        def context() -> dict[str, Any]:
            published = published_at(edition, self.settings).isoformat()
            base = self.page_context(edition.lang, edition.page_path, edition.title,
                                     edition.summary or edition.title, versions, og_type="article",
                                     published=published)
            return {**base, "edition": edition}

        self.page(edition.page_path + "index.html", key, "page.html.j2", context, edition.path)

    def entry_content(self, edition: Edition) -> str:
        """The edition's content for feeds, with absolute links; rendered once per build."""
        key = (edition.slug, edition.lang)
        if key not in self.content_cache:
            s = self.settings
            html = self.templates.render(
                "entry.html.j2", edition=edition, t=self.strings(edition.lang), url=s.url,
                tag_path=functools.partial(_tag_path_in, lang=edition.lang, settings=s),
            )
            self.content_cache[key] = absolutize(html, s.url(edition.page_path))
        return self.content_cache[key]

    def feed(self, path: str, spec: FeedSpec, editions: list[Edition], build: Callable[..., bytes],
             source: str) -> None:
        key = _key(path, spec, *(e.source_hash for e in editions))
        self.output(path, key, lambda: build(spec, editions, self.settings, self.entry_content), source)

    def listing(self, lang: str, base: str, title: str, template: str, editions: list[Edition],
                versions: Sequence[tuple[str, str]], source: str, **extra: Any) -> None:
        """A list of editions split into pages of page_size: base/, base/page/2/, …"""
        size = self.settings.page_size
        count = max(1, -(-len(editions) // size))
        for number in range(1, count + 1):
            path = base if number == 1 else f"{base}page/{number}/"
            chunk = editions[(number - 1) * size : number * size]
            pagination = {
                "number": number,
                "count": count,
                "previous": (base if number == 2 else f"{base}page/{number - 1}/") if number > 1 else "",
                "next": f"{base}page/{number + 1}/" if number < count else "",
            }
            key = _key(path, title, number, count, *(f"{e.source_hash}:{e.page_path}" for e in chunk),
                       *versions, *sorted(extra.items()))
            page_versions = versions if number == 1 else [(lang, path)]

            def context(chunk: list[Edition] = chunk, pagination: dict[str, Any] = pagination,
                        path: str = path, page_versions: Sequence[tuple[str, str]] = page_versions) -> dict[str, Any]:
                wording = self.settings.for_language(lang)
                base_context = self.page_context(lang, path, title, wording.description, page_versions,
                                                 tag=extra.get("tag", ""))
                return {**base_context, **extra, "editions": chunk, "pagination": pagination}

            self.page(path + "index.html", key, template, context, source)

    def language_outputs(self, lang: str, editions: list[Edition]) -> None:
        s = self.settings
        prefix = lang_prefix(lang, s)
        wording = s.for_language(lang)
        t = self.strings(lang)
        index_versions = [(code, lang_prefix(code, s)) for code in s.all_languages]
        self.listing(lang, prefix, wording.title, "index.html.j2", editions, index_versions, "the index")

        newest = editions[: s.feed_size]
        for name, build in (("feed.xml", build_atom), ("rss.xml", build_rss)):
            spec = FeedSpec(lang, wording.title, wording.description,
                            feed_id(s, f"{'feed' if name == 'feed.xml' else 'rss'}/{lang}"),
                            s.url(prefix + name), s.url(prefix))
            self.feed(prefix + name, spec, newest, build, f"the {name} feed")

        by_tag: dict[str, list[Edition]] = {}
        spelled: dict[str, tuple[str, str]] = {}
        for edition in editions:
            for tag in edition.tags:
                first = spelled.setdefault(tag_slug(tag), (tag, edition.path))
                if first[0] != tag:
                    raise BuildError(tag_path(tag, lang, s), f"tag '{tag}' in {edition.path} and '{first[0]}' in "
                                     f"{first[1]} share one page", "spell the tag one way")
                by_tag.setdefault(tag, []).append(edition)
        counts = sorted(((tag, len(items)) for tag, items in by_tag.items()), key=lambda x: (-x[1], x[0]))
        tags_versions = [(code, f"{lang_prefix(code, s)}tags/") for code in s.all_languages]
        all_tags = t.get("all_tags", "Tags")
        self.page(f"{prefix}tags/index.html", _key(*counts, *tags_versions), "tags.html.j2",
                  lambda: {**self.page_context(lang, f"{prefix}tags/", all_tags, wording.description, tags_versions),
                           "tags": counts}, "the tag index")
        for tag, tagged in by_tag.items():
            path = tag_path(tag, lang, s)
            versions = [(code, tag_path(tag, code, s)) for code in s.all_languages
                        if code == lang or tag in self.tags_by_lang.get(code, set())]
            title = t.get("issues_tagged", "{tag}").format(tag=tag)
            self.listing(lang, path, title, "tag.html.j2", tagged, versions, f"tag '{tag}'", tag=tag)
            feed_title = t.get("tag_feed_title", "{title}: {tag}").format(title=wording.title, tag=tag)
            spec = FeedSpec(lang, feed_title, wording.description, feed_id(s, f"tags/{tag_slug(tag)}/{lang}"),
                            s.url(path + "feed.xml"), s.url(path))
            self.feed(path + "feed.xml", spec, tagged[: s.feed_size], build_atom, f"tag '{tag}'")

    def build(self) -> None:
        s = self.settings
        by_lang: dict[str, list[Edition]] = {code: [] for code in s.all_languages}
        for issue in self.issues:
            for edition in issue.editions:
                by_lang[edition.lang].append(edition)
                self.edition_page(issue, edition)
        self.tags_by_lang = {code: {t for e in eds for t in e.tags} for code, eds in by_lang.items()}
        for lang, editions in by_lang.items():
            self.language_outputs(lang, editions)
        t = self.strings(s.language)
        context = self.page_context(s.language, "404.html", t.get("not_found_title", "404"), s.description,
                                    [(s.language, "404.html")])
        self.writer.write("404.html", self.templates.render("404.html.j2", **context), "the 404 page")
        self.writer.write("sitemap.xml", build_sitemap(s, self.issues, by_lang, self.tags_by_lang), "the sitemap")
        self.writer.write("robots.txt", f"User-agent: *\nAllow: /\nSitemap: {s.url('sitemap.xml')}\n", "robots.txt")
        static = self.templates.folder / "static"
        for file in sorted(static.rglob("*")) if static.is_dir() else []:
            if file.is_file():
                self.writer.write(f"static/{file.relative_to(static).as_posix()}", file.read_bytes(),
                                  f"templates/static/{file.name}")


def _tag_path_in(tag: str, lang: str, settings: Settings) -> str:
    return tag_path(tag, lang, settings)


def build_sitemap(settings: Settings, issues: Iterable[Issue], by_lang: dict[str, list[Edition]],
                  tags_by_lang: dict[str, set[str]]) -> str:
    """sitemaps.org XML with hreflang alternates (xhtml:link) for each page that has translations."""
    s = settings
    rows: list[str] = []

    def url_entry(path: str, lastmod: str, versions: Sequence[tuple[str, str]]) -> None:
        links = ""
        if len(versions) > 1:
            links = "".join(
                f'\n    <xhtml:link rel="alternate" hreflang="{code}" href={quoteattr(s.url(p))}/>'
                for code, p in versions
            )
        rows.append(f"  <url>\n    <loc>{escape(s.url(path))}</loc>\n    <lastmod>{lastmod}</lastmod>{links}\n  </url>")

    newest = {code: (eds[0].date.isoformat() if eds else s.id_date) for code, eds in by_lang.items()}
    index_versions = [(code, lang_prefix(code, s)) for code in s.all_languages]
    for code in s.all_languages:
        url_entry(lang_prefix(code, s), newest[code], index_versions)
    for issue in issues:
        versions = [(e.lang, e.page_path) for e in issue.editions]
        for edition in issue.editions:
            url_entry(edition.page_path, edition.date.isoformat(), versions)
    for code, editions in by_lang.items():
        latest: dict[str, str] = {}
        for edition in editions:
            for tag in edition.tags:
                latest.setdefault(tag, edition.date.isoformat())
        for tag, lastmod in sorted(latest.items()):
            versions = [(c, tag_path(tag, c, s)) for c in s.all_languages if tag in tags_by_lang.get(c, set())]
            url_entry(tag_path(tag, code, s), lastmod, versions)
    body = "\n".join(rows)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
            'xmlns:xhtml="http://www.w3.org/1999/xhtml">\n' f"{body}\n</urlset>\n")


def _remove_in_background(folder: Path) -> None:
    """Delete the retired site in a detached grandchild so the command returns at once."""
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


def _config_digest(settings: Settings) -> str:
    raw = (settings.root / "pyproject.toml").read_bytes()
    return hashlib.blake2b(raw + settings.base_url.encode(), digest_size=16).hexdigest()


def build_site(settings: Settings, **options: Any) -> BuildResult:
    """Build the whole archive into `out` (default `<root>/site`), swapping it in only when complete.

    The cyclic garbage collector is paused meanwhile: a build allocates many objects and frees them
    all at the end, and collections during it cost a third of the time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _build_site(settings, **options)
    finally:
        if was_enabled:
            gc.enable()


def _build_site(settings: Settings, *, out: Path | None = None, templates: Templates | None = None,
               workers: int | None = None, use_cache: bool = True,
               progress: Callable[[str], None] | None = None) -> BuildResult:
    started = time.perf_counter()
    out = (out or settings.root / "site").resolve()
    templates = templates or load_templates(settings)
    cache = _Cache(settings.root / ".cache" / "site" if use_cache else None)
    if not out.is_dir():
        cache.pages = {}
    workers = workers or min(2, os.cpu_count() or 1)
    editions, keys = parse_all(settings, cache, workers)
    issues = group_editions((e for e in editions if not e.draft), settings)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.new-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    writer = _Writer(staging, out if out.is_dir() else None)
    builder = _SiteBuilder(settings, templates, issues, writer, cache, _config_digest(settings))
    try:
        builder.build()
        _run_all(builder.jobs, workers)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    retired = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, retired)
    os.replace(staging, out)
    _remove_in_background(retired)
    cache.save(builder.new_keys, keys)
    return BuildResult(out, len(issues), len(writer.sources), builder.rendered, builder.reused,
                       time.perf_counter() - started)
