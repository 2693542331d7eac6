"""The `newsletter` command: click commands only. Options → one library call → printed result.

Our errors become one `Error: …` line and exit 1; usage mistakes stay click's (exit 2).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from . import __version__
from .config import Settings, find_root, load_settings
from .errors import NewsletterError

F = TypeVar("F", bound=Callable[..., Any])


def reports_errors(command: F) -> F:
    """Turn our errors (and unreadable files) into one `Error:` line with exit code 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except NewsletterError as err:
            raise click.ClickException(str(err)) from None
        except OSError as err:
            where = getattr(err, "filename", None) or "file system"
            raise click.ClickException(f"{where}: {err.strerror or err} (check the path and permissions)") from None

    return wrapper  # type: ignore[return-value]


def settings_of(ctx: click.Context) -> Settings:
    """The settings of the publication chosen with --root (or found above the current folder)."""
    root = ctx.obj.get("root")
    return load_settings(Path(root) if root else find_root(Path.cwd()))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    help="The publication folder (the one whose pyproject.toml has [tool.newsletter]).",
)
@click.version_option(__version__, prog_name="newsletter")
@click.pass_context
def cli(ctx: click.Context, root: Path | None) -> None:
    """Publish a newsletter kept in a git repo: email, feeds, archive, sending."""
    ctx.ensure_object(dict)
    ctx.obj["root"] = root


@cli.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Where to write the site [site/].")
@click.option("--no-cache", is_flag=True, help="Parse and render everything, ignoring .cache/.")
@click.pass_context
@reports_errors
def build(ctx: click.Context, out: Path | None, no_cache: bool) -> None:
    """Build the archive site: pages, tag pages, Atom/RSS feeds, sitemap.

    Example: newsletter build --out site
    """
    from .render.site import build_site

    settings = settings_of(ctx)
    result = build_site(settings, out=out, use_cache=not no_cache)
    click.echo(
        f"Built {_shown(result.out)}/: {result.issues} issue(s), {result.files} files "
        f"({result.pages_rendered} pages rendered, {result.pages_reused} unchanged) in {result.seconds:.2f} s"
    )


@cli.command()
@click.pass_context
@reports_errors
def check(ctx: click.Context) -> None:
    """Check settings, templates and every issue (translations, email size); exit 1 on any error.

    Example: newsletter check
    """
    from .checks import check_publication
    from .render.templates import load_templates

    settings = settings_of(ctx)
    problems, count = check_publication(settings, load_templates(settings))
    for problem in problems:
        click.echo(str(problem), err=True)
    errors = sum(1 for p in problems if p.severity == "error")
    warnings = len(problems) - errors
    summary = f"checked {count} edition file(s): {errors} error(s), {warnings} warning(s)"
    if errors:
        raise click.ClickException(summary)
    click.echo(summary)


@cli.command()
@click.argument("title")
@click.option("--slug", help="The name part of the file (ASCII letters, digits, '-'); made from TITLE by default.")
@click.option("--date", "date_text", help="The issue date, YYYY-MM-DD [today].")
@click.option("--lang", help="Write a translation (adds .LANG to the file name).")
@click.pass_context
@reports_errors
def new(ctx: click.Context, title: str, slug: str | None, date_text: str | None, lang: str | None) -> None:
    """Create an issue file from templates/issue.md.j2 (a draft until you remove draft: true).

    Example: newsletter new "Top ML Papers of the Week" --slug top-ml-papers
    """
    from .render.templates import load_templates

    settings = settings_of(ctx)
    if "\n" in title or "\r" in title:
        raise click.BadParameter("the title must be one line", param_hint="TITLE")
    try:
        date = dt.date.fromisoformat(date_text) if date_text else dt.date.today()
    except ValueError:
        raise click.BadParameter(f"{date_text!r} is not a date (use YYYY-MM-DD)", param_hint="--date") from None
    name = slug or re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name or ""):
        raise click.BadParameter(
            f"{name!r} cannot be a file name; pass --slug in ASCII, e.g. --slug weekly", param_hint="--slug"
        )
    if lang and lang not in settings.languages:
        raise click.BadParameter(
            f"{lang!r} is not one of the other languages {settings.languages}", param_hint="--lang"
        )
    path = settings.issues_dir / f"{date.isoformat()}-{name}{'.' + lang if lang else ''}.md"
    if path.exists():
        raise NewsletterError(_shown(path), "already exists", "edit it, or choose another --slug or --date")
    text = load_templates(settings).render(
        "issue.md.j2", title=json.dumps(title, ensure_ascii=False)[1:-1], date=date.isoformat()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("x", encoding="utf-8") as handle:
        handle.write(text)
    click.echo(f"Created {_shown(path)}")


@cli.command()
@click.argument("issue")
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="Where to write the preview [preview/<slug>/]."
)
@click.option("--serve", is_flag=True, help="Serve the preview on 127.0.0.1 until Ctrl-C.")
@click.option("--open", "open_browser", is_flag=True, help="Serve the preview and open it in a browser.")
@click.pass_context
@reports_errors
def preview(ctx: click.Context, issue: str, out: Path | None, serve: bool, open_browser: bool) -> None:
    """Write each edition's email.html and email.txt as a sample subscriber gets them.

    ISSUE is the issue's slug or file name. Example: newsletter preview 2023-09-25-top-ml-papers --open
    """
    from .issues import find_issue
    from .preview import serve_folder, write_preview
    from .render.templates import load_templates

    settings = settings_of(ctx)
    found = find_issue(settings, issue)
    folder = out or settings.root / "preview" / found.slug
    for path in write_preview(settings, load_templates(settings), found, folder):
        click.echo(f"Wrote {_shown(path)}")
    if serve or open_browser:
        serve_folder(folder, open_browser=open_browser)


def _shown(path: Path) -> str:
    """`path` relative to the current folder when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main() -> None:
    """Console-script entry point."""
    cli(obj={})
