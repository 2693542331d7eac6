"""The documents Pagefind indexes for the archive's search (search.py): one per edition page.

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
"""

from __future__ import annotations

import contextlib
import functools
import html
import json
import os
import re
import shutil
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..config import Settings

SEARCH_VERSION = "search-5"  # bump when the documents change shape
WORD = re.compile(r"\w+")
HANGUL = re.compile("[\u1100-\u11ff\uac00-\ud7a3]")  # Hangul syllables, and their letters (jamo) decomposed


@dataclass(frozen=True)
class EditionPage:
    """An edition page to index: its site path, where its HTML is now, its language and its papers' anchors."""

    path: str  # site path of the page file: issues/<slug>/index.html
    file: Path
    lang: str
    title: str
    date: str  # ISO 8601: bundles are made in date order
    anchors: tuple[tuple[str, str, tuple[str, ...]], ...]  # (anchor, title, tags) of each paper
    issue: str = ""  # the issue's slug (its editions are in one bundle); "": the page path's folder
    tag_filter: str = "tag"  # the name of the tag filter in this language's index (the search page shows it)
    date_label: str = "date"  # the name under which the search page shows the date
    date_text: str = ""  # the date as the page's language writes it ("": as `date`)

    @property
    def slug(self) -> str:
        return self.issue or self.path.rsplit("/", 2)[-2]


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


def _document(
    settings: Settings, page: EditionPage, papers: list[tuple[str, str, tuple[str, ...], str]], decompose: bool
) -> str:
    """The document Pagefind indexes for one edition page: each paper as a heading with its anchor as id (a
    sub-result of its own, titled by it) and its index terms; linked to the page, filterable by tag."""
    base_path = urlsplit(settings.base_url).path.rstrip("/")
    url = f"{base_path}/{page.path.removesuffix('index.html')}"
    tags = sorted({tag for _, _, paper_tags, _ in papers for tag in paper_tags})
    meta = [("url", url), ("title", page.title), (filter_name(page.date_label, "date"), page.date_text or page.date)]
    head = "".join(
        f'<meta data-pagefind-meta="{html.escape(name)}[content]" content="{html.escape(value)}">'
        for name, value in meta
    )
    tag_filter = html.escape(filter_name(page.tag_filter, "tag"))
    head += "".join(f'<meta data-pagefind-filter="{tag_filter}[content]" content="{html.escape(tag)}">' for tag in tags)
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


def filter_name(wording: str, fallback: str) -> str:
    """`wording` as a Pagefind meta or filter name: without the brackets, colon and comma its attribute syntax
    gives a meaning to, and `fallback` when nothing is left (or it would clash with a name Pagefind keeps)."""
    name = " ".join(re.sub(r"[\[\]:,]", " ", wording).split())
    return name if name and name not in {"url", "title", "image", "image_alt"} else fallback


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
