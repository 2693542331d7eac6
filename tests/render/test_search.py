"""The archive's search: real queries in headless Chromium against the built site on 127.0.0.1, one result per
paper; the index rebuilt only when pages changed; a missing or failing pagefind is one line."""

from __future__ import annotations

import functools
import http.server
import json
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
import requests

from newsletter.config import load_settings
from newsletter.errors import BuildError
from newsletter.render.search import find_pagefind
from newsletter.render.search_documents import filter_name, index_terms
from newsletter.render.site import build_site
from tests.conftest import ThreadedHttpServer, missing_system_package, wait_until, write_issue

SLUG = "2023-09-25-top-ml-papers"
REVERSAL = f"/issues/{SLUG}/#반전의-저주-the-reversal-curse"  # its text says 인공신경망은, 학습된
# Nouns inside compounds, English terms, and Korean with English, on the Korean pages; English on the English.
QUERIES = [
    ("ko", "신경망"),
    ("ko", "학습"),
    ("ko", "레지스터"),
    ("ko", "Llama"),
    ("ko", "RLHF"),
    ("ko", "Llama 컨텍스트"),
]
QUERIES += [("en", "registers"), ("en", "reasoning"), ("en", "logic")]


@pytest.fixture
def pagefind() -> Path:
    """The pagefind binary the build uses (a normal dependency: under CI=true its absence fails the test)."""
    try:
        return find_pagefind()
    except BuildError as error:
        missing_system_package(f"pagefind is not installed: {error}")
        raise


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
        """Leave the test's output to the test."""


@pytest.fixture
def served(publication: Path, run, pagefind: Path) -> Iterator[str]:
    """The built archive over HTTP on 127.0.0.1; yields its root URL."""
    result = run("build")
    assert result.exit_code == 0, result.output
    handler = functools.partial(QuietHandler, directory=str(publication / "site"))
    with ThreadedHttpServer(handler) as server:
        yield f"{server.url}/"


def papers(site: Path, lang: str) -> dict[str, str]:
    """Each paper of the sample's `lang` edition page: its URL (as search results give it) → its text."""
    folder = site / ("" if lang == "ko" else f"{lang}/") / "issues" / SLUG
    html = (folder / "index.html").read_text(encoding="utf-8")
    prefix = "/" + ("" if lang == "ko" else f"{lang}/") + f"issues/{SLUG}/#"
    found = re.findall(r'<section class="paper" id="([^"]+)">(.*?)</section>', html, re.S)
    return {prefix + anchor: re.sub(r"<[^>]+>", " ", body) for anchor, body in found}


def expected(texts: dict[str, str], query: str) -> set[str]:
    """The papers holding every word of `query` at a word's start or inside a Hangul compound."""

    def holds(text: str, term: str) -> bool:
        return re.search(rf"(?:^|(?<=\W)|(?<=[\uac00-\ud7a3])){re.escape(term)}", text, re.I) is not None

    return {url for url, text in texts.items() if all(holds(text, term) for term in query.split())}


# Pagefind's JS API as the search page uses it (static/search.js): the newest bundle of the page's language, the
# others of it merged.
SEARCH = """async ([query, filters]) => {
  const root = new URL("../pagefind/", location.href.replace(/\\/en\\//, "/"));
  const lang = document.documentElement.lang.toLowerCase();
  const listed = (await (await fetch(new URL("bundles.json", root))).json()).bundles;
  const [main, ...others] = listed.filter((b) => b.languages.includes(lang)).map((b) => new URL(b.path, root));
  const pagefind = await import(new URL("pagefind.js", main).href);
  await pagefind.options({ basePath: main.pathname });
  for (const other of others) await pagefind.mergeIndex(other.pathname);
  const found = await pagefind.search(query, filters ? { filters } : {});
  const data = await Promise.all(found.results.map((r) => r.data()));
  return data.flatMap((d) => d.sub_results.map((sub) => sub.url));
}"""


def search(page, base: str, lang: str, query: str | None, filters: dict | None = None) -> set[str]:
    page.goto(f"{base}{'' if lang == 'ko' else lang + '/'}search/")
    return {unquote(url) for url in page.evaluate(SEARCH, [query, filters])}


def test_each_query_finds_every_paper_that_holds_it(browser, served: str, publication: Path) -> None:
    page = browser.new_page()
    try:
        for lang, query in QUERIES:
            want = expected(papers(publication / "site", lang), query)
            assert want, f"{query!r} is in no {lang} paper: the query set is wrong"
            found = search(page, served, lang, query)
            assert want <= found, f"{lang} {query!r} missed {want - found}"
            if lang == "ko" and " " not in query:  # no stemming: each paper found holds the word as written
                assert found == want, f"{query!r} found {found - want} too"
        assert REVERSAL in search(page, served, "ko", "신경망")  # only inside 인공신경망은
        # The tag filter: the sample's page carries rlhf (on some of its papers) and no page carries nope.
        assert search(page, served, "ko", "학습", {"태그": "rlhf"}) == search(page, served, "ko", "학습")
        assert search(page, served, "ko", "학습", {"태그": "nope"}) == set()
    finally:
        page.close()


