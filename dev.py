#!/usr/bin/env python3
"""Set up and run the project with nothing but Python 3.11+: `python3 dev.py demo|test|lint|bench`.

Each command first makes `.venv/` and installs what it needs into it, saying what and where, and again only when
pyproject.toml changed: `demo` the package with its dependencies, `test`, `lint` and `bench` also its test extras
(pytest, moto, aiosmtpd, Playwright, ruff, mypy, …).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".installed.json"  # {"main" | "test": the sha256 of pyproject.toml it was installed from}
SAMPLE_ISSUE = "2023-09-25-top-ml-papers"
# pip's lines that say nothing new on a second run
QUIET_PIP_LINES = ("Requirement already satisfied", "Using cached", "Obtaining file:", "  Preparing", "  Checking")


def ensure_venv(flavour: str) -> None:
    """Create .venv and install the package ("main") or the package and its test extras ("test") into it,
    unless that was done from the same pyproject.toml."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be started by an older python3
        raise SystemExit("newsletter needs Python 3.11 or newer")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    done = _installed()
    if done.get(flavour) == wanted or done.get("test") == wanted:  # the test install holds the main one
        return
    if not (BIN / "python").exists():
        print(f"Creating a virtual environment in {VENV} (Python {sys.version.split()[0]}) …", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    what = "newsletter and its dependencies" if flavour == "main" else "newsletter with its test extras"
    size = "about 150 MB" if flavour == "main" else "about 650 MB, Playwright's driver included"
    print(f"Installing {what} into {VENV} ({size}; a minute or two on a first run) …", flush=True)
    pip("install", "--upgrade", "pip")
    if list((VENV / "lib").glob("python3*/site-packages/newsletter-*.dist-info")):  # its name before 0.1.0
        pip("uninstall", "--yes", "newsletter")
    pip("install", "--editable", f"{ROOT}[test]" if flavour == "test" else str(ROOT))
    done[flavour] = wanted
    STAMP.write_text(json.dumps(done))
    print(
        f"Installed. The newsletter command is {BIN / 'newsletter'}: run it as .venv/bin/newsletter, "
        "or put it on PATH with `. .venv/bin/activate`.",
        flush=True,
    )


def _installed() -> dict[str, str]:
    try:
        found = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def pip(*args: str) -> None:
    """Run pip in .venv, showing a line per step (what it collects, builds and installs)."""
    quiet = ["--progress-bar", "off"] if args[0] == "install" else []
    command = [str(BIN / "python"), "-m", "pip", *args, *quiet, "--disable-pip-version-check"]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        for line in process.stdout:
            if not line.startswith(QUIET_PIP_LINES):
                print(f"  pip: {line.rstrip()}", flush=True)
    if process.returncode:
        raise SystemExit(process.returncode)


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
    ensure_venv("main" if sys.argv[1] == "demo" else "test")
    COMMANDS[sys.argv[1]](*sys.argv[2:])
