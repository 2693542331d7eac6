"""The archive's search index: Pagefind over a small document per edition page, made after the pages are written.

The documents (search_documents.py) are made from the pages as written; this module indexes them.

The index is split into bundles of 250 issues (NEWSLETTER_SEARCH_BUNDLE_ISSUES), by issue order from the oldest,
so that an old bundle stays as it is while issues are added: each is indexed by a Pagefind run of its own into
`pagefind/b<n>/`, at most two at once (RUNS: Pagefind's peak memory is some 620 MB a bundle), and only the
bundles whose pages changed are indexed again (Pagefind has no incremental mode); the others are linked from the
site's index as they are. A bundle's key is the digest of its pages' keys; the build cache keeps every bundle's
(`search.key`, JSON) and the documents (`.cache/site/search-documents/b<n>/`), so a rebuild makes only those of
the pages that changed. `pagefind/bundles.json` lists the bundles, newest first, with their languages: the
search page (static/search.js) searches the newest bundle of its language and merges the others of it
(Pagefind's mergeIndex); a bundle without that language is left out, as Pagefind would search its default one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings
from ..errors import BuildError
from .search_documents import SEARCH_VERSION, EditionPage, update_documents

SEARCH_FOLDER = "pagefind"  # the site folder Pagefind writes
PAGEFIND_ENV = "NEWSLETTER_PAGEFIND"  # a pagefind binary to use instead of the pagefind[bin] package's
BUNDLE_ENV = "NEWSLETTER_SEARCH_BUNDLE_ISSUES"  # issues a bundle of the index holds (BUNDLE_ISSUES)
BUNDLE_ISSUES = 250  # 7.9 CPU-s and 620 MB of Pagefind a bundle at the bench's issues
RUNS = 2  # Pagefind runs at once, at most (each takes a core, and its peak memory)
MANIFEST = "bundles.json"  # in the index folder: its bundles, newest first, and their languages
UI_FILES = ("pagefind-ui.js", "pagefind-ui.css")  # in the index folder too, for the search page (from a bundle)
KEY_FILE = "search.key"  # in the build cache folder: the keys of the bundles in the site (JSON)
DOCUMENTS = "search-documents"  # in the build cache folder: each bundle's documents, and .json their page keys


@dataclass(frozen=True)
class SearchResult:
    """What the indexing did: papers in the index (0 when skipped), its seconds, the bundles in all and those
    indexed again (their names), the largest peak memory of a Pagefind run (kB) and their CPU seconds."""

    papers: int
    seconds: float
    skipped: bool
    bundles: int = 0
    indexed: tuple[str, ...] = ()
    peak_kb: int = 0
    pagefind_cpu: float = 0.0


@dataclass(frozen=True)
class Bundle:
    """A part of the index: its folder name (b0 the oldest issues) and its pages."""

    name: str
    pages: tuple[EditionPage, ...]

    @property
    def languages(self) -> list[str]:
        return sorted({page.lang.lower() for page in self.pages})


def search_key(pages: Iterable[tuple[str, str]], binary: Path, form: str = "") -> str:
    """A bundle's key: each of its (edition page path, page key), the documents' form, and the binary (a new
    Pagefind rebuilds it)."""
    stat = binary.stat()
    head = [SEARCH_VERSION, form, str(binary), str(stat.st_size), str(stat.st_mtime_ns)]
    parts = [*head, *sorted(map("\x1e".join, pages))]
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()


def bundle_issues() -> int:
    """Issues a bundle holds: NEWSLETTER_SEARCH_BUNDLE_ISSUES, else BUNDLE_ISSUES."""
    named = os.environ.get(BUNDLE_ENV, "").strip()
    if not named:
        return BUNDLE_ISSUES
    if not named.isdigit() or int(named) < 1:
        raise BuildError(
            "build",
            f"{BUNDLE_ENV}={named} is not a number of issues of 1 or more",
            "set it to 250 for example, or unset it",
        )
    return int(named)


def split_bundles(pages: Iterable[EditionPage], size: int) -> list[Bundle]:
    """The pages in bundles of `size` issues each, by issue order from the oldest (date, then slug), so that a
    new issue joins the newest bundle and leaves the others as they were."""
    by_issue: dict[str, list[EditionPage]] = {}
    for page in pages:
        by_issue.setdefault(page.slug, []).append(page)
    issues = sorted(by_issue, key=lambda slug: (min(page.date for page in by_issue[slug]), slug))
    return [
        Bundle(f"b{n // size}", tuple(page for slug in issues[n : n + size] for page in by_issue[slug]))
        for n in range(0, len(issues), size)
    ]


def manifest(bundles: Sequence[Bundle]) -> str:
    """`pagefind/bundles.json`: the bundles, newest first, each its folder and languages."""
    listed = [{"path": f"{bundle.name}/", "languages": bundle.languages} for bundle in reversed(bundles)]
    return json.dumps({"version": SEARCH_VERSION, "bundles": listed}, ensure_ascii=False, sort_keys=True) + "\n"


def find_pagefind() -> Path:
    """The pagefind binary: NEWSLETTER_PAGEFIND, else the one the pagefind[bin] (or [extended]) package ships."""
    named = os.environ.get(PAGEFIND_ENV, "").strip()
    if named:
        path = Path(named)
        if not path.is_file() or not os.access(path, os.X_OK):
            raise BuildError(
                "build",
                f"{PAGEFIND_ENV}={named} is not an executable file",
                f"name the pagefind binary, or unset {PAGEFIND_ENV} to use the pagefind[bin] package's",
            )
        return path
    for module in ("pagefind_bin", "pagefind_bin_extended"):
        try:
            found = __import__(module).get_executable()
        except (ImportError, FileNotFoundError):
            continue
        return Path(found)
    raise BuildError(
        "build",
        "the search index needs Pagefind, and its binary is not installed",
        "pip install 'pagefind[bin]>=1.5.2', or set search = false in [tool.newsletter]",
    )


def saved_key(cache_folder: Path | None) -> str:
    if cache_folder is None:
        return ""
    try:
        return (cache_folder / KEY_FILE).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def saved_keys(cache_folder: Path | None) -> dict[str, str]:
    """The keys of the bundles in the site, as saved (none: an older build's, or damaged)."""
    try:
        keys = json.loads(saved_key(cache_folder) or "{}")
    except ValueError:
        return {}
    return keys if isinstance(keys, dict) else {}


def save_key(cache_folder: Path | None, key: str) -> None:
    if cache_folder is None:
        return
    cache_folder.mkdir(parents=True, exist_ok=True)
    temporary = cache_folder / f".{KEY_FILE}.{os.getpid()}"
    temporary.write_text(key + "\n", encoding="ascii")
    os.replace(temporary, cache_folder / KEY_FILE)


def splits_composed_hangul(binary: Path) -> bool:
    """Whether this Pagefind splits a word index of composed Hangul into chunks (1.6 on). 1.5 keys a Hangul
    word by its decomposed form and files the word as written as a variant of that key ("diacritics"), and it
    splits its word index counting only the other locations: a Korean index stays one chunk however large
    (3.4 MB at 1,000 issues without the inner parts, 10 MB with them), and the first query loads all of it.
    Decomposed Hangul is its own key, so 1.5 counts it; but it costs twice Pagefind's time (its gzip -9 is
    slow on jamo), so it is done only for a Pagefind that needs it. A version it does not tell: decomposed."""
    return _pagefind_version(str(binary), binary.stat().st_mtime_ns) >= (1, 6)


@functools.lru_cache(maxsize=4)
def _pagefind_version(binary: str, mtime_ns: int) -> tuple[int, ...]:
    try:
        said = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ()
    found = re.search(r"(\d+)\.(\d+)\.(\d+)", said)
    return tuple(map(int, found.groups())) if found else ()


def run_pagefind(binary: Path, site: Path, output: Path) -> tuple[int, float]:
    """Index the documents in `site` into `output` with one Pagefind run; returns its peak memory (kB) and its
    CPU seconds."""
    with tempfile.TemporaryFile() as said:
        try:
            process = subprocess.Popen(
                [str(binary), "--site", str(site), "--output-path", str(output)], stdout=said, stderr=said
            )
        except OSError as error:
            raise BuildError(
                "build",
                f"could not run pagefind ({binary}): {error.strerror}",
                "reinstall it: pip install 'pagefind[bin]'",
            ) from None
        _, status, usage = os.wait4(process.pid, 0)  # its own peak memory, which subprocess.run does not tell
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            said.seek(0)
            text = said.read().decode("utf-8", "replace")
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            told = f": {lines[-1]}" if lines else ""
            raise BuildError(
                "build",
                f"pagefind ({binary}) failed with exit code {process.returncode}{told}",
                "run it by hand on the site to see more, or set search = false in [tool.newsletter]",
            )
    return int(usage.ru_maxrss), usage.ru_utime + usage.ru_stime


def link_tree(source: Path, target: Path) -> None:
    """`source`'s files in `target` as hard links (a bundle Pagefind never writes again), else as copies."""
    try:
        shutil.copytree(source, target, copy_function=os.link)
    except (OSError, shutil.Error):
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)


