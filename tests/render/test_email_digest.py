"""The email as a digest: a masthead with the name and an optional logo, a table of contents linking to the web
page, code that wraps inside the card, and a footer link to subscribe for readers it was forwarded to."""

from __future__ import annotations

import re
import struct
import zlib
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from newsletter.config import load_settings
from newsletter.errors import ConfigError
from newsletter.issues import load_issues, parse_issue
from newsletter.render.email import HTML_WARN_BYTES, render_email
from newsletter.render.templates import load_templates
from tests.conftest import write_issue
from tests.test_settings import _refusal, _set

LONG_LINE = "x" * 5_000  # one line of code with no place to break


def png(width: int = 120, height: int = 40) -> bytes:
    """A small opaque PNG (made here: no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + b"\x0b\x57\xd0" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def emails(publication: Path):
    settings = load_settings(publication)
    templates = load_templates(settings)
    (issue,) = load_issues(settings)
    return {e.lang: (e, render_email(e, settings, templates)) for e in issue.editions}


class Ids(HTMLParser):
    """Every id="…" of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.ids.update(value for name, value in attrs if name == "id" and value)


# --- masthead ---------------------------------------------------------------------------------------------------


def test_without_a_logo_the_masthead_is_the_publications_name(publication: Path) -> None:
    for lang, (_, email) in emails(publication).items():
        title = "이번 주의 주요 ML 논문" if lang == "ko" else "Top ML Papers of the Week"
        assert re.search(
            r'<a class="brand" href="https://papers\.example\.com/"[^>]*>' + re.escape(title) + "</a>", email.html
        )
        assert 'class="logo"' not in email.html


def test_a_logo_from_static_carries_its_alt_text_in_each_language(publication: Path, run) -> None:
    (publication / "templates" / "static").mkdir(exist_ok=True)
    (publication / "templates" / "static" / "logo.png").write_bytes(png())
    _set(publication, "tool.newsletter", "logo", '"static/logo.png"')
    _set(publication, "tool.newsletter", "logo_alt", '"ML 논문 위클리 로고"')
    _set(publication, "tool.newsletter.en", "logo_alt", '"ML Papers Weekly logo"')
    found = emails(publication)
    for lang, alt in [("ko", "ML 논문 위클리 로고"), ("en", "ML Papers Weekly logo")]:
        html = found[lang][1].html
        image = re.search(r'<img class="logo" src="([^"]+)" alt="([^"]+)" height="40"', html)
        assert image is not None and image.groups() == ("https://papers.example.com/static/logo.png", alt)
        assert found[lang][1].html_size < HTML_WARN_BYTES
    assert run("build").exit_code == 0  # the build publishes the image the email points at
    assert (publication / "site" / "static" / "logo.png").read_bytes() == png()


def test_a_logo_url_without_alt_text_takes_the_title_as_its_alt(publication: Path) -> None:
    _set(publication, "tool.newsletter", "logo", '"https://cdn.example.net/brand/logo.png"')
    html = emails(publication)["en"][1].html
    assert '<img class="logo" src="https://cdn.example.net/brand/logo.png" alt="Top ML Papers of the Week"' in html


def test_a_logo_missing_from_static_is_one_line_from_check(publication: Path, run) -> None:
    _set(publication, "tool.newsletter", "logo", '"static/brand/logo.png"')
    result = run("check")
    assert result.exit_code == 1
    assert (
        "error: pyproject.toml [tool.newsletter] logo: 'static/brand/logo.png' is neither in templates/static/ nor "
        "in the theme's static/ (put the image at templates/static/brand/logo.png, or fix the path)"
    ) in result.output


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (
            '"logo.png"',
            "'logo.png' is neither an http(s) URL nor a path under static/ "
            '(use "static/logo.png" (a file of templates/static/) or "https://…/logo.png")',
        ),
        (
            '"static/../pyproject.toml"',
            "'static/../pyproject.toml' is neither an http(s) URL nor a path under static/ "
            '(use "static/logo.png" (a file of templates/static/) or "https://…/logo.png")',
        ),
        ('"static/logo.svg"', "'static/logo.svg' is an image Gmail or Outlook does not show (use a PNG, JPEG or GIF)"),
        (
            '"https://cdn.example.net/logo.webp"',
            "'https://cdn.example.net/logo.webp' is an image Gmail or Outlook does not show (use a PNG, JPEG or GIF)",
        ),
        (
            '"static/logo.txt"',
            "'static/logo.txt' is not a PNG, JPEG or GIF file "
            '(use "static/logo.png" (a file of templates/static/) or "https://…/logo.png")',
        ),
        (
            '"javascript:alert(1)"',
            "'javascript:alert(1)' is neither an http(s) URL nor a path under static/ "
            '(use "static/logo.png" (a file of templates/static/) or "https://…/logo.png")',
        ),
        ("42", 'is a whole number, not text (write it in quotes: logo = "…")'),
    ],
)
def test_a_logo_that_no_mail_client_can_show_is_refused(publication: Path, value: str, problem: str) -> None:
    _set(publication, "tool.newsletter", "logo", value)
    assert _refusal(publication) == f"pyproject.toml [tool.newsletter] logo: {problem}"


