"""Listing pages numbered from the oldest: a new issue leaves every older page as it was."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from newsletter.config import load_settings
from newsletter.render.site import build_site
from tests.conftest import write_issue
from tests.render.site_files import site_files

SAMPLE_DATE = dt.date(2023, 9, 25)  # the sample's Korean issue, the oldest


def _paginate(publication: Path, size: int) -> None:
    config = publication / "pyproject.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("feed_size = 20", f"feed_size = 20\npage_size = {size}"), encoding="utf-8")


def _weekly(publication: Path, week: int, tag: str = "weekly") -> str:
    """Issue `week` weeks after the sample, tagged `tag`; returns its slug."""
    date = SAMPLE_DATE + dt.timedelta(weeks=week)
    slug = f"{date}-week-{week}"
    write_issue(
        publication, f"{slug}.md", f"---\ntitle: 주간 {week}호\ndate: {date}\ntags: [{tag}]\n---\n본문 {week}\n"
    )
    return slug


def _changed(before: dict[str, bytes], after: dict[str, bytes]) -> set[str]:
    """Files new or different in `after`, the search index left aside (it has a test of its own)."""
    return {p for p, data in after.items() if before.get(p) != data and not p.startswith("pagefind")}


def test_adding_an_issue_changes_only_the_newest_listing_pages(publication: Path, tmp_path: Path) -> None:
    _paginate(publication, 2)
    for week in range(1, 5):  # with the sample, five Korean issues: pages 1 and 2 hold two, page 3 one
        _weekly(publication, week)
    settings = load_settings(publication)
    site = tmp_path / "site"
    build_site(settings, out=site)
    before = site_files(site)
    assert {"page/1/index.html", "page/2/index.html", "page/3/index.html"} <= set(before)

    slug = _weekly(publication, 5, tag="fresh")
    rebuilt = build_site(settings, out=site)
    after = site_files(site)
    assert _changed(before, after) == {
        "index.html",  # shows the newest two
        "page/3/index.html",  # the newest page, now full
        f"issues/{slug}/index.html",
        "feed.xml",
        "rss.xml",
        "sitemap.xml",
        "tags/index.html",
        "tags/fresh/index.html",
        "tags/fresh/feed.xml",
    }
    assert rebuilt.pages_rendered <= 12  # the nine above, and outputs whose inputs changed but not their bytes
    cold = tmp_path / "cold"
    build_site(settings, out=cold, use_cache=False)
    assert site_files(site) == site_files(cold)


def test_a_new_page_links_the_one_before_it(publication: Path, tmp_path: Path) -> None:
    _paginate(publication, 2)
    for week in range(1, 4):  # four issues: two full pages
        _weekly(publication, week)
    settings = load_settings(publication)
    site = tmp_path / "site"
    build_site(settings, out=site)
    before = site_files(site)
    assert "page/3/index.html" not in before
    _weekly(publication, 4)
    build_site(settings, out=site)
    after = site_files(site)
    changed = _changed(before, after)
    assert {"page/2/index.html", "page/3/index.html", "index.html"} <= changed  # page 2's "newer" is page 3 now
    assert "page/1/index.html" not in changed


def _older(page: Path) -> Path | None:
    found = re.search(r'rel="next" href="([^"]+)"', page.read_text(encoding="utf-8"))
    return (page.parent / found.group(1) / "index.html").resolve() if found else None


def test_the_older_links_from_the_index_reach_every_issue_newest_first(publication: Path, tmp_path: Path) -> None:
    _paginate(publication, 2)
    slugs = [_weekly(publication, week) for week in range(1, 5)]
    site = tmp_path / "site"
    build_site(load_settings(publication), out=site)
    seen: list[str] = []
    page: Path | None = (site / "index.html").resolve()
    while page is not None:
        seen.extend(
            s for s in re.findall(r'href="[./]*issues/([^/"]+)/"', page.read_text(encoding="utf-8")) if s not in seen
        )
        page = _older(page)
    assert seen == [*reversed(slugs), "2023-09-25-top-ml-papers"]
    assert sorted(p.name for p in (site / "page").iterdir()) == ["1", "2", "3"]
    # A list that fits on one page has no numbered pages.
    assert not (site / "en" / "page").exists() and not (site / "tags" / "llm" / "page").exists()


def test_a_language_without_editions_gets_no_listing_feeds_or_links(publication: Path, tmp_path: Path) -> None:
    english = publication / "issues" / "2023-09-25-top-ml-papers.en.md"
    text = english.read_text(encoding="utf-8")
    english.unlink()  # English is configured, but no issue has an English edition yet
    settings = load_settings(publication)
    site = tmp_path / "site"
    build_site(settings, out=site)
    assert not (site / "en").exists()  # no empty index, feed.xml, rss.xml or tag index
    for page in ("index.html", "tags/index.html", "issues/2023-09-25-top-ml-papers/index.html", "sitemap.xml"):
        content = (site / page).read_text(encoding="utf-8")
        assert 'hreflang="en"' not in content and "/en/" not in content, page

    english.write_text(text, encoding="utf-8")  # the first English edition brings them
    build_site(settings, out=site)
    for made in ("en/index.html", "en/feed.xml", "en/rss.xml", "en/tags/index.html"):
        assert (site / made).is_file(), made
    assert 'hreflang="en" href="https://papers.example.com/en/"' in (site / "index.html").read_text(encoding="utf-8")
    cold = tmp_path / "cold"
    build_site(settings, out=cold, use_cache=False)
    assert site_files(site) == site_files(cold)


def test_the_default_language_keeps_its_home_page_before_the_first_issue(publication: Path, tmp_path: Path) -> None:
    for issue in (publication / "issues").iterdir():
        issue.unlink()
    config = publication / "pyproject.toml"  # search is off: Pagefind refuses a site of no pages (seen, not fixed here)
    config.write_text(
        config.read_text(encoding="utf-8").replace("feed_size = 20", "feed_size = 20\nsearch = false"), "utf-8"
    )
    site = tmp_path / "site"
    build_site(load_settings(publication), out=site)
    assert (site / "index.html").is_file() and (site / "feed.xml").is_file()  # readers may subscribe at once
    assert not (site / "en").exists()


def test_removing_issues_removes_the_pages_no_longer_made(publication: Path, tmp_path: Path) -> None:
    _paginate(publication, 2)
    slugs = [_weekly(publication, week) for week in range(1, 5)]
    settings = load_settings(publication)
    site = tmp_path / "site"
    build_site(settings, out=site)
    assert (site / "page" / "3").is_dir()
    for slug in slugs[1:]:
        (publication / "issues" / f"{slug}.md").unlink()
    build_site(settings, out=site)  # two issues left: one page, no numbered ones
    assert not (site / "page").exists() and not (site / "tags" / "weekly" / "page").exists()
    cold = tmp_path / "cold"
    build_site(settings, out=cold, use_cache=False)
    assert site_files(site) == site_files(cold)
