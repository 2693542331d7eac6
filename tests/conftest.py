"""Shared fixtures: a copy of the sample publication, the CLI, and real peers started on 127.0.0.1.

A test that needs a system package (chromium, PostgreSQL) skips with the reason when it is missing;
under CI (CI=true) that skip fails the run instead, because CI must have installed it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsletter.cli import cli

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def missing_system_package(reason: str) -> None:
    """Skip, or under CI fail: CI installs every package the tests need."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI must install it: see .ci/run)")
    pytest.skip(reason)


@pytest.fixture
def publication(tmp_path: Path) -> Path:
    """A fresh copy of the sample publication (config, templates, issues)."""
    root = tmp_path / "pub"
    root.mkdir()
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(REPO / "templates", root / "templates")
    shutil.copytree(REPO / "issues", root / "issues")
    return root


@pytest.fixture
def run(publication: Path) -> Callable[..., Result]:
    """Run the CLI against the publication copy: run("build", "--out", …)."""
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(cli, ["--root", str(publication), *args], obj={}, catch_exceptions=False)

    return invoke


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium driven by Playwright (never a downloaded browser)."""
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).exists():
        missing_system_package("Debian's chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        yield instance
        instance.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def write_issue(publication: Path, name: str, text: str | bytes) -> Path:
    path = publication / "issues" / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path
