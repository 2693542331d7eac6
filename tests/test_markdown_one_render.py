"""A body's HTML comes from one call of the renderer, cut per run: each section's HTML is what its runs give
alone, a reference resolves wherever its definition is, and a body holding the cut line itself still renders."""

from __future__ import annotations

from markdown_it_pyrs import MarkdownIt

from newsletter.markdown import CUT, render_body

_alone = MarkdownIt("commonmark").enable("table").enable("strikethrough")

BODY = """Intro paragraph.

## One

- first
- second

#llm

Between the tag line and the links, a [reference][ref].

- [Paper](https://example.com/1)

<div>
raw <b>HTML</b>
</div>

## Two

| a | b |
| --- | --- |
| 1 | 2 |

    indented code

[ref]: https://example.com/ref
"""


def test_each_section_is_what_its_runs_render_alone() -> None:
    body = render_body(BODY)
    assert body.intro_html == _alone.render("Intro paragraph.")
    one, two = body.sections
    assert one.tags == ("llm",) and [link.url for link in one.links] == ["https://example.com/1"]
    assert one.html == (
        _alone.render("- first\n- second")
        + _alone.render("Between the tag line and the links, a [reference][ref].\n\n[ref]: https://example.com/ref")
        + _alone.render("<div>\nraw <b>HTML</b>\n</div>")
    )
    assert '<a href="https://example.com/ref">reference</a>' in one.html
    assert two.html == _alone.render("| a | b |\n| --- | --- |\n| 1 | 2 |\n\n    indented code")


def test_a_block_left_open_at_the_end_swallows_no_definition() -> None:
    """An unclosed fence ends the body: the reference before it still resolves, and the code holds only itself
    (rendering the run with its definitions appended put `[ref]: …` inside the code block)."""
    body = render_body("[ref]: https://example.com/ref\n\n## A\n\nSee [ref].\n\n```\ncode\n")
    assert (
        body.sections[0].html
        == '<p>See <a href="https://example.com/ref">ref</a>.</p>\n<pre><code>code\n</code></pre>\n'
    )


def test_a_body_holding_the_cut_line_renders_each_run_alone() -> None:
    body = render_body(f"Intro.\n\n{CUT}\n\n## A\n\nText.\n\n#tag\n\nMore.\n")
    assert body.intro_html == f"<p>Intro.</p>\n{CUT}\n"
    assert body.sections[0].html == "<p>Text.</p>\n<p>More.</p>\n"
