"""Every file the tool reads from a publication is refused with one line when it is not a regular file.

A FIFO at any of them made `newsletter` block for ever on the read; a folder or a device failed with a
misleading message. Each case runs the real command in a subprocess with a deadline, so a hang fails the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from newsletter.files import read_regular_file

# Seconds: far above a normal run (about 2 s), so only a hang reaches it; lower it to try the old code quickly.
DEADLINE = int(os.environ.get("TEST_FILE_DEADLINE", "120"))


def _newsletter(publication: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-m", "newsletter", "--root", str(publication), *args],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            cwd=publication,
            env={**os.environ, "NEWSLETTER_SECRET_KEY": "a-test-secret-of-enough-length-0123456789"},
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"newsletter {' '.join(args)} still ran after {DEADLINE} s: it blocked on a file")


def _fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


def _folder(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.mkdir()


def _device(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.symlink_to("/dev/zero")  # a device that never ends


MAKERS: dict[str, Callable[[Path], None]] = {"fifo": _fifo, "folder": _folder, "device": _device}

# (the file, the command that reads it, what the one line names)
CASES = [
    ("pyproject.toml", ("check",), "{root}/pyproject.toml"),
    ("pyproject.toml", ("build",), "{root}/pyproject.toml"),
    ("templates/strings.toml", ("check",), "templates/strings.toml"),
    ("templates/email.css", ("preview", "2023-09-25-top-ml-papers"), "templates/email.css"),
    ("templates/page.html.j2", ("build",), "templates/page.html.j2"),
    ("templates/email.mjml.j2", ("preview", "2023-09-25-top-ml-papers"), "templates/email.mjml.j2"),
    ("people.csv", ("subscribers", "import", "people.csv"), "people.csv"),
]


@pytest.mark.parametrize(
    ("kind", "name", "command", "where"),
    [
        pytest.param(kind, *case, id=f"{kind}-{case[0]}-{case[1][0]}")
        for kind in sorted(MAKERS)
        for case in CASES
        if not (kind == "folder" and case[1][0] == "subscribers")  # a folder as FILE: click's usage error, exit 2
    ],
)
def test_a_file_that_is_not_regular_is_one_line(
    publication: Path, kind: str, name: str, command: tuple[str, ...], where: str
) -> None:
    MAKERS[kind](publication / name)
    result = _newsletter(publication, *command)
    assert result.returncode == 1, result.stderr
    shown = where.format(root=publication)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    if kind == "device" and name.startswith("templates/"):
        # A template may not lead out of the publication at all, so the link is refused before the device is read.
        assert lines[0].startswith(f"Error: {shown}: leads through a symbolic link to /dev/zero"), lines[0]
    else:
        assert lines[0].startswith(f"Error: {shown}: is "), lines[0]
        assert "not a regular file" in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def test_check_names_a_template_that_is_not_regular(publication: Path) -> None:
    """`check` lists each problem on its line (then its summary): the template's says what it is."""
    _fifo(publication / "templates" / "page.html.j2")
    result = _newsletter(publication, "check")
    assert result.returncode == 1
    assert "error: templates/page.html.j2: is not a regular file (put a plain file there)" in result.stderr.splitlines()


def test_a_pyproject_fifo_above_the_current_folder_is_refused(publication: Path) -> None:
    """Found by walking up (no --root), a pyproject.toml that is a FIFO is refused, not read or skipped."""
    _fifo(publication / "pyproject.toml")
    inside = publication / "issues"
    try:
        result = subprocess.run(
            [sys.executable, "-m", "newsletter", "check"], capture_output=True, text=True, timeout=DEADLINE, cwd=inside
        )
    except subprocess.TimeoutExpired:
        pytest.fail("newsletter check blocked on a pyproject.toml FIFO")
    assert result.returncode == 1
    assert result.stderr == (f"Error: {publication}/pyproject.toml: is not a regular file (put a plain file there)\n")


@pytest.mark.parametrize(
    ("name", "size"),
    [("pyproject.toml", 1_000_001), ("templates/strings.toml", 1_000_001), ("templates/email.css", 1_000_001)],
)
def test_a_file_over_its_limit_is_one_line(publication: Path, name: str, size: int) -> None:
    path = publication / name
    with path.open("ab") as handle:
        handle.write(b"\n" * (size - path.stat().st_size))
    result = _newsletter(publication, "preview", "2023-09-25-top-ml-papers")
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f"is {size:,} bytes, over the limit of 1,000,000 (make it smaller)" in lines[0]


def test_the_reader_checks_the_open_file_and_its_size(tmp_path: Path) -> None:
    """The library call: a regular file is read whole; a file that grows past the limit is refused."""
    path = tmp_path / "a.txt"
    path.write_bytes(b"abc")
    assert read_regular_file(path, "a.txt", limit=3) == b"abc"
    with pytest.raises(Exception, match=r"^a\.txt: is 3 bytes, over the limit of 2 \(make it smaller\)$"):
        read_regular_file(path, "a.txt", limit=2)
    with pytest.raises(FileNotFoundError):
        read_regular_file(tmp_path / "missing", "missing", limit=3)
