"""The site build's memory of earlier builds (`.cache/site/`) and the parse step that fills it.

A file whose size and mtime match the cache is not read; one whose bytes hash to a cached key is not parsed
again. Listings need only light records of editions; full editions wait in batch files for whoever renders
them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import pickle
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings
from ..errors import IssueError
from ..issues import Edition, edition_page_path, find_issue_files, parse_issue
from .parallel import PARALLEL_THRESHOLD, worker_pool

CACHE_VERSION = "site-3"


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


@dataclass
class BuildCache:
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
    def load(cls, folder: Path | None) -> BuildCache:
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


def _parse_batch(
    batch: list[tuple[str | None, Path]], settings: Settings, cache: BuildCache
) -> tuple[str, list[tuple]]:
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
    cache: BuildCache,
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
            with worker_pool(workers) as pool:
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
