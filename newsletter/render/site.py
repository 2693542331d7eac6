"""Build the archive site: edition pages, indexes, tag pages, feeds, sitemap and 404.

Outputs are rendered aside and swapped in only when all of them rendered, so a failed build leaves the
previous site untouched. A cache (`.cache/site/`) keyed by content hash makes a rebuild re-parse only
changed files and re-render only outputs whose inputs changed; listings read light records of each
edition and load a full one only to render it. No output path may be written twice.
"""

from __future__ import annotations

import datetime as dt
import functools
import gc
import hashlib
import os
import pickle
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..config import Settings
from ..errors import BuildError, IssueError
from ..issues import (
    Edition,
    edition_page_path,
    find_issue_files,
    group_by_issue,
    parse_issue,
    split_file_name,
)
from .feeds import FeedSpec, absolutize, build_atom, build_rss, feed_id, published_at
from .templates import Templates, load_templates

CACHE_VERSION = "site-3"
PARALLEL_THRESHOLD = 64  # below this much work, starting worker processes costs more than it saves


@dataclass(frozen=True)
class ListedSection:
    """What a listing shows of one section."""

    anchor: str
    title: str
    tags: tuple[str, ...]


@dataclass(frozen=True)
class ListedEdition:
    """What listings, feeds' metadata and grouping need of an edition: everything but its HTML."""

    slug: str
    lang: str
    is_default: bool
    path: str
    title: str
    date: dt.date
    summary: str
    tags: tuple[str, ...]
    draft: bool
    source_hash: str
    sections: tuple[ListedSection, ...]

    @property
    def page_path(self) -> str:
        return edition_page_path(self.slug, self.lang, self.is_default)

    @classmethod
    def of(cls, edition: Edition) -> ListedEdition:
        return cls(
            slug=edition.slug,
            lang=edition.lang,
            is_default=edition.is_default,
            path=edition.path,
            title=edition.title,
            date=edition.date,
            summary=edition.summary,
            tags=edition.tags,
            draft=edition.draft,
            source_hash=edition.source_hash,
            sections=tuple(ListedSection(s.anchor, s.title, s.tags) for s in edition.sections),
        )


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


# ---------------------------------------------------------------- the cache


@dataclass
class _Cache:
    """`.cache/site/`: index.pickle (file stats → parse keys, listed editions, where each full edition is),
    pages.pickle (the key of each output of the site on disk) and editions/<batch>.pickle (full editions,
    one file per batch a worker parsed). Anything unreadable counts as absent."""

    folder: Path | None
    files: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # file name → (mtime_ns, size, key)
    listed: dict[str, ListedEdition] = field(default_factory=dict)  # parse key → record
    location: dict[str, str] = field(default_factory=dict)  # parse key → batch file holding the full edition
    pages: dict[str, str] = field(default_factory=dict)  # output path → key
    batches: dict[str, dict[str, Edition]] = field(default_factory=dict)  # batch files loaded in this process

    @classmethod
    def load(cls, folder: Path | None) -> _Cache:
        cache = cls(folder)
        if folder is None:
            return cache
        try:
            with (folder / "index.pickle").open("rb") as handle:
                version, files, listed, location = pickle.load(handle)
            if version == CACHE_VERSION:
                cache.files, cache.listed, cache.location = files, listed, location
            with (folder / "pages.pickle").open("rb") as handle:
                version, pages = pickle.load(handle)
            if version == CACHE_VERSION:
                cache.pages = pages
        except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError):
            pass
        return cache

    def knows(self, key: str) -> bool:
        return key in self.listed and key in self.location

    def full(self, key: str) -> Edition:
        name = self.location[key]
        if name not in self.batches:
            assert self.folder is not None
            with (self.folder / "editions" / f"{name}.pickle").open("rb") as handle:
                self.batches[name] = pickle.load(handle)
        return self.batches[name][key]

    def forget_pages(self) -> None:
        """Drop the record of the site on disk (before changing it, so a crash means a cold build)."""
        self.pages = {}
        if self.folder is not None:
            (self.folder / "pages.pickle").unlink(missing_ok=True)

    def save(self, pages: dict[str, str], *, parsed_any: bool) -> None:
        """Record the site now on disk, and the editions when any was parsed in this build."""
        self.pages = pages
        if self.folder is None:
            return
        _atomic_pickle(self.folder / "pages.pickle", (CACHE_VERSION, pages))
        if parsed_any or not (self.folder / "index.pickle").is_file():
            _atomic_pickle(self.folder / "index.pickle", (CACHE_VERSION, self.files, self.listed, self.location))
            used = set(self.location.values())
            for batch in (self.folder / "editions").glob("*.pickle"):
                if batch.stem not in used:
                    batch.unlink(missing_ok=True)


