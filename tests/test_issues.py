"""Parsing issue files, and every kind of bad issue file with its exact one-line message and exit code."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.issues import load_issues, parse_issue
from tests.conftest import write_issue

GOOD = """---
title: "Good issue"
date: 2023-10-02
summary: "One paper."
tags: [vision]
---

Intro.

## A paper

Body.

#vision

- [Paper](https://arxiv.org/abs/1)
"""


def test_sample_issue_has_two_editions_with_ten_papers_each(publication: Path) -> None:
    settings = load_settings(publication)
    (issue,) = load_issues(settings)
    assert issue.slug == "2023-09-25-top-ml-papers"
    assert [e.lang for e in issue.editions] == ["ko", "en"]
    for edition in issue.editions:
        assert edition.date == dt.date(2023, 9, 25)
        assert len(edition.sections) == 10
        assert all(len(s.links) == 2 for s in edition.sections)
        assert edition.sections[0].links[0].url == "https://arxiv.org/abs/2309.12288"
        assert edition.sections[9].links[1].url == "https://x.com/omarsar0/status/1706711389803287019"
        assert edition.sections[1].tags == (
            "llama",
            "llama2",
            "llama2-long",
            "1b-context-window",
            "100k-context-window",
        )
        assert "llm" in edition.tags and "chain-of-thought" in edition.tags


def test_sample_keeps_every_seed_text(publication: Path) -> None:
    """Nothing of the seed's content is lost: each summary and abstract is in its edition."""
    seed = Path(__file__).resolve().parent.parent.parent / "shared" / "seeds" / "000_a031fcf09750a8af.txt"
    if not seed.exists():
        pytest.skip("the seed is in ../shared/seeds (beside the checkout)")
    text = seed.read_text(encoding="utf-8").replace(":smile:", "😄").replace(":bowing_man:", "🙇‍♂️")
    ko = (publication / "issues" / "2023-09-25-top-ml-papers.md").read_text(encoding="utf-8")
    en = (publication / "issues" / "2023-09-25-top-ml-papers.en.md").read_text(encoding="utf-8")
    lines = [line.strip().lstrip("•").strip() for line in text.splitlines()]
    title, *content = [line for line in lines if len(line) > 30 and not line.startswith("https://")]
    assert title == "[2023/09/25 ~ 10/01] 이번 주의 주요 ML 논문 (Top ML Papers of the Week)"
    assert 'title: "이번 주의 주요 ML 논문 (2023/09/25 ~ 10/01)"' in ko
    assert 'title: "Top ML Papers of the Week (2023/09/25 – 10/01)"' in en
    assert len(content) > 40
    for line in content:
        assert line[:50] in ko or line[:50] in en, line[:50]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "2023-09-25-x.md",
            "title: x\n\nbody\n",
            "issues/2023-09-25-x.md:1: no front matter (start the file with a '---' line, title: and date:, then '---')",
        ),
        (
            "2023-09-25-x.md",
            "---\ntitle: x\ndate: 2023-09-25\nbody\n",
            "issues/2023-09-25-x.md:1: front matter is not closed (add a '---' line after it)",
        ),
        (
            "2023-09-25-x.md",
            '---\ntitle: "x\ndate: 2023-09-25\n---\n',
            "issues/2023-09-25-x.md:2: front matter is not valid YAML: while scanning a quoted scalar: found unexpected end"
            " of stream (fix the YAML syntax)",
        ),
        (
            "2023-09-25-x.md",
            "---\ndate: 2023-09-25\n---\nbody\n",
            "issues/2023-09-25-x.md:1: title is missing (add title: to the front matter)",
        ),
        (
            "2023-09-25-x.md",
            "---\ntitle: x\ndate: 2023-13-45\n---\n",
            "issues/2023-09-25-x.md:3: date '2023-13-45' is not a valid date (use YYYY-MM-DD)",
        ),
        (
            "2023-09-25-x.md",
            "---\ntitle: x\ndate: 2023-09-26\n---\n",
            "issues/2023-09-25-x.md:3: date 2023-09-26 differs from the file name's 2023-09-25 (make them the same)",
        ),
        (
            "2023-09-25-x.fr.md",
            "---\ntitle: x\ndate: 2023-09-25\n---\n",
            "issues/2023-09-25-x.fr.md: language 'fr' is not configured (use one of ko, en or add it to languages)",
        ),
        (
            "notes.md",
            "---\ntitle: x\n---\n",
            "issues/notes.md: file name is not YYYY-MM-DD-slug[.lang].md (rename it, e.g. 2023-09-25-top-ml-papers.md)",
        ),
        (
            "2023-09-25-x.md",
            '---\ntitle: "a\\r\\nBcc: x@evil.test"\ndate: 2023-09-25\n---\n',
            "issues/2023-09-25-x.md:2: title contains a line break (write it on one line)",
        ),
        (
            "2023-09-25-x.md",
            "---\ntitle: x\ndate: 2023-09-25\ntilte: y\n---\n",
            "issues/2023-09-25-x.md:4: unknown front matter key 'tilte' (use title, date, summary, tags, draft, advertisement, publish_at)",
        ),
        (
            "2023-09-25-x.md",
            "---\ntitle: x\ndate: 2023-09-25\ndraft: maybe\n---\n",
            "issues/2023-09-25-x.md:4: draft 'maybe' is not true or false (write draft: true)",
        ),
        (
            "2023-09-25-x.md",
            b"---\ntitle: x\ndate: 2023-09-25\n---\n\xff\xfe bad\n",
            "issues/2023-09-25-x.md:5: byte 0xff is not UTF-8 (save the file as UTF-8)",
        ),
    ],
)
def test_bad_issue_file_gives_one_line_and_exit_1(
    publication: Path, run, name: str, content: str | bytes, message: str
) -> None:
    write_issue(publication, name, content)
    for command in ("check", "build"):
        result = run(command)
        assert result.exit_code == 1, result.output
        if command == "build":
            assert result.stderr == f"Error: {message}\n"
        else:
            assert f"error: {message}" in result.stderr.splitlines()
        assert "Traceback" not in result.output + result.stderr
    assert not (publication / "site").exists()  # nothing half-written


