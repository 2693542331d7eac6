"""The package's shape, kept by test: which layer may import which (docs/design.md, each package's docstring).

Every import in every module counts, the ones inside functions too, so a lazy import cannot hide a break.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "newsletter"

# The click commands: the only modules that import click (test_only_the_commands_import_click).
COMMANDS = ("cli", "cli_doctor", "cli_errors", "cli_init", "cli_report", "cli_send")

# layer → the modules of ours it must never import (a name covers the module and everything below it)
FORBIDDEN = {
    # The model: issue files, their Markdown, settings, errors, tokens. It knows no renderer, store or peer.
    "newsletter.config": ("render", "store", "transports", "sending", "web", "events", "cli", "issues", "markdown"),
    "newsletter.config_keys": ("render", "store", "transports", "sending", "web", "events", "cli", "issues"),
    "newsletter.config_values": (
        "render",
        "store",
        "transports",
        "sending",
        "web",
        "events",
        "cli",
        "issues",
        "config",
    ),
    "newsletter.errors": ("render", "store", "transports", "sending", "web", "events", "cli", "config", "issues"),
    "newsletter.time_words": ("render", "store", "transports", "sending", "web", "events", "cli", "issues"),
    "newsletter.processes": ("render", "store", "transports", "sending", "web", "events", "cli", "issues"),
    "newsletter.log_throttle": ("render", "store", "transports", "sending", "web", "events", "cli", "issues", "config"),
    "newsletter.tokens": ("render", "store", "transports", "sending", "web", "events", "cli", "issues"),
    "newsletter.markdown": ("render", "store", "transports", "sending", "web", "events", "cli", "issues"),
    "newsletter.tags": ("render", "store", "transports", "sending", "web", "events", "cli", "issues", "config"),
    "newsletter.issues": ("render", "store", "transports", "sending", "web", "events", "cli"),
    # Which issues are due: the model and the send log's counts, never a renderer, a peer or the send loop.
    "newsletter.schedule": ("render", "transports", "sending", "web", "events", "cli"),
    # Renderers turn editions into bytes: no store, no peer, no sending, no web app.
    "newsletter.render": ("store", "transports", "sending", "web", "events", "cli", "cli_send", "subscriber_csv"),
    # Transports get bytes and report what the peer said: they never render and never touch the store.
    "newsletter.transports": ("render", "store", "sending", "web", "events", "cli", "messages", "issues", "markdown"),
    # The doctor only reads and asks (settings, the newest issue, DNS, SES, the unsubscribe host): it never opens the
    # store, sends, or serves.
    "newsletter.doctor": ("store", "sending", "send_loop", "web", "events", "cli", "cli_send", "subscriber_csv"),
    # The store keeps subscribers and the send log: no renderer, no peer.
    "newsletter.store": ("render", "transports", "sending", "web", "events", "cli", "messages", "issues", "markdown"),
    # Starting a publication: the scaffold, its settings and the theme's wording; no store, no peer, no command.
    "newsletter.starter": ("store", "transports", "sending", "web", "events", *COMMANDS),
    # The theme's files as a publication sees them: the theme alone, never the model, a store, a peer or a command.
    "newsletter.template_overrides": ("issues", "store", "transports", "sending", "web", "events", *COMMANDS),
    # The web app answers requests and leaves mails due for its worker: it never sends an issue or runs a command.
    "newsletter.web": ("sending", "send_loop", "send_processes", "schedule", *COMMANDS),
    # SES link tags: a pure function of an anchor, shared by the renderer and the report.
    "newsletter.link_tags": ("render", "store", "transports", "sending", "web", "events", "issues", *COMMANDS),
    # The reputation guard judges counts the store gives it: no renderer, peer, web app or command.
    "newsletter.reputation": ("render", "transports", "sending", "send_loop", "web", "events", *COMMANDS),
    # The sign-up mails (confirmation, welcome) are built from settings, issues and templates: no store, no web app,
    # no sending of issues.
    "newsletter.signup_mails": ("store", "web", "sending", "send_loop", "events", *COMMANDS),
    # An issue's report: the figures come from the store's aggregate queries and the issue file; it never renders,
    # sends, serves or reads SES itself. Its table and page only format a report: no store, no peer.
    "newsletter.report": ("render", "sending", "send_loop", "web", "events", *COMMANDS),
    "newsletter.report_table": ("store", "render", "transports", "sending", "web", "events", *COMMANDS),
    "newsletter.report_html": ("store", "transports", "sending", "web", "events", *COMMANDS),
    # The SQS side of `newsletter events` moves queue messages to events.py and the store: no renderer, transport,
    # send loop, web app or command (the CLI hands it its boto3 client).
    "newsletter.event_queue": ("render", "transports", "sending", "send_loop", "web", *COMMANDS),
    # The preview (files, server, its state, pages and watcher) renders and reads: no store, no sending, no peer.
    **{
        f"newsletter.{name}": ("store", "transports", "sending", "send_loop", "web", "events", *COMMANDS)
        for name in ("preview", "preview_state", "preview_pages", "preview_server", "preview_watch")
    },
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, source: str | None = None) -> set[str]:
    """Absolute names of every module `path` (or `source` as if it were there) imports, relative ones resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    text = path.read_text(encoding="utf-8") if source is None else source
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            found.add(stem)
            found.update(f"{stem}.{alias.name}" for alias in node.names)  # `from . import x` imports x
    return found


def layer_of(name: str) -> str | None:
    return next((layer for layer in FORBIDDEN if name == layer or name.startswith(layer + ".")), None)


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_layer_named_in_the_rules_exists() -> None:
    names = {module_name(path) for path in MODULES}
    for layer in FORBIDDEN:
        assert layer in names, f"{layer} is named in the package rules but does not exist"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_module_keeps_its_layer_rules(path: Path) -> None:
    name = module_name(path)
    layer = layer_of(name)
    if layer is None:
        return
    breaks = sorted(
        imported
        for imported in imported_modules(path)
        for banned in FORBIDDEN[layer]
        if imported == f"newsletter.{banned}" or imported.startswith(f"newsletter.{banned}.")
    )
    assert not breaks, f"{name} ({layer}) must not import {', '.join(breaks)}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_only_the_commands_import_click(path: Path) -> None:
    """The library prompts and prints nothing: only the commands import click."""
    name = module_name(path).removeprefix("newsletter.")
    if name in COMMANDS:
        return
    assert not any(m == "click" or m.startswith("click.") for m in imported_modules(path)), f"{name} imports click"


def test_the_rule_checker_sees_a_break() -> None:
    """The checker itself: a lazy, relative import of the store from a renderer is found."""
    assert "newsletter.issues" in imported_modules(PACKAGE / "render" / "email.py")
    probe = PACKAGE / "render" / "probe.py"  # never written: its source is given
    assert "newsletter.store" in imported_modules(probe, "def f():\n    from ..store import open_store\n")
    assert "newsletter.transports" in imported_modules(probe, "from .. import transports\n")
    assert layer_of(module_name(probe)) == "newsletter.render"


RENDER_MODULE_LINES = 400  # STYLE: split a module when it passes ~400 lines or holds two jobs


@pytest.mark.parametrize("path", sorted((PACKAGE / "render").glob("*.py")), ids=lambda p: p.name)
def test_render_modules_stay_small(path: Path) -> None:
    """The site build was one 800-line class; it is split by job (docs/design.md, "The site build")."""
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= RENDER_MODULE_LINES, f"render/{path.name} has {lines} lines: split it by job"
