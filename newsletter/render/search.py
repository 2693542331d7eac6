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

import contextlib
import functools
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..config import Settings
from ..errors import BuildError

SEARCH_FOLDER = "pagefind"  # the site folder Pagefind writes
SEARCH_VERSION = "search-4"  # bump when the documents change shape
PAGEFIND_ENV = "NEWSLETTER_PAGEFIND"  # a pagefind binary to use instead of the pagefind[bin] package's
BUNDLE_ENV = "NEWSLETTER_SEARCH_BUNDLE_ISSUES"  # issues a bundle of the index holds (BUNDLE_ISSUES)
BUNDLE_ISSUES = 250  # 7.9 CPU-s and 620 MB of Pagefind a bundle at the bench's issues
RUNS = 2  # Pagefind runs at once, at most (each takes a core, and its peak memory)
MANIFEST = "bundles.json"  # in the index folder: its bundles, newest first, and their languages
UI_FILES = ("pagefind-ui.js", "pagefind-ui.css")  # in the index folder too, for the search page (from a bundle)
KEY_FILE = "search.key"  # in the build cache folder: the keys of the bundles in the site (JSON)
DOCUMENTS = "search-documents"  # in the build cache folder: each bundle's documents, and .json their page keys
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
    issue: str = ""  # the issue's slug (its editions are in one bundle); "": the page path's folder

    @property
    def slug(self) -> str:
        return self.issue or self.path.rsplit("/", 2)[-2]


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
            "build", f"{BUNDLE_ENV}={named} is not a whole number of issues", "set it to 1 or more, or unset it"
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
