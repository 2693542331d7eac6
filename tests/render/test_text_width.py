"""The text part measures columns with wcwidth: an emoji sequence such as 🙇‍♂️ is two columns, as terminals
and monospace mail clients show it, so Korean/English lines wrap where they should."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.markdown import TEXT_WIDTH, display_width, wrap
from tests.conftest import write_issue

BOW = "🙇\u200d♂\ufe0f"  # person bowing, zero-width joiner, male sign, emoji presentation selector


@pytest.mark.parametrize(
    ("text", "columns"),
    [(BOW, 2), ("한국어", 6), ("감사합니다 " + BOW, 13), ("e\u0301", 1), ("😄 ok", 5), ("plain", 5), ("a\tb", 2)],
)
def test_display_width_counts_terminal_columns(text: str, columns: int) -> None:
    assert display_width(text) == columns


def test_wrap_fills_a_line_of_korean_and_emoji_to_the_column() -> None:
    # Each "감사합니다 🙇‍♂️" is 13 columns: five of them and their spaces are 69, a sixth word would make 80.
    text = " ".join([f"감사합니다 {BOW}"] * 8)
    lines = wrap(text, width=76).split("\n")
    assert lines[0] == " ".join([f"감사합니다 {BOW}"] * 5)
    assert [display_width(line) for line in lines] == [69, 41]


def test_text_part_wraps_korean_and_emoji_at_the_right_column(publication: Path, run) -> None:
    paragraph = " ".join([f"감사합니다 {BOW}"] * 8)
    write_issue(
        publication,
        "2023-10-02-thanks.md",
        f'---\ntitle: "감사"\ndate: 2023-10-02\nsummary: "s"\n---\n\n{paragraph}\n\n## A paper\n\nText.\n\n'
        "- [Paper](https://arxiv.org/abs/2310.00001)\n",
    )
    result = run("preview", "2023-10-02-thanks")
    assert result.exit_code == 0, result.output
    text = (publication / "preview" / "2023-10-02-thanks" / "ko" / "email.txt").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.startswith("감사합니다")]
    assert lines == [" ".join([f"감사합니다 {BOW}"] * 5), " ".join([f"감사합니다 {BOW}"] * 3)]
    assert display_width(lines[0]) <= TEXT_WIDTH < display_width(lines[0]) + len(" 감사합니다") * 2 - 1
