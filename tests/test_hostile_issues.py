"""Hostile issue files: YAML alias bombs, control characters, deep nesting and huge files each give one
`path:line` line and exit 1, fast, and never a traceback, a crash or a hang."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.errors import IssueError
from newsletter.issues import MAX_FILE_BYTES, MAX_TAGS, parse_issue
from newsletter.markdown import MAX_NESTING
from tests.conftest import write_issue

HEAD = "---\ntitle: x\ndate: 2023-10-02\nsummary: s\n---\n"
NAME = "2023-10-02-x.md"
WHERE = f"issues/{NAME}"
BOMB = (  # 332 bytes that took 50 s and 2.5 GB before a MemoryError
    "---\ntitle: x\ndate: 2023-10-02\n"
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "tags: [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n---\nbody\n"
)
TOO_DEEP = (
    f"Markdown nests more than {MAX_NESTING} levels deep (quotes, lists, emphasis, links or HTML inside one "
    "another) (flatten it)"
)


def check_in_subprocess(publication: Path) -> subprocess.CompletedProcess[str]:
    """`newsletter check` as a user runs it: a crash or a hang of the old code fails the test, not the run."""
    command = [sys.executable, "-m", "newsletter", "--root", str(publication), "check"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def assert_one_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.lower().startswith("error: issues/")]
    assert errors == [f"error: {message}"], result.stderr[-2000:]


def test_yaml_alias_bomb_fails_fast_with_one_line(publication: Path) -> None:
    write_issue(publication, NAME, BOMB)
    result = check_in_subprocess(publication)
    assert_one_error(
        result,
        f"{WHERE}:4: front matter uses the YAML anchor &a (write each value out; anchors and aliases are not allowed)",
    )
    started = time.perf_counter()
    with pytest.raises(IssueError):
        parse_issue(publication / "issues" / NAME, load_settings(publication))
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("front", "line", "message"),
    [
        ("tags: &t [a]", 4, "front matter uses the YAML anchor &t"),
        ("x: &t a\ntags: [*t]", 4, "front matter uses the YAML anchor &t"),
        ("tags: *t", 4, "front matter uses the YAML alias *t"),
        ("tags: " + "[" * 9 + "a" + "]" * 9, 4, "front matter nests lists or mappings more than 8 deep"),
        ("tags: " + "[" * 500 + "a" + "]" * 500, 4, "front matter nests lists or mappings more than 8 deep"),
        ("summary: " + "a" * 70_000, 2, "front matter is 70,035 characters, over the limit of 65,536"),
    ],
    ids=["anchor", "merge-alias", "alias", "nested", "very-nested", "long"],
)
def test_front_matter_that_expands_or_nests_is_refused(
    publication: Path, run, front: str, line: int, message: str
) -> None:
    write_issue(publication, NAME, f"---\ntitle: x\ndate: 2023-10-02\n{front}\n---\nbody\n")
    result = run("build")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {WHERE}:{line}: {message} (")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\x9f", "\ufffe"])
def test_control_character_in_the_body_names_line_and_column(publication: Path, run, char: str) -> None:
    write_issue(publication, NAME, HEAD + "Intro.\n\nab" + char + "c\n")
    result = run("build")
    assert result.exit_code == 1
    kind = "a NUL byte" if char == "\0" else "a noncharacter" if char == "\ufffe" else "a control character"
    assert result.stderr == (
        f"Error: {WHERE}:8: {kind} (U+{ord(char):04X}) at column 3 (feeds and email cannot carry it: delete it)\n"
    )
    assert not (publication / "site").exists()


@pytest.mark.parametrize("escape", ["\\0", "\\x1b", "\\x85", "\\a"])
def test_control_character_written_as_a_yaml_escape_is_refused(publication: Path, run, escape: str) -> None:
    write_issue(publication, NAME, f'---\ntitle: "a{escape}b"\ndate: 2023-10-02\n---\nbody\n')
    result = run("build")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {WHERE}:2: title contains a")
    assert result.stderr.endswith(" (remove it)\n")


def test_tabs_and_line_ends_are_kept(publication: Path) -> None:
    path = write_issue(publication, NAME, (HEAD + "Intro\twith a tab.\r\n").replace("\n", "\r\n"))
    edition = parse_issue(path, load_settings(publication))
    assert "Intro\twith a tab." in edition.body.intro_html


DEEP_SHAPES = {
    "quotes": lambda n: ">" * n + " x\n",
    "quotes-spaced": lambda n: "> " * n + "x\n",
    "list": lambda n: "- " * n + "x\n",
    "indented-lists": lambda n: "".join("  " * i + "- x\n" for i in range(min(n, 700))),
    "quotes-and-lists": lambda n: "> - " * n + "x\n",
    "ordered-lists": lambda n: "1. " * n + "x\n",
    "emphasis": lambda n: "*" * n + "x" + "*" * n + "\n",
    "strong-in-em": lambda n: "*a **" * (n // 2) + "x" + "** a*" * (n // 2) + "\n",
    "strikethrough": lambda n: "~~a " * n + "x" + " a~~" * n + "\n",
    "images": lambda n: "![a " * n + "x" + "](u)" * n + "\n",
    "images-in-emphasis": lambda n: "*![" * n + "x" + "](u)*" * n + "\n",
    "html-block": lambda n: "<div>" * n + "\n",
    "html-inline": lambda n: "a " + "<span>" * n + "x\n",
    "html-across-blocks": lambda n: "<div>\n\n" * n + "x\n",
}


@pytest.mark.parametrize("size", [300, 10_000, 100_000], ids=["300", "10k", "100k"])
@pytest.mark.parametrize("shape", list(DEEP_SHAPES))
def test_deeply_nested_markdown_is_one_line_not_a_crash(publication: Path, shape: str, size: int) -> None:
    """Old code: RecursionError tracebacks, segfaults in MJML and markdown-it-pyrs, minutes of strikethrough."""
    body = DEEP_SHAPES[shape](size)
    if len(body) > MAX_FILE_BYTES - 100:
        pytest.skip("over the file size limit, tested on its own")
    write_issue(publication, NAME, HEAD + body)
    result = check_in_subprocess(publication)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error: issues/")]
    assert re.match(f"error: {WHERE}:[0-9]+: ", error)  # where the body starts, or where it gets too deep
    assert error.endswith((TOO_DEEP, "(split it with blank lines)"))


@pytest.mark.parametrize(
    "body",
    [
        ">" * (MAX_NESTING - 3) + " x\n",
        "<div>" * (MAX_NESTING - 2) + "x\n",
        "- " * ((MAX_NESTING - 2) // 2) + "x\n",
        "*" * 190 + "x" + "*" * 190 + "\n",
    ],
    ids=["quotes", "html", "lists", "emphasis"],
)
def test_the_deepest_allowed_nesting_checks_and_builds(publication: Path, run, body: str) -> None:
    """The limit is low enough for everything downstream (MJML, premailer's lxml, the text part)."""
    write_issue(publication, NAME, HEAD + body)
    assert run("check").exit_code == 0
    assert run("build").exit_code == 0


def test_file_over_the_size_limit_is_refused(publication: Path, run) -> None:
    write_issue(publication, NAME, HEAD + "a" * MAX_FILE_BYTES)
    result = run("build")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {WHERE}: is {len(HEAD) + MAX_FILE_BYTES:,} bytes, over the 1,000,000-byte limit of an issue file"
        " (split it)\n"
    )