def test_logo_keys_are_checked_like_every_other_key(publication: Path) -> None:
    original = (publication / "pyproject.toml").read_text(encoding="utf-8")
    _set(publication, "tool.newsletter", "logoo", '"static/logo.png"')
    assert _refusal(publication) == "pyproject.toml [tool.newsletter] logoo: unknown setting (did you mean logo?)"
    (publication / "pyproject.toml").write_text(original, encoding="utf-8")
    _set(publication, "tool.newsletter.en", "logo_alt", "true")
    assert _refusal(publication) == (
        'pyproject.toml [tool.newsletter.en] logo_alt: is true or false, not text (write it in quotes: logo_alt = "…")'
    )


# --- table of contents ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["ko", "en"])
def test_the_contents_link_every_paper_to_its_anchor_on_the_web_page(publication: Path, run, lang: str) -> None:
    edition, email = emails(publication)[lang]
    contents = re.search(r'<div class="contents"[^>]*>(.*?)</div>', email.html, flags=re.DOTALL)
    assert contents is not None
    links = re.findall(r'<li[^>]*><a [^>]*?href="([^"]+)"[^>]*>([^<]+)</a></li>', contents.group(1))
    assert [title for _, title in links] == [section.title for section in edition.sections]
    assert run("build").exit_code == 0
    page = publication / "site" / edition.page_path / "index.html"
    parser = Ids()
    parser.feed(page.read_text(encoding="utf-8"))
    for url, _ in links:
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == email.archive_url  # absolute: the page, not #x
        assert unquote(parts.fragment) in parser.ids, url


@pytest.mark.parametrize("lang", ["ko", "en"])
def test_the_text_part_opens_with_the_contents_too(publication: Path, lang: str) -> None:
    edition, email = emails(publication)[lang]
    heading = "이번 호 차례:" if lang == "ko" else "In this issue:"
    lines = email.text.splitlines()
    start = lines.index(heading)
    end = lines.index("", start)
    listed: list[str] = []
    for line in lines[start + 1 : end]:  # a long title goes on under its first word
        if line.startswith(" "):
            listed[-1] += " " + line.strip()
        else:
            listed.append(line)
    assert listed == [f"{n}. {section.title}" for n, section in enumerate(edition.sections, 1)]
    assert start < lines.index(f"1. {edition.sections[0].title}", end)  # then the papers


# --- code -------------------------------------------------------------------------------------------------------


CODE_ISSUE = f"""---
title: Code
date: 2023-10-02
summary: One very long line of code.
---

Intro with `inline_code_{"y" * 400}` in it.

## A paper with code

```python
{LONG_LINE}
    indented = True
```

- [Paper](https://arxiv.org/abs/2309.12288)
"""


@pytest.fixture
def code_email(publication: Path, tmp_path: Path) -> Path:
    path = write_issue(publication, "2023-10-02-code.md", CODE_ISSUE)
    settings = load_settings(publication)
    email = render_email(parse_issue(path, settings), settings, load_templates(settings))
    assert email.html_size < HTML_WARN_BYTES
    out = tmp_path / "code-email.html"
    out.write_text(email.html, encoding="utf-8")
    return out


def test_code_wraps_by_inline_style_for_clients_that_drop_style_blocks(code_email: Path) -> None:
    html = code_email.read_text(encoding="utf-8")
    (pre,) = re.findall(r"<pre([^>]*)>", html)
    assert "white-space:pre-wrap" in pre and "word-break:break-all" in pre and "overflow-wrap:anywhere" in pre
    assert LONG_LINE in html  # wrapped by the client, not cut or altered


@pytest.mark.parametrize("width", [375, 600])
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_a_5000_character_line_of_code_never_widens_the_email(
    browser, code_email: Path, artifacts: Path, width: int, scheme: str
) -> None:
    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
    try:
        page.goto(code_email.as_uri())
        scroll_width, inner_width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert scroll_width <= inner_width
        box = page.locator("pre").bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
        assert box["height"] > 200  # it wrapped onto many lines instead
        text = page.locator("pre").inner_text()
        assert LONG_LINE in text and "\n    indented = True" in text  # line breaks and indents kept
        background = page.evaluate("getComputedStyle(document.querySelector('pre')).backgroundColor")
        assert background == ("rgb(13, 17, 23)" if scheme == "dark" else "rgb(246, 248, 250)")
        page.screenshot(path=str(artifacts / f"email-code-{scheme}-{width}.png"), full_page=False)
    finally:
        page.close()


