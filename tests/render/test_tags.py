"""Tags as editors write them: pages at derived, stable paths, the displayed form kept, spellings merged, and
two tags that would share a page refused in one line."""

from __future__ import annotations

from pathlib import Path

import feedparser
import pytest

from newsletter.tags import tag_key, tag_segment
from tests.conftest import write_issue

ISSUE = """---
title: "{title}"
date: {date}
summary: "s"
tags: [{tags}]
---

Intro.

## {paper}

Text.

{section_tags}

- [Paper](https://arxiv.org/abs/{number})
"""


def issue(date: str, tags: str, section_tags: str = "", paper: str = "A paper", title: str = "호") -> str:
    number = date.replace("-", "")
    return ISSUE.format(title=title, date=date, tags=tags, section_tags=section_tags, paper=paper, number=number)


@pytest.mark.parametrize(
    ("tag", "segment"),
    [
        ("machine learning", "machine-learning"),
        ("Machine  Learning", "machine-learning"),
        ("C++", "c-plus-plus"),
        ("C#", "c-sharp"),
        ("C", "c"),
        ("a/b", "a-b"),
        ("한국어 태그", "한국어-태그"),
        ("ＬＬＭ", "llm"),  # NFKC: full-width letters are the ASCII ones
        ("हिन्दी", "हिन्दी"),  # combining vowel signs stay inside the word
        ("llm-reasoning", "llm-reasoning"),  # the tags the sample always had keep their pages
        ("Straße", "strasse"),  # case folding
    ],
)
def test_tag_segment_is_a_safe_unicode_aware_path_segment(tag: str, segment: str) -> None:
    assert tag_segment(tag) == segment
    assert "/" not in segment and " " not in segment and not segment.startswith("-")


def test_spellings_differing_in_case_or_spacing_are_one_tag() -> None:
    assert (
        len({tag_key(t) for t in ("Machine Learning", "machine-learning", "MACHINE_LEARNING", "machine  learning")})
        == 1
    )
    assert tag_key("a/b") != tag_key("a-b")  # one page, two tags: refused, not merged


def test_tags_with_spaces_capitals_punctuation_and_hangul_build_pages(publication: Path, run) -> None:
    write_issue(
        publication,
        "2023-10-02-tags.md",
        issue("2023-10-02", '"machine learning", "C++", "a/b", "한국어 태그", "C#"', section_tags="#Vision #C"),
    )
    result = run("build")
    assert result.exit_code == 0, result.output
    site = publication / "site"
    for tag, segment in [
        ("machine learning", "machine-learning"),
        ("C++", "c-plus-plus"),
        ("a/b", "a-b"),
        ("한국어 태그", "한국어-태그"),
        ("C#", "c-sharp"),
        ("Vision", "vision"),
        ("C", "c"),
    ]:
        page = (site / "tags" / segment / "index.html").read_text(encoding="utf-8")
        assert tag in page.split("<h1>")[1].split("</h1>")[0]  # the displayed form, as written
        feed = feedparser.parse((site / "tags" / segment / "feed.xml").read_bytes())
        assert feed.bozo == 0 and [e.title for e in feed.entries] == ["A paper"]
        assert feed.entries[0].link == "https://papers.example.com/issues/2023-10-02-tags/#a-paper"
    hangul = feedparser.parse((site / "tags" / "한국어-태그" / "feed.xml").read_bytes())
    encoded = (
        "%ED%95%9C%EA%B5%AD%EC%96%B4-%ED%83%9C%EA%B7%B8"  # the URL it is served from (W3C: SelfDoesntMatchLocation)
    )
    assert [link.href for link in hangul.feed.links if link.rel == "self"] == [
        f"https://papers.example.com/tags/{encoded}/feed.xml"
    ]
    assert hangul.feed.id == f"tag:papers.example.com,2023-09-25:tags/{encoded}/ko"
    page = (site / "tags" / "한국어-태그" / "index.html").read_text(encoding="utf-8")
    assert f'rel="canonical" href="https://papers.example.com/tags/{encoded}/"' in page
    index = (site / "tags" / "index.html").read_text(encoding="utf-8")
    assert "#machine learning" in index and "#C++" in index and "#한국어 태그" in index
    assert "tags/%ED%95%9C%EA%B5%AD%EC%96%B4-%ED%83%9C%EA%B7%B8/" in index  # the link to the Hangul page, encoded
    article = (site / "issues" / "2023-10-02-tags" / "index.html").read_text(encoding="utf-8")
    assert "#Vision</a>" in article and "../../tags/vision/" in article  # the chip: as written, to its page


