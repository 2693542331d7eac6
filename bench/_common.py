"""What the benchmarks share: a scratch copy of the sample publication."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_ISSUE = "2023-09-25-top-ml-papers"


def copy_publication(folder: Path, *, issues: bool = True) -> Path:
    """The sample's settings and templates (and issues) in `folder`; returns `folder`."""
    config = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (folder / "pyproject.toml").write_text(config[config.index("[tool.newsletter]") :], encoding="utf-8")
    shutil.copytree(ROOT / "templates", folder / "templates")
    if issues:
        shutil.copytree(ROOT / "issues", folder / "issues")
    return folder


def write_subscribers_csv(path: Path, count: int) -> Path:
    """A CSV of `count` subscribers at example.com, a quarter of them reading English."""
    with path.open("w", encoding="utf-8") as handle:
        handle.write("email,name,lang,source_page\n")
        for n in range(count):
            handle.write(f"reader{n}@example.com,독자 {n},{'en' if n % 4 == 0 else 'ko'},landing\n")
    return path


def send_sample_issue(folder: Path, transport, limiter):
    """Run the real send loop for the sample issue over the subscribers already in `folder`'s store."""
    from newsletter.config import load_settings
    from newsletter.issues import find_issue
    from newsletter.render.templates import load_templates
    from newsletter.sending import build_templates, send_edition, start_send
    from newsletter.store import open_store

    settings = load_settings(folder)
    issue = find_issue(settings, SAMPLE_ISSUE)
    messages = build_templates(settings, load_templates(settings), issue)
    with open_store(settings.database_url) as store:
        total = start_send(store, issue, settings, resend=False)
        return send_edition(
            settings, store, issue, transport, messages, b"benchmark-secret-benchmark", limiter=limiter, total=total
        )
