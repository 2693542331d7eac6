"""The archive's search index: Pagefind over a small document per edition page, made after the pages are written.

Each edition page becomes a small document in a scratch folder: each paper as a heading with the paper's anchor
as its id (so each paper is a sub-result, linked to its anchor and titled by its heading) followed by its index
terms; the page's URL is the document's (`data-pagefind-meta` url) and its tags are filters
(`data-pagefind-filter`). One document per paper would make each paper a result of its own, but Pagefind then
took 15 % more CPU time and 1.6 times the memory (4 GB at 1,000 issues). Pagefind keeps an index per language
(the document's `lang`), so each language's search page searches its own papers.

Pagefind splits words at spaces and punctuation and matches a query as a word's prefix, so `학습` would not find
`강화학습과`. A paper's index terms (index_terms) are its words, each once, and each Hangul word's inner suffixes
(`화학습과`, `학습과`, `습과`), so any part of a compound, a noun inside it or a Latin name glued to Hangul
(`GPT모델`), is found; a term that begins another is left out (a query that finds it finds that one). The
document is for the index only: the search page shows each matching paper by its title, never an excerpt. For
Pagefind 1.5 (the pagefind[bin] wheel's) Hangul is written decomposed (NFD): 1.5 files composed Hangul words as
"diacritic" variants, which it leaves out when it splits the word index into chunks, so the Korean index was one
chunk of 10 MB at 1,000 issues, all loaded by the first query (splits_composed_hangul).

The index is rebuilt only when an edition page changed: its key is the digest of those pages' keys. The
documents are kept in the build cache (`.cache/site/search-documents/`), so a rebuild makes only those of the
pages that changed; Pagefind itself indexes them all again (it has no incremental mode).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import time
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..config import Settings
from ..errors import BuildError

SEARCH_FOLDER = "pagefind"  # the site folder Pagefind writes
SEARCH_VERSION = "search-3"  # bump when the documents change shape
PAGEFIND_ENV = "NEWSLETTER_PAGEFIND"  # a pagefind binary to use instead of the pagefind[bin] package's
KEY_FILE = "search.key"  # in the build cache folder: the key of the index in the site
DOCUMENTS = "search-documents"  # in the build cache folder: the documents indexed, and .json their page keys
WORD = re.compile(r"\w+")
HANGUL = re.compile("[\u1100-\u11ff\uac00-\ud7a3]")  # Hangul syllables, and their letters (jamo) decomposed


@dataclass(frozen=True)
class EditionPage:
    """An edition page to index: its site path, where its HTML is now, its language and its papers' anchors."""

    path: str  # site path of the page file: issues/<slug>/index.html
    file: Path
    lang: str
    title: str
    date: str
    anchors: tuple[tuple[str, str, tuple[str, ...]], ...]  # (anchor, title, tags) of each paper


@dataclass(frozen=True)
class SearchResult:
    """What the indexing did: papers indexed (0 when skipped), and its seconds."""

    papers: int
    seconds: float
    skipped: bool


def search_key(pages: Iterable[tuple[str, str]], binary: Path) -> str:
    """The index's key: every (edition page path, page key), and the binary (a new Pagefind rebuilds it)."""
    stat = binary.stat()
    parts = [SEARCH_VERSION, str(binary), str(stat.st_size), str(stat.st_mtime_ns), *sorted(map("\x1e".join, pages))]
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()


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
    except OSError:
        return ""


def save_key(cache_folder: Path | None, key: str) -> None:
    if cache_folder is None:
        return
    cache_folder.mkdir(parents=True, exist_ok=True)
    temporary = cache_folder / f".{KEY_FILE}.{os.getpid()}"
    temporary.write_text(key + "\n", encoding="ascii")
    os.replace(temporary, cache_folder / KEY_FILE)