# --- footer -----------------------------------------------------------------------------------------------------


def test_the_footer_links_to_the_apps_subscribe_page_in_the_editions_language(publication: Path) -> None:
    _set(publication, "tool.newsletter", "app_url", '"https://app.example.org/news"')
    for lang, (_, email) in emails(publication).items():
        url = f"https://app.example.org/news/subscribe?lang={lang}"
        assert f'<a href="{url}"' in email.html
        forwarded = "전달받은 메일인가요? 구독하기" if lang == "ko" else "Was this forwarded to you? Subscribe"
        # on one line, or the URL on its own when both would pass 78 columns
        assert f"{forwarded}: {url}\n" in email.text or f"{forwarded}:\n{url}\n" in email.text


def test_a_config_error_from_rendering_is_a_config_error(publication: Path) -> None:
    _set(publication, "tool.newsletter", "logo", '"static/none.gif"')
    settings = load_settings(publication)
    (issue,) = load_issues(settings)
    with pytest.raises(ConfigError):
        render_email(issue.editions[0], settings, load_templates(settings))


# --- summary layout ---------------------------------------------------------------------------------------------


def test_the_summary_layout_keeps_each_papers_first_paragraph_and_links_to_the_rest(publication: Path) -> None:
    full = emails(publication)
    _set(publication, "tool.newsletter", "email_layout", '"summary"')
    short = emails(publication)
    for lang in ("ko", "en"):
        edition, email = short[lang]
        assert email.html_size < full[lang][1].html_size
        continuing = "웹에서 이어 읽기 →" if lang == "ko" else "Continue reading →"
        links = re.findall(r'<a [^>]*?class="more" href="([^"]+)"[^>]*>' + continuing + "</a>", email.html)
        assert [unquote(link) for link in links] == [f"{email.archive_url}#{s.anchor}" for s in edition.sections]
        assert email.html.count('class="button"') == 20  # the papers' own links stay
        papers = email.html.split(f'id="{edition.sections[0].anchor}"', 1)[1]
        assert "<h3" not in papers  # the papers' subheadings are left out
    abstract = "최근 대규모 언어 모델의 발전은"  # the Korean edition's last paper: its abstract, after its summary
    assert abstract in full["ko"][1].html and abstract not in short["ko"][1].html
    summary = "새로운 신경 기호 프레임워크, 기호 논리의 원리를 활용하여"
    assert summary in short["ko"][1].html


def test_a_paper_without_a_paragraph_shows_only_its_link_in_the_summary_layout(publication: Path) -> None:
    body = """---
title: Lists
date: 2023-10-02
---

## Only a list

- one
- two

## Quote first

> quoted

Then the paragraph.
"""
    path = write_issue(publication, "2023-10-02-lists.md", body)
    _set(publication, "tool.newsletter", "email_layout", '"summary"')
    settings = load_settings(publication)
    html = render_email(parse_issue(path, settings), settings, load_templates(settings)).html
    assert "<li" not in html.split("Only a list", 2)[2].split("Quote first")[0]
    assert "Then the paragraph." in html and "quoted" not in html


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('"short"', "'short' is not full or summary (use full or summary)"),
        ("true", 'is true or false, not text (write it in quotes: email_layout = "…")'),
    ],
)
def test_an_unknown_email_layout_is_refused(publication: Path, value: str, problem: str) -> None:
    _set(publication, "tool.newsletter", "email_layout", value)
    assert _refusal(publication) == f"pyproject.toml [tool.newsletter] email_layout: {problem}"


def test_the_summary_layout_halves_the_email_on_a_phone(browser, publication: Path, tmp_path: Path) -> None:
    heights = {}
    for layout in ("full", "summary"):
        _set(publication, "tool.newsletter", "email_layout", f'"{layout}"')
        out = tmp_path / f"{layout}.html"
        out.write_text(emails(publication)["ko"][1].html, encoding="utf-8")
        page = browser.new_page(viewport={"width": 375, "height": 900})
        try:
            page.goto(out.as_uri())
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            heights[layout] = page.evaluate("document.documentElement.scrollHeight")
        finally:
            page.close()
    assert heights["summary"] < heights["full"] * 0.6, heights
