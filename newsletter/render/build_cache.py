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
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings
from ..errors import IssueError
from ..issues import MAX_FILE_BYTES, Edition, find_issue_files, parse_issue, read_issue_file, source_hash
from .parallel import PARALLEL_THRESHOLD, worker_pool

CACHE_VERSION = "site-9"
BATCH_KINDS = ("editions", "records", "articles")  # what each parse batch keeps, one file of each


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
    publish_at: dt.datetime | None  # front-matter publish_at: with the date, when the issue may go public
    source_hash: str
    sections: tuple[ListedSection, ...]
    page_path: str  # kept, not derived: listings ask for it tens of thousands of times
    key: str  # the parse key: where the cache keeps the full edition and its article
    issue_tags: tuple[str, ...] = ()  # the front-matter tags: every paper carries them (a tag's feed)

    @classmethod
    def of(cls, edition: Edition, key: str) -> ListedEdition:
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
            publish_at=edition.publish_at,
            source_hash=edition.source_hash,
            sections=tuple(ListedSection(s.anchor, s.title, s.tags) for s in edition.sections),
            page_path=edition.page_path,
            key=key,
            issue_tags=edition.issue_tags,
        )


@dataclass
class BuildCache:
    """`.cache/site/`: index.pickle (file stats → parse keys, and the batch each parsed edition lives in),
    pages.pickle (the key of each output of the site on disk), and per batch a worker parsed:
    editions/<batch>.pickle (full editions), records/<batch>.pickle (their listing records) and
    articles/<batch>.pickle (their rendered articles, by a key that includes the templates and settings).
    A rebuild that parses one file writes one small batch and the index, not every record again.
    Anything unreadable counts as absent."""

    folder: Path | None
    files: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # file name → (mtime_ns, size, key)
    listed: dict[str, ListedEdition] = field(default_factory=dict)  # parse key → record
    location: dict[str, str] = field(default_factory=dict)  # parse key → batch file holding the full edition
    pages: dict[str, str] = field(default_factory=dict)  # output path → key
    batches: dict[str, dict[str, Edition]] = field(default_factory=dict)  # batch files loaded in this process
    article_batches: dict[str, dict[str, bytes]] = field(default_factory=dict)  # the same, of articles

    @classmethod
    def load(cls, folder: Path | None) -> BuildCache:
        cache = cls(folder)
        if folder is None:
            return cache
        try:
            with (folder / "index.pickle").open("rb") as handle:
                version, files, location = pickle.load(handle)
            if version == CACHE_VERSION:
                cache.files, cache.location = files, location
                for name in set(location.values()):
                    cache.listed.update(
                        (key, record)
                        for key, record in _load_batch("records", folder, name).items()
                        if location.get(key) == name
                    )
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

    def article(self, key: str, article_key: str) -> str | None:
        """The article kept for the edition with parse key `key` under `article_key`, if there is one."""
        name = self.location.get(key)
        if self.folder is None or name is None:
            return None
        if name not in self.article_batches:
            self.article_batches[name] = _load_batch("articles", self.folder, name)
        article = self.article_batches[name].get(article_key)
        return None if article is None else article.decode("utf-8")

    def forget_pages(self) -> None:
        """Drop the record of the site on disk (before changing it, so a crash means a cold build)."""
        self.pages = {}
        if self.folder is not None:
            (self.folder / "pages.pickle").unlink(missing_ok=True)

    def save_index(self) -> None:
        """Record which batch holds each parsed edition (index.pickle); drop batches none lives in any more."""
        if self.folder is None:
            return
        _atomic_pickle(self.folder / "index.pickle", (CACHE_VERSION, self.files, self.location))
        used = set(self.location.values())
        for kind in BATCH_KINDS:
            for batch in (self.folder / kind).glob("*.pickle"):
                if batch.stem not in used:
                    batch.unlink(missing_ok=True)

    def save_pages(self, pages: dict[str, str]) -> None:
        """Record the site now on disk."""
        self.pages = pages
        if self.folder is not None:
            _atomic_pickle(self.folder / "pages.pickle", (CACHE_VERSION, pages))


def _load_batch(kind: str, folder: Path, name: str) -> dict:
    """One batch file's contents by parse key; empty when it is missing or unreadable."""
    try:
        with (folder / kind / f"{name}.pickle").open("rb") as handle:
            return pickle.load(handle)
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError):
        return {}