def _atomic_pickle(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("wb") as handle:
        pickle.dump(value, handle, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(temporary, path)


# ---------------------------------------------------------------- parsing


def _parse_key(path: Path, raw: bytes, settings: Settings) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for part in (CACHE_VERSION, path.name, settings.language, ",".join(settings.languages)):
        digest.update(part.encode() + b"\0")
    digest.update(raw)
    return digest.hexdigest()


_PRERENDER: Callable[[Edition], tuple[str, str] | None] | None = None  # set before forking parse workers


def _parse_batch(batch: list[tuple[str | None, Path]], settings: Settings, cache: _Cache) -> tuple[str, list[tuple]]:
    """Read, parse and pre-render each file (in a worker); keep the full editions in one cache file.

    Returns (the batch file's name, a result per file: ("ok", key, record, (page path, key) or None) or
    ("error", key, IssueError fields)). Without a cache the full edition comes back instead of the record.
    """
    name = uuid.uuid4().hex
    results: list[tuple] = []
    parsed: dict[str, Edition] = {}
    for key, path in batch:
        raw = path.read_bytes()
        key = key or _parse_key(path, raw, settings)
        try:
            edition = parse_issue(path, settings, raw)
        except IssueError as err:
            results.append(("error", key, (err.path, err.line, err.message, err.hint)))
            continue
        page = _PRERENDER(edition) if _PRERENDER else None
        parsed[key] = edition
        results.append(("ok", key, ListedEdition.of(edition) if cache.folder else edition, page))
    if cache.folder is not None and parsed:
        _atomic_pickle(cache.folder / "editions" / f"{name}.pickle", parsed)
    return name, results


def scan_issues(
    settings: Settings,
    cache: _Cache,
    workers: int,
    prerender: Callable[[Edition], tuple[str, str] | None] | None = None,
) -> tuple[list[ListedEdition], dict[str, Edition], dict[str, str]]:
    """(a record of every issue file, the full editions parsed now and not cached by key, the pages
    `prerender` made of the editions parsed now, as path → key).

    A file whose size and mtime match the cache is not even read; one whose bytes hash to a cached key
    is not parsed again. With nothing cached, the workers read and hash the files themselves.
    """
    stats: dict[str, tuple[int, int]] = {}
    keys: dict[str, str] = {}  # file name → key
    wanted: list[tuple[str | None, Path]] = []
    for path in find_issue_files(settings):
        stat = path.stat()
        stats[path.name] = (stat.st_mtime_ns, stat.st_size)
        known = cache.files.get(path.name)
        if known and known[:2] == stats[path.name] and cache.knows(known[2]):
            keys[path.name] = known[2]
        elif not cache.listed:
            wanted.append((None, path))
        else:
            key = _parse_key(path, path.read_bytes(), settings)
            if cache.knows(key):
                keys[path.name] = key
            else:
                wanted.append((key, path))
    global _PRERENDER
    _PRERENDER = prerender
    try:
        if len(wanted) >= PARALLEL_THRESHOLD and workers > 1:
            size = -(-len(wanted) // (workers * 8))  # small batches: no worker waits long for the last
            batches = [wanted[i : i + size] for i in range(0, len(wanted), size)]
            with _pool(workers) as pool:
                outcomes = list(pool.map(_parse_batch, batches, [settings] * len(batches), [cache] * len(batches)))
        else:
            outcomes = [_parse_batch(wanted, settings, cache)]
    finally:
        _PRERENDER = None
    fresh: dict[str, Edition] = {}
    pages: dict[str, str] = {}
    for (_, path), (batch_name, (status, key, result, *page)) in zip(
        wanted, ((name, result) for name, results in outcomes for result in results), strict=True
    ):
        if status == "error":
            raise IssueError(*result)
        if isinstance(result, Edition):
            fresh[key] = result
            result = ListedEdition.of(result)
        cache.listed[key] = result
        cache.location[key] = batch_name
        keys[path.name] = key
        if page and page[0]:
            pages[page[0][0]] = page[0][1]
    cache.files = {name: (*stats[name], key) for name, key in keys.items()}
    live = set(keys.values())
    cache.listed = {key: record for key, record in cache.listed.items() if key in live}
    cache.location = {key: batch for key, batch in cache.location.items() if key in live}
    listed = [cache.listed[key] for name, key in sorted(keys.items())]
    return listed, fresh, pages


def _pool(workers: int) -> Any:
    """Forked workers: they inherit the parsed data and templates instead of receiving them pickled."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork"))


# ---------------------------------------------------------------- rendering


@dataclass(frozen=True)
class _Job:
    """One output to render: its site path and how to make its bytes."""

    path: str
    make: Callable[[], str | bytes]


_PENDING: list[_Job] = []  # set before forking render workers, which inherit it
_STAGING: Path = Path()


_MADE_DIRS: set[str] = set()  # folders this process made or saw: one mkdir each, not one per file


def _write(target: Path, data: str | bytes) -> None:
    folder = os.path.dirname(target)
    if folder not in _MADE_DIRS:
        os.makedirs(folder, exist_ok=True)
        _MADE_DIRS.add(folder)
    with open(target, "wb") as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)


def _run_jobs(indices: list[int]) -> int:
    for index in indices:
        job = _PENDING[index]
        _write(_STAGING / job.path, job.make())
    return len(indices)


def _run_all(jobs: list[_Job], staging: Path, workers: int) -> None:
    """Render every job into `staging`, split over forked workers when there are many."""
    global _PENDING, _STAGING
    _PENDING, _STAGING = jobs, staging
    try:
        if len(jobs) < PARALLEL_THRESHOLD or workers < 2:
            _run_jobs(list(range(len(jobs))))
            return
        # Feeds cost ten listing pages each: hand them out first, then the rest in small chunks that
        # idle workers pick up, so both finish together.
        order = sorted(range(len(jobs)), key=lambda i: not jobs[i].path.endswith(".xml"))
        chunks = [order[i : i + 8] for i in range(0, len(order), 8)]
        with _pool(workers) as pool:
            list(pool.map(_run_jobs, chunks))
    finally:
        _PENDING = []


def _key(*parts: object) -> str:
    """A short digest of everything an output depends on."""
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=16).hexdigest()


class _SiteBuilder:
    """Plans every output of one build: reuse it from the site on disk, or a job to render it."""

    def __init__(
        self,
        settings: Settings,
        templates: Templates,
        cache: _Cache,
        previous: Path | None,
        staging: Path,
        config_digest: str,
    ) -> None:
        self.settings = settings
        self.templates = templates
        self.cache = cache
        self.issues: list[list[ListedEdition]] = []
        self.fresh: dict[str, Edition] = {}
        self.keys_by_hash: dict[str, str] = {}
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
        self.content_cache: dict[tuple[str, str], str] = {}
        self.tags_by_lang: dict[str, set[str]] = {}
        self.jobs: list[_Job] = []

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

    def prerender(self, edition: Edition) -> tuple[str, str] | None:
        """Render `edition`'s page into staging (in a parse worker); the plan keeps it if its key holds."""
        versions = self.assumed_versions.get(edition.slug)
        if edition.draft or not versions:
            return None
        path = edition.page_path + "index.html"
        key = _key(*self.salt, self.edition_key(edition.source_hash, versions))
        _write(self.staging / path, self.templates.render("page.html.j2", **self.edition_context(edition, versions)))
        return path, key

    def plan(self, issues: list[list[ListedEdition]], fresh: dict[str, Edition], prerendered: dict[str, str]) -> None:
        self.issues = issues
        self.fresh = {edition.source_hash: edition for edition in fresh.values()}
        self.keys_by_hash = {record.source_hash: key for key, record in self.cache.listed.items()}
        self.prerendered = prerendered
        self.build()

    def full(self, listed: ListedEdition) -> Edition:
        """The full edition behind a record: parsed in this build, or loaded from the cache."""
        edition = self.fresh.get(listed.source_hash)
        if edition is None:
            edition = self.cache.full(self.keys_by_hash[listed.source_hash])
            self.fresh[listed.source_hash] = edition
        return edition

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
            "tag_path": functools.partial(_tag_path_in, lang=lang, settings=s),
        }

    def strings(self, lang: str) -> Any:
        return self.templates.strings_for(lang, self.settings.language)

    # output with reuse -----------------------------------------------------------

    def output(self, path: str, key: str, make: Callable[[], str | bytes], source: str) -> None:
        """Plan `path`: keep it when the site on disk has it with the same key (all it depends on),
        else queue a job to render it. Refuses a second output at one path, naming both sources."""
        self.claim(path, source)
        key = _key(*self.salt, key)
        self.new_keys[path] = key
        if (
            self.previous is not None
            and self.cache.pages.get(path) == key
            and os.path.isfile(self.previous_prefix + path)
        ):
            self.reused += 1
            return
        self.jobs.append(_Job(path, make))
        self.moved.append(path)
        self.rendered += 1

    def claim(self, path: str, source: str) -> None:
        """Refuse a second output at one path, naming both sources."""
        if path in self.sources:
            raise BuildError(
                path, f"would be written twice: by {self.sources[path]} and by {source}", "rename one of them"
            )
        self.sources[path] = source

    def data(self, path: str, data: str | bytes, source: str) -> None:
        """An output whose content is known now (its key is its hash)."""
        raw = data.encode("utf-8") if isinstance(data, str) else data
        self.output(path, hashlib.blake2b(raw, digest_size=16).hexdigest(), lambda: raw, source)

    def page(self, path: str, key: str, template: str, context: Callable[[], dict[str, Any]], source: str) -> None:
        self.output(path, key, lambda: self.templates.render(template, **context()), source)

    # outputs -----------------------------------------------------------------

    @staticmethod
    def edition_key(source_hash: str, versions: Sequence[tuple[str, str]]) -> str:
        return _key(source_hash, *versions)

    def edition_context(self, edition: Edition, versions: Sequence[tuple[str, str]]) -> dict[str, Any]:
        published = published_at(edition, self.settings).isoformat()
        base = self.page_context(
            edition.lang,
            edition.page_path,
            edition.title,
            edition.summary or edition.title,
            versions,
            og_type="article",
            published=published,
        )
        return {**base, "edition": edition}

    def edition_page(self, issue: list[ListedEdition], listed: ListedEdition) -> None:
        versions = [(e.lang, e.page_path) for e in issue]
        key = self.edition_key(listed.source_hash, versions)
        path = listed.page_path + "index.html"
        if self.prerendered.get(path) == _key(*self.salt, key):
            self.claim(path, listed.path)
            self.new_keys[path] = self.prerendered[path]
            self.moved.append(path)
            self.rendered += 1
            return
        self.page(path, key, "page.html.j2", lambda: self.edition_context(self.full(listed), versions), listed.path)

    def entry_content(self, listed: ListedEdition) -> str:
        """The edition's content for feeds, with absolute links; rendered once per build and process."""
        key = (listed.slug, listed.lang)
        if key not in self.content_cache:
            s = self.settings
            edition = self.full(listed)
            html = self.templates.render(
                "entry.html.j2",
                edition=edition,
                t=self.strings(edition.lang),
                url=s.url,
                tag_path=functools.partial(_tag_path_in, lang=edition.lang, settings=s),
            )
            self.content_cache[key] = absolutize(html, s.url(edition.page_path))
        return self.content_cache[key]

    def feed(
        self, path: str, spec: FeedSpec, editions: list[ListedEdition], build: Callable[..., bytes], source: str
    ) -> None:
        key = _key(path, spec, *(e.source_hash for e in editions))
        self.output(path, key, lambda: build(spec, editions, self.settings, self.entry_content), source)

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
        """A list of editions split into pages of page_size: base/, base/page/2/, …"""
        size = self.settings.page_size
        count = max(1, -(-len(editions) // size))
        for number in range(1, count + 1):
            path = base if number == 1 else f"{base}page/{number}/"
            chunk = editions[(number - 1) * size : number * size]
            pagination = {
                "number": number,
                "count": count,
                "previous": (base if number == 2 else f"{base}page/{number - 1}/") if number > 1 else None,
                "next": f"{base}page/{number + 1}/" if number < count else None,
            }
            key = _key(
                path,
                title,
                number,
                count,
                *(f"{e.source_hash}:{e.page_path}" for e in chunk),
                *versions,
                *sorted(extra.items()),
            )
            page_versions = versions if number == 1 else [(lang, path)]

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
                tag = extra.get("tag")
                # a tag page lists, under each issue, its sections that carry the tag (filtered here, not in Jinja)
                entries = [(e, [sec for sec in e.sections if tag in sec.tags]) for e in chunk] if tag else []
                return {**base_context, **extra, "editions": chunk, "entries": entries, "pagination": pagination}

            self.page(path + "index.html", key, template, context, source)

    def language_outputs(self, lang: str, editions: list[ListedEdition]) -> None:
        s = self.settings
        prefix = lang_prefix(lang, s)
        wording = s.for_language(lang)
        t = self.strings(lang)
        index_versions = [(code, lang_prefix(code, s)) for code in s.all_languages]
        self.listing(lang, prefix, wording.title, "index.html.j2", editions, index_versions, "the index")

        newest = editions[: s.feed_size]
        for name, build in (("feed.xml", build_atom), ("rss.xml", build_rss)):
            spec = FeedSpec(
                lang,
                wording.title,
                wording.description,
                feed_id(s, f"{'feed' if name == 'feed.xml' else 'rss'}/{lang}"),
                s.url(prefix + name),
                s.url(prefix),
            )
            self.feed(prefix + name, spec, newest, build, f"the {name} feed")

        by_tag: dict[str, list[ListedEdition]] = {}
        spelled: dict[str, tuple[str, str]] = {}
        for edition in editions:
            for tag in edition.tags:
                first = spelled.setdefault(tag_slug(tag), (tag, edition.path))
                if first[0] != tag:
                    raise BuildError(
                        tag_path(tag, lang, s),
                        f"tag '{tag}' in {edition.path} and '{first[0]}' in {first[1]} share one page",
                        "spell the tag one way",
                    )
                by_tag.setdefault(tag, []).append(edition)
        counts = sorted(((tag, len(items)) for tag, items in by_tag.items()), key=lambda x: (-x[1], x[0]))
        tags_versions = [(code, f"{lang_prefix(code, s)}tags/") for code in s.all_languages]
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
            versions = [
                (code, tag_path(tag, code, s))
                for code in s.all_languages
                if code == lang or tag in self.tags_by_lang.get(code, set())
            ]
            title = t.get("issues_tagged", "{tag}").format(tag=tag)
            self.listing(lang, path, title, "tag.html.j2", tagged, versions, f"tag '{tag}'", tag=tag)
            feed_title = t.get("tag_feed_title", "{title}: {tag}").format(title=wording.title, tag=tag)
            spec = FeedSpec(
                lang,
                feed_title,
                wording.description,
                feed_id(s, f"tags/{tag_slug(tag)}/{lang}"),
                s.url(path + "feed.xml"),
                s.url(path),
            )
            self.feed(path + "feed.xml", spec, tagged[: s.feed_size], build_atom, f"tag '{tag}'")

    def build(self) -> None:
        s = self.settings
        by_lang: dict[str, list[ListedEdition]] = {code: [] for code in s.all_languages}
        for issue in self.issues:
            for edition in issue:
                by_lang[edition.lang].append(edition)
                self.edition_page(issue, edition)
        self.tags_by_lang = {code: {t for e in eds for t in e.tags} for code, eds in by_lang.items()}
        for lang, editions in by_lang.items():
            self.language_outputs(lang, editions)
        t = self.strings(s.language)
        context = self.page_context(
            s.language, "404.html", t.get("not_found_title", "404"), s.description, [(s.language, "404.html")]
        )
        self.data("404.html", self.templates.render("404.html.j2", **context), "the 404 page")
        self.data("sitemap.xml", build_sitemap(s, self.issues, by_lang, self.tags_by_lang), "the sitemap")
        self.data("robots.txt", f"User-agent: *\nAllow: /\nSitemap: {s.url('sitemap.xml')}\n", "robots.txt")
        static = self.templates.folder / "static"
        for file in sorted(static.rglob("*")) if static.is_dir() else []:
            if file.is_file():
                self.data(
                    f"static/{file.relative_to(static).as_posix()}", file.read_bytes(), f"templates/static/{file.name}"
                )


def _tag_path_in(tag: str, lang: str, settings: Settings) -> str:
    return tag_path(tag, lang, settings)


def build_sitemap(
    settings: Settings,
    issues: Iterable[list[ListedEdition]],
    by_lang: dict[str, list[ListedEdition]],
    tags_by_lang: dict[str, set[str]],
) -> str:
    """sitemaps.org XML with hreflang alternates (xhtml:link) for each page that has translations."""
    s = settings
    rows: list[str] = []

    def url_entry(path: str, lastmod: str, versions: Sequence[tuple[str, str]]) -> None:
        links = ""
        if len(versions) > 1:
            links = "".join(
                f'\n    <xhtml:link rel="alternate" hreflang="{code}" href="{escape(s.url(p))}"/>'
                for code, p in versions
            )
        rows.append(f"  <url>\n    <loc>{escape(s.url(path))}</loc>\n    <lastmod>{lastmod}</lastmod>{links}\n  </url>")

    newest = {code: (eds[0].date.isoformat() if eds else s.id_date) for code, eds in by_lang.items()}
    index_versions = [(code, lang_prefix(code, s)) for code in s.all_languages]
    for code in s.all_languages:
        url_entry(lang_prefix(code, s), newest[code], index_versions)
    for issue in issues:
        versions = [(e.lang, e.page_path) for e in issue]
        for edition in issue:
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
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
        'xmlns:xhtml="http://www.w3.org/1999/xhtml">\n'
        f"{body}\n</urlset>\n"
    )


def _swap(out: Path, staging: Path, builder: _SiteBuilder, previous_pages: dict[str, str]) -> None:
    """Put the rendered outputs in place. Cold: the staging folder becomes the site in one rename.
    Incremental: each rendered file replaces its old version; outputs no longer made are removed."""
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
    for gone in set(previous_pages) - set(builder.new_keys):
        path = out / gone
        path.unlink(missing_ok=True)
        for parent in path.parents:
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


def _config_digest(settings: Settings) -> str:
    raw = (settings.root / "pyproject.toml").read_bytes()
    return hashlib.blake2b(raw + settings.base_url.encode(), digest_size=16).hexdigest()


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


def _build_site(
    settings: Settings,
    *,
    out: Path | None = None,
    templates: Templates | None = None,
    workers: int | None = None,
    use_cache: bool = True,
) -> BuildResult:
    started = time.perf_counter()
    out = (out or settings.root / "site").resolve()
    templates = templates or load_templates(settings)
    templates.preload("page.html.j2", "entry.html.j2", "index.html.j2", "tag.html.j2", "tags.html.j2", "404.html.j2")
    workers = workers or min(2, os.cpu_count() or 1)
    cache = _Cache.load(settings.root / ".cache" / "site" if use_cache else None)
    previous = out if out.is_dir() and cache.pages else None
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.new-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    _MADE_DIRS.clear()
    builder = _SiteBuilder(settings, templates, cache, previous, staging, _config_digest(settings))
    known = set(cache.listed)
    try:
        files = find_issue_files(settings)
        builder.assume_versions(files)
        listed, fresh, prerendered = scan_issues(settings, cache, workers, builder.prerender)
        issues = group_by_issue((e for e in listed if not e.draft), settings)
        builder.plan(issues, fresh, prerendered)
        _run_all(builder.jobs, staging, workers)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    previous_pages = cache.pages
    cache.forget_pages()
    _swap(out, staging, builder, previous_pages)
    cache.save(builder.new_keys, parsed_any=set(cache.listed) != known or bool(fresh))
    return BuildResult(
        out, len(issues), len(builder.new_keys), builder.rendered, builder.reused, time.perf_counter() - started
    )
