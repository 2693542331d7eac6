#!/usr/bin/env python3
"""Set up and run the project with nothing but Python 3.11+: `python3 dev.py demo|test|lint|bench`.

Each command first makes `.venv/` and installs the package with its test extras (again only when
pyproject.toml changed), so a fresh clone needs no other step.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
SAMPLE_ISSUE = "2023-09-25-top-ml-papers"


def ensure_venv() -> None:
    """Create .venv and install `newsletter[test]` into it unless pyproject.toml is unchanged since."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be started by an older python3
        raise SystemExit("newsletter needs Python 3.11 or newer")
    stamp = VENV / ".installed"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print("Creating .venv …", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("Installing newsletter with its test extras into .venv …", flush=True)
    run(BIN / "python", "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(BIN / "python", "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[test]")
    stamp.write_text(wanted)


def run(*command: object) -> None:
    completed = subprocess.run([str(part) for part in command], cwd=ROOT)
    if completed.returncode:
        raise SystemExit(completed.returncode)


def newsletter(*args: str) -> None:
    print(f"\n$ newsletter {' '.join(args)}", flush=True)
    run(BIN / "newsletter", *args)


def demo() -> None:
    """The main job on the embedded defaults: check, build the archive, import the sample subscribers
    into the SQLite store and send the sample issue to them through the file transport (outbox/)."""
    newsletter("check")
    newsletter("build")
    newsletter("preview", SAMPLE_ISSUE)
    newsletter("subscribers", "import", "subscribers/example.csv")
    newsletter("send", SAMPLE_ISSUE, "--yes", "--resend")
    newsletter("status", SAMPLE_ISSUE)
    print(f"\nThe archive is in site/, the messages in outbox/{SAMPLE_ISSUE}/, a preview in preview/.")


def test(*args: str) -> None:
    """The whole test suite (pytest)."""
    run(BIN / "python", "-m", "pytest", *args)


def lint() -> None:
    """ruff (lint and format) over the code, and mypy over the package (settings in pyproject.toml)."""
    run(BIN / "ruff", "check", "newsletter", "tests", "bench", "dev.py")
    run(BIN / "ruff", "format", "--check", "newsletter", "tests", "bench", "dev.py")
    run(BIN / "mypy")


def bench() -> None:
    for script in sorted((ROOT / "bench").glob("*.py")):
        print(f"\n$ python {script.relative_to(ROOT)}", flush=True)
        run(BIN / "python", script)


COMMANDS = {"demo": demo, "test": test, "lint": lint, "bench": bench}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        raise SystemExit(f"usage: python3 dev.py {{{'|'.join(COMMANDS)}}} [pytest arguments]")
    ensure_venv()
    COMMANDS[sys.argv[1]](*sys.argv[2:])
