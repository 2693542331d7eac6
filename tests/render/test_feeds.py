"""Feeds parsed back with feedparser: ids, order, language, links and content, stable across builds."""

from __future__ import annotations

import calendar
from pathlib import Path
from urllib.parse import quote

import feedparser
import pytest

from newsletter.render.feed_content import absolutize
from tests.conftest import write_issue

NEXT = """---
title: "{title}"
date: 2023-10-02
summary: "Next week."
---

Intro.

## A paper

Text with a [relative link](/about/).

#llm

- [Paper](https://arxiv.org/abs/2310.00001)
"""


@pytest.fixture
def built(publication: Path, run) -> Path:
    write_issue(publication, "2023-10-02-next.md", NEXT.format(title="다음 호"))
    write_issue(publication, "2023-10-02-next.en.md", NEXT.format(title="Next issue"))
    result = run("build")
    assert result.exit_code == 0, result.output
    return publication / "site"


@pytest.mark.parametrize(
    ("path", "lang", "home"),
    [
        ("feed.xml", "ko", "https://papers.example.com/"),
        ("rss.xml", "ko", "https://papers.example.com/"),
        ("en/feed.xml", "en", "https://papers.example.com/en/"),
        ("en/rss.xml", "en", "https://papers.example.com/en/"),
    ],
)
def test_feed_parses_newest_first_with_stable_ids(built: Path, path: str, lang: str, home: str) -> None:
    feed = feedparser.parse((built / path).read_bytes())
    assert feed.bozo == 0, feed.get("bozo_exception")
    assert feed.feed.language == lang
    assert feed.feed.link == home  # the website, not the feed itself
    assert any(link.rel == "self" and link.href == f"https://papers.example.com/{path}" for link in feed.feed.links)
    if path.endswith("feed.xml"):  # Atom: the web app's sign-up page, the feed's language chosen
        related = [link.href for link in feed.feed.links if link.rel == "related"]
        assert related == [f"https://papers.example.com/subscribe?lang={lang}"]
    ids = [entry.id for entry in feed.entries]
    assert ids == [
        f"tag:papers.example.com,2023-09-25:2023-10-02-next/{lang}",
        f"tag:papers.example.com,2023-09-25:2023-09-25-top-ml-papers/{lang}",
    ]
    newest, sample = feed.entries
    prefix = "" if lang == "ko" else "en/"
    assert sample.link == f"https://papers.example.com/{prefix}issues/2023-09-25-top-ml-papers/"
    content = sample.content[0].value
    assert content.count("https://arxiv.org/abs/") == 10
    assert 'href="https://papers.example.com/about/"' in newest.content[0].value  # relative links made absolute
    assert f'href="https://papers.example.com/{prefix}tags/llm/"' in newest.content[0].value  # the tag chips too
    assert "\x00" not in content and 'href="../' not in content
    assert sample.published_parsed[:3] == (2023, 9, 25)
    summary = "LLM이 중심인 한 주" if lang == "ko" else "A week centred on LLMs"
    assert sample.summary.startswith(summary)  # Atom summary / RSS description: the summary, not the HTML
    assert "<h2" in content  # Atom content / RSS content:encoded: the whole issue


def test_feeds_are_identical_across_rebuilds(built: Path, run) -> None:
    first = {p: (built / p).read_bytes() for p in ("feed.xml", "rss.xml", "en/feed.xml", "tags/llm/feed.xml")}
    assert run("build", "--no-cache").exit_code == 0
    assert {p: (built / p).read_bytes() for p in first} == first


def test_tag_feed_holds_one_entry_per_tagged_paper(built: Path) -> None:
    feed = feedparser.parse((built / "tags" / "llama" / "feed.xml").read_bytes())
    assert feed.bozo == 0
    page = "https://papers.example.com/issues/2023-09-25-top-ml-papers/"
    sample = "tag:papers.example.com,2023-09-25:2023-09-25-top-ml-papers/ko"
    anchors = ["파운데이션-모델의-효과적인-장기-컨텍스트-확장-effective-long-context-scaling-of-foundation-models"]
    anchors.append(
        "mentalllama-대규모-언어-모델을-사용한-소셜-미디어에서의-해석-가능한-정신-건강-분석-mentalllama-interpretable-"
        "mental-health-analysis-on-social-media-with-large-language-models"
    )
    quoted = [quote(anchor, safe="-") for anchor in anchors]
    assert [e.id for e in feed.entries] == [f"{sample}#{q}" for q in quoted]
    assert [e.link for e in feed.entries] == [f"{page}#{q}" for q in quoted]
    assert [e.title.split(" / ")[-1] for e in feed.entries] == [
        "Effective Long-Context Scaling of Foundation Models",
        "MentalLLaMA: Interpretable Mental Health Analysis on Social Media with Large Language Models",
    ]
    for entry, anchor in zip(feed.entries, anchors, strict=True):
        content = entry.content[0].value
        assert content.count("<h2") == 1 and f'id="{anchor}"' in content  # that paper alone
        assert content.count("https://arxiv.org/abs/") == 1
        assert "#llama" in content and entry.summary == "이번 주의 주요 ML 논문 (2023/09/25 ~ 10/01)"


