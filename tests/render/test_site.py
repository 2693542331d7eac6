"""The archive site: pages, links that resolve, SEO tags, safe swaps and incremental rebuilds."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest

from newsletter.config import load_settings
from newsletter.render.parallel import PARALLEL_THRESHOLD
from newsletter.render.site import build_site
from newsletter.render.templates import THEME_DIR
from tests.conftest import wait_until, write_issue
from tests.render.site_files import site_files

BASE = "https://papers.example.com/"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.head: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(values["id"] or "")
        for name in ("href", "src"):
            if values.get(name):
                self.links.append(values[name] or "")
        if tag in {"link", "meta"}:
            self.head.append(values)


def parse_page(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def broken_links(site: Path) -> list[str]:
    """Every href/src on every page that points inside the site but at no file (or no anchor)."""
    broken = []
    pages = {p: parse_page(p) for p in site.rglob("*.html")}
    for page, parsed in pages.items():
        page_url = BASE + page.relative_to(site).as_posix()
        for link in parsed.links:
            url = urljoin(page_url, link)
            if not url.startswith(BASE):
                continue
            parts = urlsplit(url)
            target = site / unquote(parts.path[len(urlsplit(BASE).path) :])
            if parts.path.endswith("/"):
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{page.relative_to(site)} → {link}")
            elif parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else parse_page(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{page.relative_to(site)} → {link} (no such anchor)")
    return broken


@pytest.fixture
def site(publication: Path, run) -> Path:
    result = run("build")
    assert result.exit_code == 0, result.output
    return publication / "site"


def test_every_internal_link_resolves(site: Path) -> None:
    assert len(list(site.rglob("index.html"))) > 40
    assert broken_links(site) == []


def test_edition_page_has_canonical_hreflang_og_and_feeds(site: Path) -> None:
    page = parse_page(site / "issues" / "2023-09-25-top-ml-papers" / "index.html")
    links = {(h.get("rel"), h.get("hreflang"), h.get("type")): h.get("href") for h in page.head if h.get("rel")}
    url = BASE + "issues/2023-09-25-top-ml-papers/"
    en_url = BASE + "en/issues/2023-09-25-top-ml-papers/"
    assert links[("canonical", None, None)] == url
    assert links[("alternate", "ko", None)] == url
    assert links[("alternate", "en", None)] == en_url
    assert links[("alternate", "x-default", None)] == url
    assert links[("alternate", None, "application/atom+xml")] == BASE + "feed.xml"
    assert links[("alternate", None, "application/rss+xml")] == BASE + "rss.xml"
    meta = {m.get("property"): m.get("content") for m in page.head if m.get("property")}
    assert meta["og:type"] == "article" and meta["og:url"] == url
    assert meta["og:locale"] == "ko_KR" and meta["og:locale:alternate"] == "en_US"
    assert meta["og:image"] == BASE + "static/og-image.png"
    assert meta["article:published_time"] == "2023-09-25T09:00:00+09:00"
    assert "반전의-저주-the-reversal-curse" in page.ids

    english = parse_page(site / "en" / "issues" / "2023-09-25-top-ml-papers" / "index.html")
    en_links = {(h.get("rel"), h.get("hreflang"), h.get("type")): h.get("href") for h in english.head if h.get("rel")}
    assert en_links[("canonical", None, None)] == en_url  # self-canonical, never ko
    assert en_links[("alternate", "en", "application/atom+xml")] == BASE + "en/feed.xml"
    assert "the-reversal-curse" in english.ids


def test_index_sitemap_404_and_tags(site: Path) -> None:
    index = (site / "index.html").read_text(encoding="utf-8")
    assert "이번 주의 주요 ML 논문 (2023/09/25 ~ 10/01)" in index and "논문 10편" in index
    sitemap = (site / "sitemap.xml").read_text(encoding="utf-8")
    assert f"<loc>{BASE}issues/2023-09-25-top-ml-papers/</loc>" in sitemap
    assert "<lastmod>2023-09-25</lastmod>" in sitemap
    assert f'hreflang="en" href="{BASE}en/issues/2023-09-25-top-ml-papers/"' in sitemap
    assert (site / "404.html").is_file()
    tag_page = (site / "tags" / "llama" / "index.html").read_text(encoding="utf-8")
    assert "파운데이션 모델의 효과적인 장기 컨텍스트 확장" in tag_page and "Qwen" not in tag_page.split("<main>")[1]


def test_failed_build_leaves_previous_site_untouched(publication: Path, site: Path, run) -> None:
    before = {p: p.read_bytes() for p in site.rglob("*") if p.is_file()}
    write_issue(publication, "2023-10-02-bad.md", "---\ntitle: x\ndate: 2023-13-45\n---\n")
    result = run("build")
    assert result.exit_code == 1
    assert {p: p.read_bytes() for p in site.rglob("*") if p.is_file()} == before
    assert not [p for p in publication.iterdir() if p.name.startswith(".site.")]


def test_tags_sharing_a_page_are_refused_naming_both(publication: Path, run) -> None:
    """`llm/reasoning` and the sample's `llm-reasoning` would both live at tags/llm-reasoning/ (tests/render/test_tags.py
    has the spellings that merge instead)."""
    write_issue(publication, "2023-10-02-a.md", "---\ntitle: a\ndate: 2023-10-02\ntags: [llm/reasoning]\n---\n")
    result = run("build")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: issues/2023-10-02-a.md: tag 'llm/reasoning' and 'llm-reasoning' of issues/2023-09-25-top-ml-papers.md "
        "would share the page tags/llm-reasoning/ (spell them one way, or tell them apart by a letter or digit)\n"
    )


def test_incremental_rebuild_matches_a_cold_build(publication: Path, site: Path, run, tmp_path: Path) -> None:
    path = publication / "issues" / "2023-09-25-top-ml-papers.en.md"
    path.write_text(
        path.read_text(encoding="utf-8").replace("Top ML Papers of the Week (", "Top Papers ("), encoding="utf-8"
    )
    write_issue(publication, "2023-10-02-new.md", "---\ntitle: 새 호\ndate: 2023-10-02\ntags: [new-tag]\n---\n본문\n")
    result = run("build")
    assert result.exit_code == 0 and "unchanged" in result.output
    cold = tmp_path / "cold"
    assert run("build", "--no-cache", "--out", str(cold)).exit_code == 0
    incremental, fresh = site_files(site), site_files(cold)
    assert incremental.keys() == fresh.keys()
    assert [p for p in incremental if incremental[p] != fresh[p]] == []
    (publication / "issues" / "2023-10-02-new.md").unlink()
    assert run("build").exit_code == 0
    assert not (site / "issues" / "2023-10-02-new").exists() and not (site / "tags" / "new-tag").exists()


def test_drafts_are_not_published(publication: Path, run) -> None:
    write_issue(publication, "2023-10-02-d.md", "---\ntitle: Secret\ndate: 2023-10-02\ndraft: true\n---\n")
    assert run("build").exit_code == 0
    site = publication / "site"
    assert not (site / "issues" / "2023-10-02-d").exists()
    assert "Secret" not in (site / "index.html").read_text(encoding="utf-8")
    assert "Secret" not in (site / "feed.xml").read_text(encoding="utf-8")


def test_pages_are_paginated(publication: Path, run) -> None:
    config = publication / "pyproject.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("feed_size = 20", "feed_size = 20\npage_size = 1"), encoding="utf-8"
    )
    write_issue(publication, "2023-10-02-n.md", "---\ntitle: 둘째\ndate: 2023-10-02\ntags: [llm]\n---\n")
    assert run("build").exit_code == 0
    site = publication / "site"
    index = (site / "index.html").read_text(encoding="utf-8")
    assert "둘째" in index and "(2023/09/25" not in index and 'rel="next" href="page/1/"' in index
    # Numbered from the oldest: page 1 holds the first issue and stays as it is when newer ones come.
    first = (site / "page" / "1" / "index.html").read_text(encoding="utf-8")
    assert "이번 주의 주요 ML 논문 (2023/09/25" in first and 'rel="prev" href="../../page/2/"' in first
    assert 'rel="next"' not in first
    newest = (site / "page" / "2" / "index.html").read_text(encoding="utf-8")
    assert "둘째" in newest and 'rel="prev" href="../../"' in newest and 'rel="next" href="../../page/1/"' in newest
    assert (site / "tags" / "llm" / "page" / "2" / "index.html").is_file()
    assert broken_links(site) == []


def test_damaged_cache_and_changed_template_give_the_cold_build(
    publication: Path, site: Path, run, tmp_path: Path
) -> None:
    cache = publication / ".cache" / "site"
    for batch in (cache / "articles").glob("*.pickle"):
        batch.write_bytes(b"not a pickle")
    next(iter((cache / "records").glob("*.pickle"))).unlink()
    entry = publication / "templates" / "entry.html.j2"  # an override of the theme's
    entry.write_text(
        (THEME_DIR / "entry.html.j2").read_text(encoding="utf-8") + '<p class="colophon">set in Noto</p>\n',
        encoding="utf-8",
    )
    assert run("build").exit_code == 0
    cold = tmp_path / "cold"
    assert run("build", "--no-cache", "--out", str(cold)).exit_code == 0
    rebuilt, fresh = site_files(site), site_files(cold)
    assert rebuilt == fresh
    assert "set in Noto" in (site / "feed.xml").read_text(encoding="utf-8")  # the feeds' articles were redone
    assert "set in Noto" in (site / "issues" / "2023-09-25-top-ml-papers" / "index.html").read_text(encoding="utf-8")


def _files(folder: Path) -> dict[str, bytes]:
    return site_files(folder)


def test_parallel_build_and_rebuild_match_a_serial_build(publication: Path, tmp_path: Path) -> None:
    sample = (publication / "issues" / "2023-09-25-top-ml-papers.md").read_text(encoding="utf-8")
    head, body = sample.split("\n---\n", 1)
    for n in range(1, PARALLEL_THRESHOLD + 6):  # enough issues that parsing and rendering fork workers
        date = dt.date(2023, 9, 25) - dt.timedelta(weeks=n)
        front = re.sub(r"^date: .*$", f"date: {date}", head, flags=re.M)
        front = re.sub(r"^tags: .*$", f"tags: [topic-{n % 7}]", front, flags=re.M)
        write_issue(publication, f"{date}-weekly-{n}.md", f"{front}\n---\n{body}")
    settings = load_settings(publication)
    site, serial = tmp_path / "site", tmp_path / "serial"
    assert build_site(settings, out=site, workers=2).pages_rendered > PARALLEL_THRESHOLD
    build_site(settings, out=serial, workers=1, use_cache=False)
    assert _files(site) == _files(serial)

    changed = publication / "issues" / "2023-07-31-weekly-8.md"
    changed.write_text(changed.read_text(encoding="utf-8").replace("반전의 저주", "역전의 저주"), encoding="utf-8")
    rebuilt = build_site(settings, out=site, workers=2)
    assert 0 < rebuilt.pages_rendered < rebuilt.pages_reused
    build_site(settings, out=serial, workers=1, use_cache=False)
    assert _files(site) == _files(serial)
    assert "역전의 저주" in (site / "issues" / "2023-07-31-weekly-8" / "index.html").read_text(encoding="utf-8")


def test_two_files_with_the_same_bytes_keep_their_own_pages(publication: Path, run) -> None:
    text = "---\ntitle: 같은 글\ndate: 2023-10-02\n---\n본문\n"
    write_issue(publication, "2023-10-02-first.md", text)
    write_issue(publication, "2023-10-02-second.md", text)
    assert run("build").exit_code == 0
    entry = publication / "templates" / "entry.html.j2"  # every page renders again, from the cache
    entry.write_text((THEME_DIR / "entry.html.j2").read_text(encoding="utf-8") + "<p>changed</p>\n", encoding="utf-8")
    assert run("build").exit_code == 0
    for slug in ("2023-10-02-first", "2023-10-02-second"):
        page = parse_page(publication / "site" / "issues" / slug / "index.html")
        canonical = next(tag["href"] for tag in page.head if tag.get("rel") == "canonical")
        assert canonical == f"{BASE}issues/{slug}/"


def _children(pid: int) -> set[int]:
    """Live processes whose parent is `pid` (from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent (init, here) has not reaped it yet


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from Linux's /proc")
def test_killed_build_leaves_no_workers_and_the_next_build_removes_its_staging(publication: Path) -> None:
    sample = (publication / "issues" / "2023-09-25-top-ml-papers.md").read_text(encoding="utf-8")
    head, body = sample.split("\n---\n", 1)
    for n in range(1, PARALLEL_THRESHOLD * 6):  # so many that parsing and rendering fork workers and take a while
        date = dt.date(2023, 9, 25) - dt.timedelta(weeks=n)
        front = re.sub(r"^date: .*$", f"date: {date}", head, flags=re.M)
        write_issue(publication, f"{date}-weekly-{n}.md", f"{front}\n---\n{body}")
    command = [sys.executable, "-m", "newsletter", "--root", str(publication), "build"]
    build = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staging = publication / f".site.new-{build.pid}"
    workers: set[int] = set()
    try:
        wait_until(lambda: staging.is_dir() and bool(workers.update(_children(build.pid)) or workers), 60, "workers")
        build.kill()  # SIGKILL: nothing of the build's own cleanup runs
        build.wait()
        wait_until(lambda: not any(_running(pid) for pid in workers), 10, f"workers {sorted(workers)} to exit")
        assert staging.is_dir()  # left behind by the killed build

        again = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr
        assert (publication / "site" / "index.html").is_file()
        wait_until(lambda: not staging.exists(), 60, f"{staging.name} to be removed")
    finally:
        build.kill()
        build.wait()
        for pid in workers:  # only if the test failed: the workers this test saw, by their ids
            if _running(pid):
                os.kill(pid, signal.SIGKILL)


def test_build_removes_staging_of_dead_builds_and_keeps_those_of_running_ones(publication: Path, run) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(finished.stdout)
    running = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        stale = [publication / f".site.new-{dead}", publication / f".site.old-{dead}"]
        live = publication / f".site.new-{running.pid}"
        for folder in [*stale, live]:
            (folder / "issues").mkdir(parents=True)
            (folder / "issues" / "index.html").write_text("left behind")
        assert run("build").exit_code == 0
        wait_until(lambda: not any(folder.exists() for folder in stale), 30, "stale folders to be removed")
        assert (live / "issues" / "index.html").is_file()
    finally:
        running.communicate(b"")
