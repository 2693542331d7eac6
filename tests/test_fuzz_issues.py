"""Fuzzing the issue parser: a few hundred mutations of the sample issue (fixed seed) each end in an Edition
or in one `path:line` line, quickly: never a traceback, a crash or a hang."""

from __future__ import annotations

import random
import time
from pathlib import Path

from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import load_settings
from newsletter.errors import NewsletterError
from newsletter.issues import parse_issue

NAME = "2023-09-25-top-ml-papers.md"
WHERE = f"issues/{NAME}"
CASES = 500
CHECKED_EVERY = 4  # every 4th case also goes through `newsletter check` (it renders the email too)
CASE_SECONDS = 3.0  # far above any case's time (milliseconds); only a hang or a quadratic blow-up reaches it
YAML_SYNTAX = [
    "&a ",
    "*a ",
    "<<: *a\n",
    "!!binary ",
    "!!python/object:os.system ",
    "? ",
    "{",
    "}",
    "[",
    "]",
    ": ",
    "'",
    '"',
    "\t",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "- ",
    "|\n",
    ">-\n",
    "#",
    "\\0",
    '"\\x00"',
    "2023-13-45",
    "~",
]
MARKDOWN_SYNTAX = [
    "> ",
    "- ",
    "1. ",
    "*",
    "**",
    "_",
    "~~",
    "[",
    "]",
    "](",
    "![",
    "<div>",
    "</div>",
    "<span>",
    "```",
    "#",
    "## ",
    "### ",
    "\\",
    "|",
    "| - |",
    "&amp;",
    "&#0;",
    "<!--",
    "-->",
    "[x]: /u\n",
    "\n",
    "\n\n",
    "    ",
    "<img src=x>",
]
UNICODE = ["\u202e", "\u0301", "\ufeff", "😄", "\u2028", "한", "\U0010ffff", "\ufffd", "\u00a0", "\u200b"]


def mutate(rng: random.Random, sample: bytes, front_end: int) -> bytes:
    """Apply one to three random edits to `sample` (half of the insertions land in the front matter)."""
    data = bytearray(sample)
    for _ in range(rng.randint(1, 3)):
        where = rng.randrange(front_end) if rng.random() < 0.5 else rng.randrange(len(data) + 1)
        where = min(where, len(data))
        kind = rng.randrange(9)
        if kind == 0 and data:  # flip a byte
            data[min(where, len(data) - 1)] ^= rng.randrange(1, 256)
        elif kind == 1:
            data[where:where] = rng.choice(YAML_SYNTAX).encode()
        elif kind == 2:
            data[where:where] = (rng.choice(MARKDOWN_SYNTAX) * rng.choice([1, 1, 2, 50, 300])).encode()
        elif kind == 3:  # truncate
            del data[where:]
        elif kind == 4:  # duplicate a line many times
            lines = bytes(data).split(b"\n")
            index = rng.randrange(len(lines))
            lines[index:index] = [lines[index]] * rng.choice([2, 10, 500])
            data = bytearray(b"\n".join(lines))
        elif kind == 5:
            data[where:where] = "".join(rng.choice(UNICODE) for _ in range(rng.randint(1, 5))).encode()
        elif kind == 6:  # control bytes, or bytes that are not UTF-8
            data[where:where] = bytes(
                rng.choice([*range(0, 32), 0x7F, 0x80, 0xC3, 0xFF]) for _ in range(rng.randint(1, 3))
            )
        elif kind == 7:  # delete a span
            del data[where : where + rng.randint(1, 400)]
        else:  # random code points, some outside the Basic Multilingual Plane
            text = "".join(
                chr(rng.choice([rng.randrange(32, 0xD800), rng.randrange(0xE000, 0x110000)])) for _ in range(8)
            )
            data[where:where] = text.encode()
    return bytes(data)


def test_mutated_sample_issues_parse_or_fail_with_one_line(publication: Path) -> None:
    rng = random.Random(20231002)
    path = publication / "issues" / NAME
    sample = path.read_bytes()
    (publication / "issues" / "2023-09-25-top-ml-papers.en.md").unlink()  # one file: every error names it
    settings = load_settings(publication)
    runner = CliRunner()
    started = time.perf_counter()
    outcomes = {"parsed": 0, "refused": 0, "checked": 0, "check failed": 0}
    for case in range(CASES):
        data = mutate(rng, sample, sample.index(b"\n---\n") + 5)
        case_started = time.perf_counter()
        try:
            parse_issue(path, settings, data)
            outcomes["parsed"] += 1
        except NewsletterError as err:
            outcomes["refused"] += 1
            message = str(err)
            assert message.startswith(WHERE) and "\n" not in message, (case, message)
        if case % CHECKED_EVERY == 0:
            path.write_bytes(data)
            result = runner.invoke(cli, ["--root", str(publication), "check"], obj={}, catch_exceptions=True)
            assert result.exception is None or isinstance(result.exception, SystemExit), (case, result.exception)
            assert result.exit_code in (0, 1), (case, result.output)
            assert "Traceback" not in result.output
            outcomes["checked" if result.exit_code == 0 else "check failed"] += 1
            if result.exit_code == 1:
                errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
                assert len(errors) == 1 and errors[0].startswith(f"error: {WHERE}"), (case, result.stderr)
        assert time.perf_counter() - case_started < CASE_SECONDS, f"case {case} took too long"
    assert min(outcomes.values()) > 10, outcomes  # the mutations reach both sides of the parser and of check
    assert time.perf_counter() - started < 30