def test_spellings_of_one_tag_share_a_page_named_by_the_oldest(publication: Path, run) -> None:
    write_issue(publication, "2023-10-02-first.md", issue("2023-10-02", '"Machine Learning"', title="첫째"))
    write_issue(
        publication,
        "2023-10-09-second.md",
        issue("2023-10-09", '"machine  learning"', section_tags="#MACHINE_LEARNING", title="둘째"),
    )
    result = run("build")
    assert result.exit_code == 0, result.output
    tags = publication / "site" / "tags"
    assert not [p for p in tags.iterdir() if p.name.startswith("machine") and p.name != "machine-learning"]
    page = (tags / "machine-learning" / "index.html").read_text(encoding="utf-8")
    assert "Machine Learning" in page.split("<h1>")[1].split("</h1>")[0]  # the first spelling met
    assert page.index("둘째") < page.index("첫째")  # both issues, newest first
    index = (tags / "index.html").read_text(encoding="utf-8")
    assert "#Machine Learning" in index and "#machine  learning" not in index and "#MACHINE_LEARNING" not in index
    feed = feedparser.parse((tags / "machine-learning" / "feed.xml").read_bytes())
    assert [e.id.rsplit(":", 1)[1] for e in feed.entries] == [
        "2023-10-09-second/ko#a-paper",  # a paper tagged twice, through its issue and itself, is one entry
        "2023-10-02-first/ko#a-paper",
    ]


def test_two_tags_of_one_file_sharing_a_page_are_one_line_error(publication: Path, run) -> None:
    write_issue(publication, "2023-10-02-clash.md", issue("2023-10-02", '"a/b"', section_tags="#a-b"))
    result = run("build")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: issues/2023-10-02-clash.md:10: tag 'a/b' (line 5) and 'a-b' share the page tags/a-b/ "
        "(spell them one way, or tell them apart by a letter or digit)\n"
    )


def test_check_names_both_files_of_tags_sharing_a_page(publication: Path, run) -> None:
    write_issue(publication, "2023-10-02-one.md", issue("2023-10-02", '"a/b"'))
    write_issue(publication, "2023-10-09-two.md", issue("2023-10-09", '"A B"'))
    result = run("check")
    assert result.exit_code == 1
    assert (
        "error: issues/2023-10-09-two.md: tag 'A B' and 'a/b' of issues/2023-10-02-one.md would share the page "
        "tags/a-b/ (spell them one way, or tell them apart by a letter or digit)\n"
    ) in result.output
    build = run("build")
    assert build.exit_code == 1 and build.stderr.count("\n") == 1 and "issues/2023-10-02-one.md" in build.stderr


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ('"!!!"', "tag '!!!' has no letter or digit (give it at least one: it names the tag's page)"),
        ('"a", ""', "a tag is empty (write a word, or remove the empty entry)"),
        ('"' + "x" * 65 + '"', "tag 'xxxxxxxxxxxxxxxxxxxx'… is longer than 64 characters (shorten it)"),
    ],
)
def test_a_tag_without_a_page_name_is_refused(publication: Path, run, tags: str, message: str) -> None:
    write_issue(publication, "2023-10-02-bad.md", issue("2023-10-02", tags))
    result = run("build")
    assert result.exit_code == 1
    assert result.stderr == f"Error: issues/2023-10-02-bad.md:5: {message}\n"