def _atomic_pickle(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("wb") as handle:
        pickle.dump(value, handle, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(temporary, path)


# ---------------------------------------------------------------- parsing


def _parse_key(path: Path, content_hash: str, settings: Settings) -> str:
    """What an edition depends on: the file's name and bytes (by their hash), the languages, this code."""
    parts = (CACHE_VERSION, path.name, settings.language, ",".join(settings.languages), content_hash)
    return hashlib.blake2b("\0".join(parts).encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class Prerendered:
    """An edition page rendered while parsing: its site path and key, and its article (the edition's
    content as entry.html.j2 renders it, which the feeds reuse) with the key that article is kept under."""

    path: str
    key: str
    article_key: str
    article: str

    @property
    def path_key(self) -> tuple[str, str]:
        return self.path, self.key


@dataclass
class ScanResult:
    """What scanning the issue files gives the site builder."""

    listed: list[ListedEdition]  # a record of every issue file, sorted by file name
    fresh: dict[str, Edition]  # full editions parsed now and not cached, by parse key
    pages: dict[str, str]  # pages rendered while parsing: path → key


_PRERENDER: Callable[[Edition], Prerendered | None] | None = None  # set before forking parse workers


def _parse_batch(
    batch: list[tuple[str | None, Path]], settings: Settings, cache: BuildCache
) -> tuple[str, list[tuple]]:
    """Read, parse and pre-render each file (in a worker); keep the batch's full editions, their records
    and their pages' articles (for the feeds) in one cache file each (BATCH_KINDS).

    Returns (the batch's name, a result per file: ("ok", key, record, (page path, page key) or None)
    or ("error", key, IssueError fields)). Without a cache the full edition comes back instead of the record.
    """
    name = os.urandom(16).hex()
    results: list[tuple] = []
    parsed: dict[str, Edition] = {}
    records: dict[str, ListedEdition] = {}
    articles: dict[str, bytes] = {}  # UTF-8: loading bytes costs a copy, loading text a decode of every one
    for key, path in batch:
        raw = b""
        try:
            raw = read_issue_file(path, settings)
            edition = parse_issue(path, settings, raw)
        except IssueError as err:
            key = key or _parse_key(path, source_hash(raw), settings)
            results.append(("error", key, (err.path, err.line, err.message, err.hint)))
            continue
        key = key or _parse_key(path, edition.source_hash, settings)
        page = _PRERENDER(edition) if _PRERENDER else None
        if page is not None:
            articles[page.article_key] = page.article.encode("utf-8")
        parsed[key] = edition
        records[key] = ListedEdition.of(edition, key)
        results.append(("ok", key, records[key] if cache.folder else edition, page and page.path_key))
    if cache.folder is not None and parsed:
        _atomic_pickle(cache.folder / "editions" / f"{name}.pickle", parsed)
        _atomic_pickle(cache.folder / "records" / f"{name}.pickle", records)
        if articles:
            _atomic_pickle(cache.folder / "articles" / f"{name}.pickle", articles)
    return name, results


def scan_issues(
    settings: Settings,
    cache: BuildCache,
    workers: int,
    prerender: Callable[[Edition], Prerendered | None] | None = None,
    files: list[Path] | None = None,
    while_parsing: Callable[[], None] = lambda: None,
) -> ScanResult:
    """Records of every issue file, parsing (and `prerender`ing) those the cache does not know. When
    worker processes parse, the parent runs `while_parsing` meanwhile.

    A file whose size and mtime match the cache is not even read; one whose bytes hash to a cached key
    is not parsed again. With nothing cached, the workers read and hash the files themselves.
    """
    stats: dict[str, tuple[int, int]] = {}
    keys: dict[str, str] = {}  # file name → key
    wanted: list[tuple[str | None, Path]] = []
    for path in find_issue_files(settings) if files is None else files:
        status = path.stat()
        stats[path.name] = (status.st_mtime_ns, status.st_size)
        known = cache.files.get(path.name)
        if known and known[:2] == stats[path.name] and cache.knows(known[2]):
            keys[path.name] = known[2]
        elif not cache.listed or not stat.S_ISREG(status.st_mode) or status.st_size > MAX_FILE_BYTES:
            wanted.append((None, path))  # parsing reads it, or names what is wrong with it
        else:
            key = _parse_key(path, source_hash(path.read_bytes()), settings)
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
                parsing = pool.map(_parse_batch, batches, [settings] * len(batches), [cache] * len(batches))
                while_parsing()
                outcomes = list(parsing)
        else:
            outcomes = [_parse_batch(wanted, settings, cache)]
    finally:
        _PRERENDER = None
    found = ScanResult([], {}, {})
    for (_, path), (batch_name, (status, key, result, *page)) in zip(
        wanted, ((name, result) for name, results in outcomes for result in results), strict=True
    ):
        if status == "error":
            raise IssueError(*result)
        if isinstance(result, Edition):
            found.fresh[key] = result
            result = ListedEdition.of(result, key)
        cache.listed[key] = result
        cache.location[key] = batch_name
        keys[path.name] = key
        if page and page[0]:
            found.pages[page[0][0]] = page[0][1]
    cache.files = {name: (*stats[name], key) for name, key in keys.items()}
    live = set(keys.values())
    cache.listed = {key: record for key, record in cache.listed.items() if key in live}
    cache.location = {key: batch for key, batch in cache.location.items() if key in live}
    found.listed = [cache.listed[key] for name, key in sorted(keys.items())]
    return found
