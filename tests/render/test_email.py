"""The sample issue's email, rendered once per edition, checked by what a reader would see."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.issues import load_issues, parse_issue
from newsletter.render.email import HTML_WARN_BYTES, UNSUBSCRIBE_TOKEN, email_problems, render_email
from newsletter.render.templates import THEME_DIR, load_templates
from tests.conftest import write_issue

ARXIV = [
    "2309.12288",
    "2309.16039",
    "2309.15427",
    "2309.16588",
    "2309.12207",
    "2309.14525",
    "2309.15025",
    "2309.16609",
    "2309.13567",
    "2309.13339",
]


@pytest.fixture
def emails(publication: Path):
    settings = load_settings(publication)
    templates = load_templates(settings)
    (issue,) = load_issues(settings)
    return {e.lang: (e, render_email(e, settings, templates)) for e in issue.editions}


@pytest.mark.parametrize("lang", ["ko", "en"])
def test_email_carries_all_ten_papers_links_tags_and_footer(emails, lang: str) -> None:
    edition, email = emails[lang]
    html = email.html
    assert html.startswith("<!doctype html>")
    assert f'<html lang="{lang}"' in html and f'lang="{lang}" dir="ltr"' in html
    assert '<meta name="color-scheme" content="light dark">' in html
    assert "fonts.googleapis.com" not in html
    for number in ARXIV:
        assert f'href="https://arxiv.org/abs/{number}"' in html
    for section in edition.sections:
        assert f'id="{section.anchor}"' in html
        for tag in section.tags:
            assert f">#{tag}</span>" in html
    assert html.count('class="button"') == 20
    assert f"https://papers.example.com/unsubscribe?token={UNSUBSCRIBE_TOKEN}" in html
    assert "123 Example-ro, Gangnam-gu, Seoul" in html
    page = "https://papers.example.com/" + ("" if lang == "ko" else "en/") + "issues/2023-09-25-top-ml-papers/"
    assert f'href="{page}"' in html
    assert re.search(r'<div style="display:none;[^"]*">' + re.escape(edition.summary[:20]), html)
    assert 'role="presentation"' in html
    assert email.subject == edition.title


@pytest.mark.parametrize("lang", ["ko", "en"])
def test_email_stays_under_the_size_budget(emails, lang: str) -> None:
    _, email = emails[lang]
    assert email.html_size < HTML_WARN_BYTES
    assert email_problems(email) == []


def test_text_part_is_written_for_reading(emails) -> None:
    edition, email = emails["ko"]
    text = email.text
    assert text.startswith(
        "이번 주의 주요 ML 논문 · 2023년 9월 25일\n\n이번 주의 주요 ML 논문 (2023/09/25 ~ 10/01)\n====="
    )
    assert "1. 반전의 저주 / The Reversal Curse\n=" in text
    assert "10. 로직을 통해 대규모 언어 모델에서" in text
    assert "- 논문 링크 (arXiv): https://arxiv.org/abs/2309.12288" in text
    assert "#llm-reasoning" in text
    # the URL on a line of its own: with its label and the token it will carry it passes 78 columns
    assert f"수신거부 (Unsubscribe):\nhttps://papers.example.com/unsubscribe?token={UNSUBSCRIBE_TOKEN}\n" in text
    assert "<" not in text.replace("<-", "")  # no markup
    assert max(len(line.encode()) for line in text.splitlines()) < 998


@pytest.mark.parametrize("lang", ["ko", "en"])
def test_every_line_of_the_text_part_fits_in_78_columns(emails, lang: str) -> None:
    """Titles in the contents, headings, the footer's labelled URLs and the postal address wrap like the body
    (Hangul and emoji two columns each, by wcwidth), once the real unsubscribe token is in; only a URL longer
    than a line may pass it, on a line of its own."""
    from wcwidth import wcswidth

    from newsletter.tokens import TOKEN_LENGTH

    _, email = emails[lang]
    text = email.text.replace(UNSUBSCRIBE_TOKEN, "x" * TOKEN_LENGTH)
    wide = [line for line in text.splitlines() if wcswidth(line) > 78 and not line.startswith("https://")]
    assert wide == []
    contents = text.split("\n\n")[2]  # the numbered titles, each continued under its first word
    assert all(line[:1].isdigit() or line.startswith("   ") for line in contents.splitlines()[1:])


def test_raw_html_is_kept_off_the_email_but_stays_on_the_page(publication: Path) -> None:
    body = """---
title: Raw
date: 2023-10-02
---

<script>alert(1)</script><iframe src="https://evil.test"></iframe>

## Paper

<form action="https://evil.test"><input name="x"></form><a href="https://ok.test" onclick="steal()">ok</a>
<img src="https://img.test/a.png" onerror="x()" alt="A chart">
"""
    path = write_issue(publication, "2023-10-02-raw.md", body)
    settings = load_settings(publication)
    edition = parse_issue(path, settings)
    html = render_email(edition, settings, load_templates(settings)).html.lower()
    for forbidden in ("<script", "<iframe", "<form", "onclick", "onerror", "<input"):
        assert forbidden not in html
    assert 'href="https://ok.test"' in html and 'alt="a chart"' in html
    assert "<script>alert(1)</script>" in edition.body.intro_html  # the editor's own, on the web page


def test_template_error_names_the_file_and_line(publication: Path, run) -> None:
    template = publication / "templates" / "email.mjml.j2"  # an override of the theme's
    template.write_text(
        (THEME_DIR / "email.mjml.j2").read_text(encoding="utf-8").replace("{{ t.view_in_browser }}", "{{ t.nope }", 1),
        encoding="utf-8",
    )
    result = run("check")
    assert result.exit_code == 1
    assert "error: templates/email.mjml.j2:" in result.stderr
    assert "Traceback" not in result.stderr


def test_mjml_error_is_reported_by_check(publication: Path, run) -> None:
    template = publication / "templates" / "email.mjml.j2"
    template.write_text(
        (THEME_DIR / "email.mjml.j2").read_text(encoding="utf-8").replace("</mjml>", ""), encoding="utf-8"
    )
    result = run("check")
    assert result.exit_code == 1
    assert "error: templates/email.mjml.j2: MJML could not be converted" in result.stderr


def test_check_warns_above_80_kb_and_fails_above_gmails_clip() -> None:
    from newsletter.render.email import RenderedEmail

    def email(html_bytes: int, extra: str = "") -> RenderedEmail:
        body = "가" * (html_bytes // 3)  # Hangul is 3 bytes: the budget is counted in bytes
        return RenderedEmail("ko", "s", "p", f"<p>{body}</p>{extra}", "t", "https://x/")

    assert email_problems(email(70_000)) == []
    (warning,) = email_problems(email(90_000))
    assert warning[0] == "warning" and "close to Gmail's ~102 KB clipping limit" in warning[1]
    (error,) = email_problems(email(110_000))
    assert error[0] == "error" and "over Gmail's ~102 KB clipping limit" in error[1]
    assert ("error", "email HTML contains <script>") in email_problems(email(1_000, "<SCRIPT>x</SCRIPT>"))