def index_terms(title: str, text: str, decompose: bool = True) -> list[str]:
    """The words Pagefind indexes for one paper (`title`, `text`): each word once, in order, then each Hangul
    word's inner parts (inner_parts), but those that begin another of them (a query that finds it finds that
    one too); with `decompose`, Hangul ones decomposed (NFD), so that Pagefind 1.5 counts them when it splits
    its word index (see splits_composed_hangul)."""
    form = _decomposed if decompose else str
    words = dict.fromkeys(form(word.lower()) for word in WORD.findall(f"{title} {text}"))
    terms = {**words, **dict.fromkeys(form(part) for part in inner_parts(f"{title} {text}"))}
    known = sorted(terms)
    covered = {a for a, b in zip(known, known[1:], strict=False) if b.startswith(a) and HANGUL.search(a)}
    return [term for term in terms if term not in covered]


def inner_parts(text: str) -> list[str]:
    """The index-only words of `text`: each word's tail from every Hangul syllable but its first, and from
    where Hangul meets other letters, of at least two characters (`강화학습과` → 화학습과, 학습과, 습과)."""
    parts: dict[str, None] = {}
    for word in dict.fromkeys(word.lower() for word in WORD.findall(text)):
        parts.update(dict.fromkeys(_word_parts(word)))
    return list(parts)


@functools.lru_cache(maxsize=1 << 16)
def _word_parts(word: str) -> tuple[str, ...]:
    """inner_parts of one word (words recur across papers, so each is worked out once)."""
    return tuple(
        word[i:] for i in range(1, len(word) - 1) if _hangul(word[i]) or (_hangul(word[i - 1]) and word[i].isalnum())
    )


@functools.lru_cache(maxsize=1 << 17)
def _decomposed(word: str) -> str:
    """`word` with its Hangul syllables decomposed into jamo (NFD), as Pagefind keys them; others as they are."""
    return unicodedata.normalize("NFD", word) if any(map(_hangul, word)) else word


def _hangul(char: str) -> bool:
    return "\uac00" <= char <= "\ud7a3"


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


def _document(
    settings: Settings, page: EditionPage, papers: list[tuple[str, str, tuple[str, ...], str]], decompose: bool
) -> str:
    """The document Pagefind indexes for one edition page: each paper as a heading with its anchor as id (a
    sub-result of its own, titled by it) and its index terms; linked to the page, filterable by tag."""
    base_path = urlsplit(settings.base_url).path.rstrip("/")
    url = f"{base_path}/{page.path.removesuffix('index.html')}"
    tags = sorted({tag for _, _, paper_tags, _ in papers for tag in paper_tags})
    meta = [("url", url), ("title", page.title), ("date", page.date)]
    head = "".join(
        f'<meta data-pagefind-meta="{name}[content]" content="{html.escape(value)}">' for name, value in meta
    )
    head += "".join(f'<meta data-pagefind-filter="tag[content]" content="{html.escape(tag)}">' for tag in tags)
    body = "".join(
        f'<h2 id="{html.escape(anchor)}">{html.escape(title)}</h2><p>{html.escape(" ".join(terms))}</p>'
        for anchor, title, terms in (
            (anchor, title, index_terms(title, text, decompose)) for anchor, title, _, text in papers
        )
    )
    return (
        f'<!doctype html><html lang="{html.escape(page.lang)}"><head><meta charset="utf-8">'
        f"<title>{html.escape(page.title)}</title>{head}</head><body data-pagefind-body>{body}</body></html>"
    )


def _papers(page: EditionPage) -> list[tuple[str, str, tuple[str, ...], str]]:
    """(anchor, title, tags, text) of each paper on the page: the element whose id is its anchor, its text
    without its heading."""
    from lxml import html as lxml_html

    root = lxml_html.fromstring(page.file.read_bytes())
    elements = {element.get("id"): element for element in root.iterfind(".//*[@id]")}
    found = []
    for anchor, title, tags in page.anchors:
        element = elements.get(anchor)
        if element is not None:
            text = " ".join(element.text_content().split())
            found.append((anchor, title, tags, text.removeprefix(" ".join(title.split())).strip()))
    return found