def build_index(
    settings: Settings,
    bundles: Sequence[Bundle],
    stale: Sequence[Bundle],
    page_keys: Mapping[str, str],
    output: Path,
    binary: Path,
    cache_folder: Path | None,
    previous: Path | None,
) -> tuple[int, float]:
    """Index the `stale` bundles into the folder `output` (replaced), each into its own folder, at most RUNS
    Pagefind runs at once, and link the others from the `previous` index; write the manifest and the search
    page's UI files. The documents are kept in the build cache, and only those of changed pages are made
    again. Returns the largest peak memory of a run (kB), and the runs' CPU seconds."""
    scratch = output.parent / f".search-{os.getpid()}"  # without a cache: beside the index, in staging
    work = (scratch if cache_folder is None else cache_folder) / DOCUMENTS
    shutil.rmtree(scratch, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    names = {bundle.name for bundle in bundles}
    for entry in work.iterdir():  # bundles gone, and an older build's documents (one folder for the whole index)
        if entry.is_dir() and entry.name not in names:
            shutil.rmtree(entry)
        elif not entry.is_dir() and entry.name.removesuffix(".json") not in names:
            entry.unlink()
    (work.parent / f"{DOCUMENTS}.json").unlink(missing_ok=True)
    decompose = not splits_composed_hangul(binary)
    try:
        shutil.rmtree(output, ignore_errors=True)
        output.mkdir(parents=True)
        for bundle in stale:
            update_documents(settings, list(bundle.pages), page_keys, work / bundle.name, decompose)
        fresh = {bundle.name for bundle in stale}
        for bundle in bundles:
            if bundle.name not in fresh and previous is not None:  # kept: a bundle of the previous index
                link_tree(previous / SEARCH_FOLDER / bundle.name, output / bundle.name)
        with ThreadPoolExecutor(max_workers=max(1, min(RUNS, os.cpu_count() or 1))) as pool:
            runs = [pool.submit(run_pagefind, binary, work / b.name, output / b.name) for b in stale]
            peaks = [run.result() for run in runs]  # the first failure, once every run is over
        for name in UI_FILES:
            try:
                os.link(output / bundles[-1].name / name, output / name)
            except OSError:
                shutil.copyfile(output / bundles[-1].name / name, output / name)
        (output / MANIFEST).write_text(manifest(bundles), encoding="utf-8")
        return max((peak for peak, _ in peaks), default=0), sum(cpu for _, cpu in peaks)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def index_site(
    settings: Settings,
    pages: list[EditionPage],
    page_keys: Mapping[str, str],
    staging: Path,
    previous: Path | None,
    cache_folder: Path | None,
) -> tuple[SearchResult, str]:
    """Index into `staging`/pagefind the bundles whose key is not that of the bundle in the site in `previous`
    (none: the site's index is kept as it is); returns what was done and the keys to save once the site is in
    place."""
    started = time.perf_counter()
    binary = find_pagefind()
    bundles = split_bundles(pages, bundle_issues())
    form = "nfc" if splits_composed_hangul(binary) else "nfd"
    keys = {b.name: search_key(((p.path, page_keys[p.path]) for p in b.pages), binary, form) for b in bundles}
    key = json.dumps(keys, sort_keys=True)
    saved = saved_keys(cache_folder) if previous is not None else {}
    index = previous / SEARCH_FOLDER if previous is not None else None
    kept = {
        name
        for name, bundle_key in keys.items()
        if index is not None and saved.get(name) == bundle_key and (index / name / "pagefind-entry.json").is_file()
    }
    if index is not None and kept == set(keys) == set(saved) and _read(index / MANIFEST) == manifest(bundles):
        return SearchResult(0, time.perf_counter() - started, True, len(bundles)), key
    if not pages:  # nothing is out yet: nothing to find, and Pagefind refuses an empty site ("Indexed 0 sorts")
        return SearchResult(0, time.perf_counter() - started, False), key
    stale = [bundle for bundle in bundles if bundle.name not in kept]
    peak, cpu = build_index(
        settings, bundles, stale, page_keys, staging / SEARCH_FOLDER, binary, cache_folder, previous
    )
    papers = sum(len(page.anchors) for page in pages)
    indexed = tuple(bundle.name for bundle in stale)
    return SearchResult(papers, time.perf_counter() - started, False, len(bundles), indexed, peak, cpu), key


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""
