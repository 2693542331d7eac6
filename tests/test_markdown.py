"""Markdown bodies: sections, tags, link rows, anchors, and the plain text written for reading."""

from __future__ import annotations

import pytest

from newsletter.markdown import (
    MAX_DEFINITION_RUN,
    MAX_SECTIONS,
    MarkdownError,
    display_width,
    render_body,
    render_text,
    slugify,
    wrap,
)

BODY = """Intro with a [link](https://example.com/a) and `code`.

## 반전의 저주 / The Reversal Curse

### 논문 소개

본문 문단입니다. See [the paper](https://arxiv.org/abs/2309.12288).

#llm-reasoning #nlp

- [논문 링크](https://arxiv.org/abs/2309.12288)
- [더 읽어보기](https://x.com/a)

## Same title

Text.

## Same title

[Paper](https://a.example) · [Code](https://b.example)
"""


def test_sections_split_at_h2_with_tags_links_and_unique_anchors() -> None:
    body = render_body(BODY)
    assert body.intro_html.startswith('<p>Intro with a <a href="https://example.com/a">link</a>')
    first, second, third = body.sections
    assert first.title == "반전의 저주 / The Reversal Curse"
    assert first.anchor == "반전의-저주-the-reversal-curse"
    assert first.tags == ("llm-reasoning", "nlp")
    assert [(link.label, link.url) for link in first.links] == [
        ("논문 링크", "https://arxiv.org/abs/2309.12288"),
        ("더 읽어보기", "https://x.com/a"),
    ]
    assert "<h3>논문 소개</h3>" in first.html and "#llm-reasoning" not in first.html
    assert (second.anchor, third.anchor) == ("same-title", "same-title-2")
    assert [link.label for link in third.links] == ["Paper", "Code"] and third.html == ""
    assert first.line == 3  # a line of the file: render_body was given first_line=1


def test_text_numbers_inline_links_and_keeps_headings() -> None:
    text = render_text(BODY)
    assert text.intro == "Intro with a link [1] and `code`."
    assert "논문 소개\n---------" in text.sections[0]
    assert "See the paper [2]." in text.sections[0]
    assert text.references == ("https://example.com/a", "https://arxiv.org/abs/2309.12288")
    assert "#llm" not in text.sections[0]  # tags and buttons are written by the template


def test_wrap_counts_hangul_as_two_columns() -> None:
    line = "가나다라 " * 30
    wrapped = wrap(line, width=40)
    assert all(display_width(row) <= 40 for row in wrapped.splitlines())
    assert display_width("한글") == 4 and display_width("ab") == 2


def test_slugify_keeps_letters_of_any_script() -> None:
    assert slugify("Boolformer: Symbolic Regression!") == "boolformer-symbolic-regression"
    assert slugify("???") == "section"


def test_anchors_stay_unique_when_a_title_looks_numbered() -> None:
    body = render_body("## A\n\nx\n\n## A 2\n\nx\n\n## A\n\nx\n\n## A\n\nx\n")
    assert [s.anchor for s in body.sections] == ["a", "a-2", "a-3", "a-4"]


def test_reference_links_resolve_in_every_section_that_uses_them() -> None:
    source = "Intro [ref].\n\n## One\n\nSee [the paper][Ref  ] and [other].\n\n## Two\n\nNone here.\n\n"
    source += "[ref]: https://example.com/r\n[other]: https://example.com/o\n[REF]: https://example.com/second\n"
    body = render_body(source)
    assert body.intro_html == '<p>Intro <a href="https://example.com/r">ref</a>.</p>\n'
    assert '<a href="https://example.com/r">the paper</a>' in body.sections[0].html  # the first definition wins
    assert '<a href="https://example.com/o">other</a>' in body.sections[0].html
    assert body.sections[1].html == "<p>None here.</p>\n"


def test_many_sections_with_many_references_render_linear_work(monkeypatch) -> None:
    """Each section used to be rendered with every definition of the body appended: quadratic."""
    import newsletter.markdown as markdown

    rendered: list[int] = []
    real = markdown._markdown

    class Counting:
        def tree(self, source: str):
            return real.tree(source)

        def render(self, source: str) -> str:
            rendered.append(len(source))
            return real.render(source)

    monkeypatch.setattr(markdown, "_markdown", Counting())
    count = 400
    source = "".join(f"## Paper {n}\n\nSee [the paper][p{n}].\n\n" for n in range(count))
    source += "".join(f"[p{n}]: https://example.com/{n}\n" + ("\n" if n % 100 == 99 else "") for n in range(count))
    body = render_body(source)
    assert f'<a href="https://example.com/{count - 1}">the paper</a>' in body.sections[-1].html
    assert sum(rendered) < 3 * len(source)


def test_long_runs_of_definitions_and_too_many_sections_are_refused_with_the_line() -> None:
    definitions = "".join(f"[r{n}]: https://example.com/{n}\n" for n in range(MAX_DEFINITION_RUN + 1))
    with pytest.raises(MarkdownError) as run:
        render_body("Intro.\n\n" + definitions, first_line=6)
    assert (run.value.line, run.value.message) == (
        6 + 2 + MAX_DEFINITION_RUN,
        f"more than {MAX_DEFINITION_RUN} link reference definitions ([label]: URL) in a row",
    )
    render_body("Intro.\n\n" + definitions.replace("/100\n", "/100\n\n"))  # a blank line between groups
    sections = "## A\n\nx\n\n" * MAX_SECTIONS
    assert len(render_body(sections).sections) == MAX_SECTIONS
    with pytest.raises(MarkdownError) as many:
        render_body(sections + "## One too many\n")
    assert many.value.line == 4 * MAX_SECTIONS + 1