def write_documents(settings: Settings, pages: Iterable[EditionPage], folder: Path, decompose: bool = True) -> int:
    """Write one document per edition page of `pages` into `folder`; returns how many papers they hold."""
    count = 0
    for page in pages:
        papers = _papers(page)
        target = folder / page.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_document(settings, page, papers, decompose), encoding="utf-8")
        count += len(papers)
    return count


def update_documents(
    settings: Settings, pages: list[EditionPage], page_keys: Mapping[str, str], folder: Path, decompose: bool = True
) -> int:
    """Bring `folder` (kept in the build cache) to one document per page of `pages`: write those whose page key
    is not the one their document was made from, remove those of pages gone; returns the papers."""
    keys_file = folder.with_suffix(".json")
    try:
        made = json.loads(keys_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, or damaged: make every document again
        made = {}
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    form = "nfd" if decompose else "nfc"
    wanted = {page.path: f"{SEARCH_VERSION}:{form}:{page_keys[page.path]}" for page in pages}
    stale = [page for page in pages if made.get(page.path) != wanted[page.path] or not (folder / page.path).is_file()]
    gone = set(made) - set(wanted)
    kept = {path: key for path, key in made.items() if path in wanted and path not in {p.path for p in stale}}
    _save_keys(keys_file, kept)  # before writing: a document half written is never taken for a whole one
    for path in gone:
        (folder / path).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # its folder, unless another document is in it
            (folder / path).parent.rmdir()
    write_documents(settings, stale, folder, decompose)
    _save_keys(keys_file, wanted)
    return sum(len(page.anchors) for page in pages)


def _save_keys(path: Path, keys: Mapping[str, str]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps(keys, sort_keys=True), encoding="utf-8")
    os.replace(temporary, path)


def build_index(
    settings: Settings,
    pages: list[EditionPage],
    page_keys: Mapping[str, str],
    output: Path,
    binary: Path,
    cache_folder: Path | None,
) -> int:
    """Index the papers of `pages` into the folder `output` (replaced); returns the papers indexed. The
    documents are kept in the build cache, and only those of changed pages are made again."""
    scratch = output.parent / f".search-{os.getpid()}"  # without a cache: beside the index, in staging
    work = (scratch if cache_folder is None else cache_folder) / DOCUMENTS
    shutil.rmtree(scratch, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    try:
        count = update_documents(settings, pages, page_keys, work, not splits_composed_hangul(binary))
        shutil.rmtree(output, ignore_errors=True)
        try:
            done = subprocess.run(
                [str(binary), "--site", str(work), "--output-path", str(output)],
                capture_output=True,
                text=True,
                errors="replace",
                check=False,
            )
        except OSError as error:
            raise BuildError(
                "build",
                f"could not run pagefind ({binary}): {error.strerror}",
                "reinstall it: pip install 'pagefind[bin]'",
            ) from None
        if done.returncode != 0:
            lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
            said = f": {lines[-1]}" if lines else ""
            raise BuildError(
                "build",
                f"pagefind ({binary}) failed with exit code {done.returncode}{said}",
                "run it by hand on the site to see more, or set search = false in [tool.newsletter]",
            )
        return count
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
    """Index into `staging`/pagefind unless the site in `previous` has an index of the same key; returns what
    was done and the key to save once the site is in place."""
    started = time.perf_counter()
    binary = find_pagefind()
    key = search_key(((p.path, page_keys[p.path]) for p in pages), binary)
    if (
        previous is not None
        and saved_key(cache_folder) == key
        and (previous / SEARCH_FOLDER / "pagefind-entry.json").is_file()
    ):
        return SearchResult(0, time.perf_counter() - started, True), key
    if not pages:  # nothing is out yet: nothing to find, and Pagefind refuses an empty site ("Indexed 0 sorts")
        return SearchResult(0, time.perf_counter() - started, False), key
    count = build_index(settings, pages, page_keys, staging / SEARCH_FOLDER, binary, cache_folder)
    return SearchResult(count, time.perf_counter() - started, False), key