def test_two_files_for_one_edition_are_named(publication: Path, run) -> None:
    write_issue(publication, "2023-10-02-x.md", GOOD)
    write_issue(publication, "2023-10-02-x.ko.md", GOOD)
    result = run("build")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "Error: issues/2023-10-02-x.md: is a second 'ko' edition of 2023-10-02-x, like "
        "issues/2023-10-02-x.ko.md (remove or rename one)"
    )


def test_translation_without_default_edition_is_refused(publication: Path, run) -> None:
    write_issue(publication, "2023-10-02-x.en.md", GOOD)
    result = run("check")
    assert result.exit_code == 1
    assert (
        "error: issues/2023-10-02-x.en.md: issue 2023-10-02-x has no 'ko' (default language) edition "
        "(add issues/2023-10-02-x.md)"
    ) in result.stderr


def test_good_issue_parses_with_tags_links_and_summary(publication: Path) -> None:
    path = write_issue(publication, "2023-10-02-x.md", GOOD)
    edition = parse_issue(path, load_settings(publication))
    assert (edition.slug, edition.lang, edition.summary) == ("2023-10-02-x", "ko", "One paper.")
    (section,) = edition.sections
    assert (section.title, section.anchor, section.tags) == ("A paper", "a-paper", ("vision",))
    assert [(link.label, link.url) for link in section.links] == [("Paper", "https://arxiv.org/abs/1")]
    assert "#vision" not in section.html and "arxiv" not in section.html
    assert edition.body.intro_html == "<p>Intro.</p>\n"


def test_drafts_are_left_out_unless_asked_for(publication: Path) -> None:
    write_issue(publication, "2023-10-02-x.md", GOOD.replace("tags: [vision]", "tags: [vision]\ndraft: true"))
    settings = load_settings(publication)
    assert len(load_issues(settings)) == 2
    assert [i.slug for i in load_issues(settings, include_drafts=False)] == ["2023-09-25-top-ml-papers"]


@pytest.mark.parametrize(
    "text",
    [
        GOOD.replace("\n", "\r\n"),  # saved on Windows
        GOOD.replace("tags: [vision]\n---", "tags: [vision]\n...  "),  # YAML's other end marker, trailing blanks
        "\ufeff" + GOOD,  # with a byte order mark
    ],
    ids=["crlf", "dots", "bom"],
)
def test_front_matter_variants_parse_alike(publication: Path, text: str) -> None:
    path = publication / "issues" / "2023-10-02-x.md"
    path.write_bytes(text.encode("utf-8"))
    edition = parse_issue(path, load_settings(publication))
    assert (edition.title, edition.summary, edition.tags) == ("Good issue", "One paper.", ("vision",))
    (section,) = edition.sections
    assert (section.title, section.line, [link.url for link in section.links]) == (
        "A paper",
        10,
        ["https://arxiv.org/abs/1"],
    )
