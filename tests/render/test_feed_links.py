"""Every link in every feed's entry content is absolute and lands on the archive page it came from, read as a
feed reader reads it: relative links resolved against the feed's own URL (newsboat showed …/feed.xml#anchor)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

import feedparser
import pytest
from lxml import html as lxml_html

from tests.conftest import write_issue

BASE = "https://papers.example.com/"
LINKS = """---
title: "링크"
date: 2023-10-02
summary: "s"
tags: [links]
---

See [the paper below](#a-paper), [the tags](../../tags/), [the about page](/about/) and ![a chart](chart.png).

## A paper

Back to [the top of the page](#) and <a href="../../tags/links/">its tag</a>.

<p onclick="alert(1)" style="position: fixed">Raw <b>HTML</b><script>alert(2)</script> stays on the page.</p>
<iframe src="https://www.youtube.com/embed/x"></iframe>

#llm #links

- [Paper](https://arxiv.org/abs/2310.00001)
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import shutil

    from click.testing import CliRunner

    from newsletter.cli import cli
    from tests.conftest import REPO

    root = tmp_path_factory.mktemp("links") / "pub"
    root.mkdir()
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(REPO / "templates", root / "templates")
    shutil.copytree(REPO / "issues", root / "issues")
    write_issue(root, "2023-10-02-links.md", LINKS)
    result = CliRunner().invoke(cli, ["--root", str(root), "build"], obj={}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return root / "site"


def served_as(url: str) -> dict[str, str]:
    """The headers of a feed served from `url` (feedparser resolves relative links against it)."""
    kind = "application/rss+xml" if url.endswith("rss.xml") else "application/atom+xml"
    return {"content-location": url, "content-type": f"{kind}; charset=utf-8"}


def feeds(site: Path) -> list[Path]:
    found = sorted([*site.rglob("feed.xml"), *site.rglob("rss.xml")])
    assert len(found) > 20  # the main feeds of both languages and every tag's
    return found


def test_every_link_in_feed_content_is_absolute_and_lands_on_the_page(site: Path) -> None:
    checked = 0
    for path in feeds(site):
        feed_url = BASE + path.relative_to(site).as_posix()
        # As a reader parses it: anything relative would be resolved against the feed's URL.
        feed = feedparser.parse(path.read_bytes(), response_headers=served_as(feed_url))
        assert feed.bozo == 0, (path, feed.get("bozo_exception"))
        for entry in feed.entries:
            raw = lxml_html.fragment_fromstring(entry.content[0].value, create_parent="div")
            for _element, attribute, link, _ in raw.iterlinks():
                assert urlsplit(link).scheme in {"https", "mailto"}, (path, attribute, link)
                assert "feed.xml" not in link and "rss.xml" not in link, (path, link)
                if link.startswith(BASE):
                    assert_lands(site, link)
                    checked += 1
    assert checked > 100


def assert_lands(site: Path, url: str) -> None:
    """`url` is a page of the built site, and its fragment, if any, an element of that page."""
    parts = urlsplit(url)
    path = unquote(parts.path).lstrip("/")
    if path in {"about/", "issues/2023-10-02-links/chart.png"}:
        return  # the editor's own links to files outside the archive, resolved as the page resolves them
    target = site / path / "index.html" if path.endswith("/") or not path else site / path
    assert target.is_file(), url
    if parts.fragment:
        page = lxml_html.parse(str(target)).getroot()
        assert page.get_element_by_id(unquote(parts.fragment), None) is not None, url


def test_paper_headings_and_in_page_links_point_at_the_issue_page(site: Path) -> None:
    feed = feedparser.parse((site / "feed.xml").read_bytes(), response_headers=served_as(BASE + "feed.xml"))
    (entry,) = [e for e in feed.entries if e.title == "링크"]
    root = lxml_html.fragment_fromstring(entry.content[0].value, create_parent="div")
    page = BASE + "issues/2023-10-02-links/"
    links = {a.text_content(): a.get("href") for a in root.iter("a")}
    assert links["A paper"] == page + "#a-paper"  # the heading's anchor, on the page
    assert links["the paper below"] == page + "#a-paper"
    assert links["the top of the page"] == page
    assert links["the tags"] == BASE + "tags/"
    assert links["its tag"] == BASE + "tags/links/"
    assert links["#llm"] == BASE + "tags/llm/"
    assert [img.get("src") for img in root.iter("img")] == [page + "chart.png"]


def test_feed_content_leaves_out_what_feed_readers_refuse(site: Path) -> None:
    """The editor's raw HTML is on the page as written; feeds drop scripts, frames, handlers and styles (the W3C
    validator's SecurityRisk, SecurityRiskAttr and DangerousStyleAttr)."""
    page = (site / "issues" / "2023-10-02-links" / "index.html").read_text(encoding="utf-8")
    assert "<script>alert(2)</script>" in page and 'onclick="alert(1)"' in page and "<iframe" in page
    for path in (site / "feed.xml", site / "rss.xml", site / "tags" / "links" / "feed.xml"):
        feed = feedparser.parse(path.read_bytes(), response_headers=served_as(BASE + "feed.xml"), sanitize_html=False)
        (entry,) = [e for e in feed.entries if "Raw" in e.content[0].value]
        content = entry.content[0].value
        assert "<p>Raw <b>HTML</b> stays on the page.</p>" in content, path
        assert (
            "script" not in content and "onclick" not in content and "style=" not in content and "iframe" not in content
        )