def test_front_matter_tag_feed_holds_every_paper_of_its_issues(built: Path) -> None:
    """`llm` is the sample's front-matter tag (all ten papers) and one paper's #tag in the next issue."""
    feed = feedparser.parse((built / "en" / "tags" / "llm" / "feed.xml").read_bytes())
    assert feed.bozo == 0
    titles = [e.title for e in feed.entries]
    assert titles[:3] == ["A paper", "The Reversal Curse", "Effective Long-Context Scaling of Foundation Models"]
    assert len(titles) == 11 and "Next issue" not in titles and not any("Top ML Papers" in t for t in titles)
    assert feed.entries[0].id == "tag:papers.example.com,2023-09-25:2023-10-02-next/en#a-paper"
    assert feed.entries[0].link == "https://papers.example.com/en/issues/2023-10-02-next/#a-paper"
    assert feed.entries[0].published_parsed[:3] == (2023, 10, 2)
    # Each paper has a time of its own (the W3C validator's DuplicateUpdated), a second apart, in page order.
    times = [calendar.timegm(e.updated_parsed) for e in feed.entries]
    assert times == sorted(times, reverse=True) and len(set(times)) == len(times)
    assert times[1] - times[2] == 1 and all(e.published == e.updated for e in feed.entries)


def test_tag_feed_ids_stay_when_an_issue_is_added(built: Path, publication: Path, run) -> None:
    before = [e.id for e in feedparser.parse((built / "tags" / "llama" / "feed.xml").read_bytes()).entries]
    write_issue(
        publication, "2023-10-09-later.md", NEXT.replace("2023-10-02", "2023-10-09").format(title="t") + "\n#llama\n"
    )
    assert run("build").exit_code == 0
    after = [e.id for e in feedparser.parse((built / "tags" / "llama" / "feed.xml").read_bytes()).entries]
    assert after == ["tag:papers.example.com,2023-09-25:2023-10-09-later/ko#a-paper", *before]


def test_feed_size_limits_entries(publication: Path, run) -> None:
    config = publication / "pyproject.toml"
    config.write_text(config.read_text(encoding="utf-8").replace("feed_size = 20", "feed_size = 1"), encoding="utf-8")
    write_issue(publication, "2023-10-02-next.md", NEXT.format(title="다음 호"))
    assert run("build").exit_code == 0
    feed = feedparser.parse((publication / "site" / "feed.xml").read_bytes())
    assert [e.title for e in feed.entries] == ["다음 호"]


def test_absolutize_resolves_every_relative_url_against_the_page() -> None:
    html = (
        '<a href="../../tags/x/">x</a> <img SRC="img.png" alt=""> <a class="button" href="https://a.example/">a</a>'
        ' <a href="#top">top</a> <a href="mailto:x@example.com">m</a> <span data-href="no">n</span>'
        ' <img srcset="a.png 1x, /b.png 2x" src="//cdn.example.net/c.png" alt="c">'
    )
    assert absolutize(html, "https://papers.example.com/issues/2023-09-25-x/") == (
        '<a href="https://papers.example.com/tags/x/">x</a> '
        '<img src="https://papers.example.com/issues/2023-09-25-x/img.png" alt=""> '
        '<a class="button" href="https://a.example/">a</a> '
        '<a href="https://papers.example.com/issues/2023-09-25-x/#top">top</a> '
        '<a href="mailto:x@example.com">m</a> <span data-href="no">n</span> '
        '<img srcset="https://papers.example.com/issues/2023-09-25-x/a.png 1x, https://papers.example.com/b.png 2x" '
        'src="https://cdn.example.net/c.png" alt="c">'
    )