@pytest.mark.parametrize(
    ("front", "message"),
    [
        ("tags: !!int abc", "tags: the value is not a valid int (fix the value)"),
        ("tags: !!timestamp x", "tags: the value is not a valid timestamp (fix the value)"),
        ("tags: !!omap [a]", "tags: expected a mapping of length 1, but found scalar (fix the value)"),
        (
            "tags: !!python/name:os.system x",
            "tags: could not determine a constructor for the tag 'tag:yaml.org,2002:python/name:os.system' "
            "(fix the value)",
        ),
    ],
)
def test_explicit_yaml_tags_that_fail_are_one_line(publication: Path, run, front: str, message: str) -> None:
    write_issue(publication, NAME, f"---\ntitle: x\ndate: 2023-10-02\n{front}\n---\nbody\n")
    result = run("build")
    assert result.exit_code == 1
    assert result.stderr == f"Error: {WHERE}:4: {message}\n"


def test_more_tags_than_the_limit_are_refused_where_they_pass_it(publication: Path, run) -> None:
    """Each tag is a page and a feed: 3,000 tags made a 284 MB site, and a tag line of 1 MB would make 100,000."""
    many = ", ".join(f"t{n}" for n in range(MAX_TAGS + 1))
    write_issue(publication, NAME, f"---\ntitle: x\ndate: 2023-10-02\ntags: [{many}]\n---\nbody\n")
    result = run("build")
    assert (
        result.stderr
        == f"Error: {WHERE}:4: more than {MAX_TAGS} tags (keep the ones readers follow: each is a page and a feed)\n"
    )
    line = " ".join(f"#s{n}" for n in range(MAX_TAGS))
    write_issue(publication, NAME, f"{HEAD}## One\n\n#t1\n\n## Two\n\n{line}\n")
    result = run("build")
    assert result.stderr == (
        f"Error: {WHERE}:10: the issue has more than {MAX_TAGS} tags by 'Two' "
        "(keep the ones readers follow: each is a page and a feed)\n"
    )


def test_a_tag_line_of_the_largest_size_parses_in_linear_time(publication: Path) -> None:
    """Deduplicating tags was quadratic (a list searched for every tag)."""
    from newsletter.markdown import render_body

    line = " ".join(f"#t{n % 50_000}" for n in range(100_000))
    started = time.perf_counter()
    (section,) = render_body(f"## A\n\n{line}\n\n{line}\n").sections
    assert len(section.tags) == 50_000
    assert time.perf_counter() - started < 5  # seconds; about 0.2 here, and minutes when quadratic


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_an_issue_path_that_is_not_a_regular_file_is_refused_without_reading_it(publication: Path, kind: str) -> None:
    """A FIFO blocked the read for ever; /dev/zero never ends."""
    path = publication / "issues" / NAME
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to("/dev/zero")
    for command in ("check", "build"):
        argv = [sys.executable, "-m", "newsletter", "--root", str(publication), command]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        expected = f"{WHERE}: is not a regular file (issue files are plain files: remove it)"
        assert (f"error: {expected}" if command == "check" else f"Error: {expected}") in result.stderr.splitlines()