def test_a_papers_index_terms_are_its_words_once_and_their_inner_parts_none_the_start_of_another() -> None:
    terms = index_terms("강화학습 / RL", "강화학습과 모델 모델을 GPT모델 모델을")
    assert [unicodedata.normalize("NFC", term) for term in terms] == [
        "rl", "강화학습과", "모델을", "gpt모델", "화학습과", "학습과", "습과", "델을"
    ]  # fmt: skip
    assert not any("\uac00" <= char <= "\ud7a3" for term in terms for char in term)  # decomposed, for Pagefind 1.5
    assert index_terms("강화학습 / RL", "강화학습과 모델 모델을 GPT모델 모델을", decompose=False)[1] == "강화학습과"


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pagefind's word index in chunks of about 100 locations (20,000 by default), so that the sample's one
    issue is split as 1,000 issues are (Pagefind 1.5 reads PAGEFIND_UNSTABLE_INDEX_CHUNK_SIZE)."""
    monkeypatch.setenv("PAGEFIND_UNSTABLE_INDEX_CHUNK_SIZE", "100")


def test_an_editors_name_for_the_filter_or_the_date_is_made_one_pagefind_reads() -> None:
    # Pagefind reads `name[content]`, and a colon or comma in a name as its own syntax.
    assert filter_name("  주제 [분류]: a,b ", "tag") == "주제 분류 a b"
    assert filter_name("[]:,", "tag") == "tag"  # nothing left
    assert filter_name("url", "date") == "date"  # a name Pagefind keeps for itself


def test_a_korean_query_loads_a_small_part_of_the_korean_index(
    small_chunks: None, browser, served: str, publication: Path
) -> None:
    """Pagefind 1.5 kept every Hangul word in one chunk (it counted only words without "diacritics" when it
    split), so the first Korean query loaded the whole Korean index; search.py decomposes Hangul for it."""
    index = publication / "site" / "pagefind" / "b0" / "index"
    sizes = {path.name: path.stat().st_size for path in index.glob("ko_*.pf_index")}
    page = browser.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url.split("?")[0].rsplit("/", 1)[-1]))
    try:
        found = search(page, served, "ko", "신경망")
        page.evaluate("1")  # the requests' events are in before this answer
    finally:
        page.close()
    assert REVERSAL in found
    loaded = [name for name in requested if name in sizes]
    assert loaded and sum(sizes[name] for name in loaded) <= sum(sizes.values()) / 10, (loaded, len(sizes))


def test_the_search_page_shows_each_issue_with_its_papers_found(browser, served: str, artifacts: Path) -> None:
    page = browser.new_page(viewport={"width": 375, "height": 900})
    try:
        page.goto(f"{served}issues/{SLUG}/")
        page.get_by_role("link", name="검색").click()  # the header's link to the search page
        page.locator(".pagefind-ui__search-input").fill("신경망")
        links = page.locator(".pagefind-ui__result-link")
        links.first.wait_for()
        titles = {
            unquote(links.nth(n).get_attribute("href") or ""): links.nth(n).inner_text() for n in range(links.count())
        }
        assert titles[REVERSAL] == "반전의 저주 / The Reversal Curse"  # a paper, under its issue
        shown = page.locator("#search").inner_text()
        # Nothing of the index-only parts: 인공신경망은 has 공신경망은 and 경망은 among them.
        assert "공신경망은" not in shown and "경망은" not in shown.replace("신경망은", "")
        # In the page's language: the date as its listings write it, and the names of the date and the tag filter.
        assert "2023년 9월 25일" in shown and "날짜" in shown and "태그" in shown
        assert "Date" not in shown and "Tag" not in shown
        page.screenshot(path=str(artifacts / "search-ko-375.png"), full_page=False)
        issue = page.request.get(f"{served}issues/{SLUG}/").text()
        assert "<script" not in issue and 'href="../../search/"' in issue  # pages stay light: no search script
    finally:
        page.close()


NEW_ISSUE = "---\ntitle: 새 호\ndate: 2023-10-02\n---\n## 새 논문\n\n지식증류를 다룹니다.\n"
NEW_PAPER = "/issues/2023-10-02-new/#새-논문"


@pytest.fixture
def one_issue_bundles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bundles of one issue each (250 by default), so that two issues make two bundles."""
    monkeypatch.setenv("NEWSLETTER_SEARCH_BUNDLE_ISSUES", "1")


