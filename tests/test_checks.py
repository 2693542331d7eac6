"""`newsletter check`'s warnings say what is true: images without alt text, papers without links."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.errors import IssueError
from newsletter.issues import find_issue
from tests.conftest import write_issue

ISSUE = """---
title: "Images"
date: 2023-10-02
summary: "s"
---

Intro {intro}

## A paper

Body {body}

- [Paper](https://arxiv.org/abs/1)
"""
WHERE = "issues/2023-10-02-x.md"


def warnings(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("warning: ")]


@pytest.mark.parametrize(
    "image",
    [
        "![A chart of accuracy](https://example.com/a.png)",
        '<img src="https://example.com/a.png" alt="A chart">',
        "<IMG ALT='A chart' SRC=https://example.com/a.png />",
    ],
)
def test_image_with_alt_text_gives_no_warning(publication: Path, run, image: str) -> None:
    write_issue(publication, "2023-10-02-x.md", ISSUE.format(intro=image, body=image))
    result = run("check")
    assert result.exit_code == 0, result.stderr
    assert warnings(result) == []


@pytest.mark.parametrize(
    "image",
    [
        "![](https://example.com/a.png)",
        '<img src="https://example.com/a.png">',
        '<img alt=" " src="https://example.com/a.png">',
    ],
)
def test_image_without_alt_text_is_named_with_its_section_line(publication: Path, run, image: str) -> None:
    write_issue(publication, "2023-10-02-x.md", ISSUE.format(intro="text.", body=image))
    result = run("check")
    assert result.exit_code == 0, result.stderr
    assert warnings(result) == [
        f"warning: {WHERE}:9: image https://example.com/a.png has no alt text "
        "(write ![what it shows](https://example.com/a.png))"
    ]


def test_paper_without_links_is_a_warning(publication: Path, run) -> None:
    text = ISSUE.format(intro="", body="").replace("- [Paper](https://arxiv.org/abs/1)\n", "Just text.\n")
    write_issue(publication, "2023-10-02-x.md", text)
    result = run("check")
    assert result.exit_code == 0, result.stderr
    assert warnings(result) == [
        f"warning: {WHERE}:9: paper 'A paper' has no links (end it with a list of links: they are its buttons, "
        "and translations are matched by them)"
    ]


def test_no_such_issue_names_the_nearest_or_the_newest(publication: Path, run) -> None:
    settings = load_settings(publication)
    with pytest.raises(IssueError) as near:
        find_issue(settings, "2023-09-25-top-ml-paper")
    assert str(near.value) == "2023-09-25-top-ml-paper: no such issue (did you mean 2023-09-25-top-ml-papers?)"
    for n in range(4):
        write_issue(publication, f"2024-01-0{n + 1}-week.md", f"---\ntitle: x\ndate: 2024-01-0{n + 1}\n---\nbody\n")
    result = run("preview", "zzz")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: zzz: no such issue (the newest: 2024-01-04-week, 2024-01-03-week, 2024-01-02-week, "
        "and 2 older in issues/)\n"
    )
    for path in (publication / "issues").glob("*.md"):
        path.unlink()
    with pytest.raises(IssueError) as empty:
        find_issue(settings, "zzz")
    assert str(empty.value) == "zzz: no such issue (issues/ has none yet: run 'newsletter new TITLE' to write one)"
