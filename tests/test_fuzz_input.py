"""Fuzz the two files an editor hands the CLI besides issues: a subscriber CSV and the [tool.newsletter] settings.

A fixed seed, a few hundred mutations each, every one driven through the CLI in-process. Whatever the input,
the command must end with exit 0, or with exit 1 and one `Error:` line that names the file; never a traceback.
"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsletter.cli import cli
from tests.conftest import REPO

SEED = 20261202
CSV_CASES = 300
SETTINGS_CASES = 250
SLOWEST = 10.0  # seconds one case may take: far above any real one, far below a hang
ISSUE = "2023-09-25-top-ml-papers"

# Bytes that CSV and TOML parsers treat specially, text in two scripts, and bytes that are not UTF-8.
PIECES = [
    b",",
    b'"',
    b'""',
    b"\n",
    b"\r\n",
    b"\r",
    b" ",
    b"   ",
    b"\t",
    b"\x00",
    b"\xef\xbb\xbf",
    b"\xff",
    b"\xc3",
    b"=",
    b"[",
    b"]",
    b"{",
    b"'",
    b"\\",
    b"#",
    b"@",
    b"<",
    b">",
    "김민지".encode(),
    "é".encode(),
    b"x" * 300,
    b"1e999",
    b"nan",
]


def _mutate(data: bytes, chooser: random.Random) -> bytes:
    """One to three edits: delete, insert, repeat, swap lines, truncate, or grow a cell past the csv limit."""
    for _ in range(chooser.randint(1, 3)):
        at = chooser.randrange(len(data) + 1)
        kind = chooser.randrange(8)
        if kind == 0:
            data = data[:at] + data[at + chooser.randint(1, 40) :]
        elif kind in (1, 2):
            data = data[:at] + chooser.choice(PIECES) + data[at:]
        elif kind == 3:
            chunk = data[at : at + chooser.randint(1, 30)]
            data = data[:at] + chunk * chooser.randint(2, 50) + data[at:]
        elif kind == 4:
            lines = data.split(b"\n")
            i, j = chooser.randrange(len(lines)), chooser.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
            data = b"\n".join(lines)
        elif kind == 5:
            data = data[:at]
        elif kind == 6:
            data = data[:at] + bytes([chooser.randrange(256)]) + data[at:]
        else:
            data = data[:at] + chooser.choice([b"y", b",", b'"']) * chooser.choice([1_000, 140_000]) + data[at:]
    return data


def _invoke(runner: CliRunner, root: Path, *args: str) -> tuple[Result, float]:
    started = time.monotonic()
    result = runner.invoke(cli, ["--root", str(root), *args], obj={}, catch_exceptions=True)
    return result, time.monotonic() - started


def _assert_one_line_or_success(result: Result, seconds: float, names: tuple[str, ...], case: object) -> None:
    assert seconds < SLOWEST, (case, seconds)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        trace = "".join(traceback.format_exception(result.exception))
        pytest.fail(f"case {case}: {type(result.exception).__name__} escaped\n{trace}")
    assert result.exit_code in (0, 1), (case, result.exit_code, result.output)
    assert "Traceback" not in result.output, case
    if result.exit_code == 1:
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, (case, result.stderr)
        assert errors[0] == result.stderr.splitlines()[-1], (case, result.stderr)
        assert any(name in errors[0] for name in names), (case, errors[0])


def test_mutated_subscriber_csvs_are_imported_or_refused_in_one_line(publication: Path) -> None:
    chooser = random.Random(SEED)
    original = (REPO / "subscribers" / "example.csv").read_bytes()
    runner = CliRunner()
    outcomes = {0: 0, 1: 0}
    for case in range(CSV_CASES):
        path = publication / f"case-{case}.csv"
        path.write_bytes(_mutate(original, chooser))
        options = ["--skip-invalid"] if chooser.random() < 0.3 else []
        result, seconds = _invoke(runner, publication, "subscribers", "import", str(path), *options)
        _assert_one_line_or_success(result, seconds, (str(path),), (case, path.read_bytes()[:200]))
        for line in result.stderr.splitlines():  # every bad row is listed with the file's name and a line
            assert line.startswith((f"{path}:", f"Error: {path}")), (case, line)
        outcomes[result.exit_code] += 1
    assert min(outcomes.values()) > 30, outcomes  # the mutations reach both sides


# Values of every kind TOML has, and strings that settings must refuse or survive.
VALUES = [
    '""',
    '"   "',
    '"x"',
    '"한국어"',
    '"' + "x" * 5_000 + '"',
    '"a\\nb"',
    '"\\u0000"',
    '"https://x.com/\\u0000p"',
    '"a\\u001b[31mb"',
    '"a\\u0085b\\u2028c"',
    '"https://u:pw@x.com/p?q=1#frag"',
    '"../x"',
    '"http://[::1"',
    '"https://example.com:99999"',
    '"ftp://example.com"',
    '"sqlite:///nowhere/../x.db"',
    '"Name <a@b.org>"',
    '"a@b.org, c@d.org"',
    '"<>"',
    "0",
    "-1",
    "65536",
    "99999999999999999999",
    "1.5",
    "nan",
    "inf",
    "-inf",
    "true",
    "[]",
    '["en", "en"]',
    '["zz-" ]',
    "[1, 2]",
    "{}",
    "{ a = 1 }",
    "1979-05-27",
    "07:32:00",
    "1979-05-27T07:32:00Z",
]
KEYS = [
    "title",
    "description",
    "base_url",
    "language",
    "languages",
    "author",
    "from",
    "reply_to",
    "postal_address",
    "feed_size",
    "page_size",
    "timezone",
    "publish_time",
    "id_date",
    "database_url",
    "transport",
    "list_id",
    "unsubscribe_mailto",
    "rate",
    "smtp",
    "en",
]


def _settings_section(text: str) -> tuple[str, str, str]:
    """(before, the [tool.newsletter…] tables, after) of the sample pyproject.toml."""
    start = text.index("[tool.newsletter]")
    rest = text[start:]
    end = re.search(r"^\[(?!tool\.newsletter)", rest, flags=re.MULTILINE)
    stop = start + (end.start() if end else len(rest))
    return text[:start], text[start:stop], text[stop:]


def _mutate_settings(section: str, chooser: random.Random) -> str:
    """Set a key to a value of any type, drop a key, or edit the text itself (which may break the TOML)."""
    lines = section.splitlines()
    for _ in range(chooser.randint(1, 2)):
        kind = chooser.randrange(4)
        if kind in (0, 1):
            key = chooser.choice(KEYS)
            lines = [line for line in lines if not line.startswith(f"{key} = ")]
            lines.insert(1, f"{key} = {chooser.choice(VALUES)}")
        elif kind == 2 and len(lines) > 2:
            del lines[chooser.randrange(1, len(lines))]
        else:
            text = "\n".join(lines).encode()
            lines = _mutate(text, chooser).decode("utf-8", "replace").splitlines() or [""]
    return "\n".join(lines) + "\n"


def test_mutated_settings_load_or_are_refused_in_one_line(publication: Path) -> None:
    chooser = random.Random(SEED)
    config = publication / "pyproject.toml"
    before, section, after = _settings_section(config.read_text(encoding="utf-8"))
    runner = CliRunner()
    assert (
        _invoke(runner, publication, "subscribers", "import", str(REPO / "subscribers" / "example.csv"))[0].exit_code
        == 0
    )
    outcomes = {0: 0, 1: 0}
    for case in range(SETTINGS_CASES):
        mutated = _mutate_settings(section, chooser)
        config.write_text(before + mutated + after, encoding="utf-8")
        # Most cases load the settings and open the store; every fifth also builds every message of a send.
        command = ("send", ISSUE, "--dry-run") if case % 5 == 0 else ("subscribers", "count")
        result, seconds = _invoke(runner, publication, *command)
        # The file, or an environment-free setting named after it; the issue file when the settings
        # changed what its front matter must match (its language, say).
        names = ("pyproject.toml", "issues/", "subscribers.db", "--transport")
        _assert_one_line_or_success(result, seconds, names, (case, command, mutated[:300]))
        outcomes[result.exit_code] += 1
    assert min(outcomes.values()) > 20, outcomes