@pytest.fixture
def two_bundles(one_issue_bundles: None, publication: Path) -> None:
    """The sample and a newer issue, in a bundle each: the sample's papers are in b0, not the main bundle."""
    write_issue(publication, "2023-10-02-new.md", NEW_ISSUE)


def test_the_search_page_finds_papers_in_every_bundle(
    two_bundles: None, browser, served: str, publication: Path
) -> None:
    assert sorted(p.name for p in (publication / "site" / "pagefind").glob("b*/")) == ["b0", "b1"]
    page = browser.new_page()
    try:
        page.goto(f"{served}search/?q=신경망")  # the sample's papers: in b0, merged into b1's search
        links = page.locator(".pagefind-ui__result-link")
        links.first.wait_for()
        assert REVERSAL in {unquote(links.nth(n).get_attribute("href") or "") for n in range(links.count())}
        page.locator(".pagefind-ui__search-input").fill("지식증류")  # the new issue's paper: in b1
        page.wait_for_function(
            "[...document.querySelectorAll('.pagefind-ui__result-link')].some("
            "(a) => decodeURI(a.getAttribute('href')).includes('2023-10-02-new'))"
        )
        # The JS API over the bundles: each query finds every paper that holds it, whichever bundle it is in;
        # the tag filter, and the language (the English page searches b0 alone: b1 has no English).
        for lang, query in QUERIES:
            want = expected(papers(publication / "site", lang), query)
            assert want <= search(page, served, lang, query), f"{lang} {query!r}"
        assert search(page, served, "ko", "지식증류") == {NEW_PAPER}
        assert search(page, served, "ko", "학습", {"태그": "rlhf"}) == search(page, served, "ko", "학습") - {NEW_PAPER}
        assert search(page, served, "ko", "학습", {"태그": "nope"}) == set()
        assert search(page, served, "en", "reversal") and not search(page, served, "en", "지식증류")
    finally:
        page.close()


def test_the_index_is_rebuilt_only_when_pages_change(publication: Path, pagefind: Path) -> None:
    settings = load_settings(publication)
    site = publication / "site"
    first = build_site(settings)
    assert first.search is not None and not first.search.skipped and first.search.papers == 20
    assert first.search.indexed == ("b0",) and first.search.peak_kb > 0
    entry = site / "pagefind" / "b0" / "pagefind-entry.json"
    before = entry.read_bytes(), entry.stat().st_mtime_ns
    again = build_site(settings)
    assert again.search is not None and again.search.skipped and again.pages_rendered == 0
    assert (entry.read_bytes(), entry.stat().st_mtime_ns) == before  # kept through the no-op rebuild
    write_issue(publication, "2023-10-02-new.md", NEW_ISSUE)
    documents = publication / ".cache" / "site" / "search-documents" / "b0"
    sample = documents / "issues" / SLUG / "index.html"
    made = sample.stat().st_mtime_ns
    third = build_site(settings)
    assert third.search is not None and not third.search.skipped and third.search.papers == 21
    assert third.search.indexed == ("b0",)  # one bundle of 250 issues: the new issue joins it
    assert (site / "pagefind" / "b0" / "pagefind-entry.json").is_file()
    # the old index goes with the retired folder, which a detached process removes: wait for it, with a deadline
    wait_until(lambda: not list(publication.glob(".site.*")), what="the retired index to be removed")
    assert sample.stat().st_mtime_ns == made  # only the new page's document was made
    made_now = (documents / "issues" / "2023-10-02-new" / "index.html").read_text(encoding="utf-8")
    assert "지식증류를" in unicodedata.normalize("NFC", made_now)  # Hangul is kept decomposed there (search.py)
    (publication / "issues" / "2023-10-02-new.md").unlink()
    fourth = build_site(settings)
    assert fourth.search is not None and fourth.search.papers == 20
    assert not (documents / "issues" / "2023-10-02-new").exists()


def test_only_the_bundles_whose_pages_changed_are_indexed_again(
    one_issue_bundles: None, publication: Path, pagefind: Path
) -> None:
    settings = load_settings(publication)
    index = publication / "site" / "pagefind"
    assert build_site(settings).search.indexed == ("b0",)  # type: ignore[union-attr]
    old = (index / "b0" / "pagefind-entry.json").stat().st_ino
    write_issue(publication, "2023-10-02-new.md", NEW_ISSUE)
    added = build_site(settings).search
    assert added is not None and added.bundles == 2 and added.indexed == ("b1",) and added.papers == 21
    assert (index / "b0" / "pagefind-entry.json").stat().st_ino == old  # the old bundle's very files, linked
    listed = json.loads((index / "bundles.json").read_text(encoding="utf-8"))["bundles"]
    assert listed == [{"path": "b1/", "languages": ["ko"]}, {"path": "b0/", "languages": ["en", "ko"]}]
    assert (index / "pagefind-ui.js").is_file() and (index / "pagefind-ui.css").is_file()
    with (publication / "issues" / f"{SLUG}.md").open("a", encoding="utf-8") as handle:
        handle.write("\n한 문단 더.\n")
    edited = build_site(settings).search
    assert edited is not None and edited.indexed == ("b0",)  # the sample's bundle, not the new issue's
    nothing = build_site(settings).search
    assert nothing is not None and nothing.skipped and nothing.indexed == ()


def test_search_false_writes_no_index_and_removes_an_old_one(publication: Path, run, pagefind: Path) -> None:
    assert run("build").exit_code == 0 and (publication / "site" / "pagefind").is_dir()
    config = publication / "pyproject.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("[tool.newsletter]\n", "[tool.newsletter]\nsearch = false\n")
    )
    assert run("build").exit_code == 0
    site = publication / "site"
    assert not (site / "pagefind").exists() and not (site / "search").exists()
    assert "search/" not in (site / "index.html").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("binary", "said"),
    [
        ("/nonexistent/pagefind", "NEWSLETTER_PAGEFIND=/nonexistent/pagefind is not an executable file"),
        ("/bin/false", "pagefind (/bin/false) failed with exit code 1"),
    ],
)
def test_a_missing_or_failing_pagefind_is_one_line(
    publication: Path, run, pagefind: Path, monkeypatch: pytest.MonkeyPatch, binary: str, said: str
) -> None:
    assert run("build").exit_code == 0
    before = {p: p.read_bytes() for p in (publication / "site").rglob("*") if p.is_file()}
    write_issue(publication, "2023-10-02-new.md", "---\ntitle: 새 호\ndate: 2023-10-02\n---\n본문\n")
    monkeypatch.setenv("NEWSLETTER_PAGEFIND", binary)
    result = run("build")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: build: {said}") and lines[0].endswith(")")
    assert "Traceback" not in result.output
    assert {p: p.read_bytes() for p in (publication / "site").rglob("*") if p.is_file()} == before


def test_search_works_on_the_archive_newsletter_serve_serves(browser, web, publication: Path, pagefind: Path) -> None:
    """The web app's pages run no script, but the archive it serves may run the build's own: the search page's
    Pagefind loads (its module, WebAssembly and index) under the archive's policy, and finds the papers."""
    server, _store, _settings, _clock = web
    page = browser.new_page()
    refused: list[str] = []
    page.on(
        "console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text else None
    )
    try:
        found = search(page, server.url + "/", "en", "reversal")
    finally:
        page.close()
    assert found == expected(papers(publication / "site", "en"), "reversal") and found, refused
    assert refused == []
    unsubscribe = requests.get(server.url + "/unsubscribe", timeout=5)
    assert "script-src" not in unsubscribe.headers["Content-Security-Policy"]  # the app's own pages: no script


def test_a_bundle_size_that_is_not_a_count_is_one_line(publication: Path, run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SEARCH_BUNDLE_ISSUES", "0")
    result = run("build")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.splitlines() == [
        "Error: build: NEWSLETTER_SEARCH_BUNDLE_ISSUES=0 is not a number of issues of 1 or more (set it to 250 "
        "for example, or unset it)"
    ]


SHARED_WORD = "조류독감"


@pytest.fixture
def five_issues(publication: Path) -> None:
    """Four more issues, each with a paper on 조류독감 (the sample has none): four issues to find."""
    for day in range(2, 6):
        write_issue(
            publication,
            f"2023-10-0{day}-flu.md",
            f"---\ntitle: 독감 {day}\ndate: 2023-10-0{day}\n---\n## 독감 논문 {day}\n\n{SHARED_WORD} 연구를 다룹니다.\n",
        )


def test_a_first_query_loads_the_fragments_of_the_three_issues_it_shows(
    five_issues: None, browser, served: str
) -> None:
    """Each issue shown loads its fragment of the index (most of what a first query moves): three at first, the
    next ones on "load more"."""
    page = browser.new_page()
    fragments: list[str] = []
    page.on("request", lambda request: fragments.append(request.url) if ".pf_fragment" in request.url else None)
    try:
        page.goto(f"{served}search/?q={SHARED_WORD}")
        page.locator(".pagefind-ui__result-link").first.wait_for()
        page.wait_for_load_state("networkidle")
        assert page.locator(".pagefind-ui__result").count() == 3 and len(fragments) == 3
        page.locator(".pagefind-ui__button").click()  # load more results
        page.wait_for_function("document.querySelectorAll('.pagefind-ui__result').length === 4")
        page.wait_for_load_state("networkidle")
        assert len(fragments) == 4
    finally:
        page.close()
