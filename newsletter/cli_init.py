"""`newsletter init` and `newsletter templates list|copy`: click commands only. Options (and, for init, prompts
with defaults) → one library call (starter.py, template_overrides.py) → printed result.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from .cli_errors import reports_errors
from .config import find_root
from .errors import NewsletterError
from .init_answers import check_answer, check_app_url_for_ci, check_languages, default_from_address
from .render.templates import OVERRIDES, theme_files
from .starter import (
    CI_CHOICES,
    NewPublication,
    default_title,
    init_publication,
    local_timezone,
    split_languages,
)
from .template_overrides import copy_templates, template_states

_T = TypeVar("_T")


@click.command()
@click.argument("folder", required=False, type=click.Path(path_type=Path))
@click.option("--title", help="The publication's title [the folder's name].")
@click.option("--description", help="One sentence on what it is about.")
@click.option("--base-url", help="Where the archive is served [http://localhost:8000].")
@click.option("--app-url", help="Where `newsletter serve` answers /unsubscribe, if not on --base-url.")
@click.option("--language", "languages", multiple=True, help="A language (BCP 47); the first is the default [en].")
@click.option("--from", "from_address", help="The sender, 'Name <address>'.")
@click.option("--postal-address", help="Your postal address, printed in every email (CAN-SPAM).")
@click.option("--timezone", help="The IANA time zone of publication times [this machine's].")
@click.option("--author", help="The feeds' author [the title].")
@click.option("--ci", type=click.Choice(CI_CHOICES), help="Also write CI workflow files (.github/workflows/).")
@click.option("--yes", "-y", is_flag=True, help="Ask nothing: take the options given and the defaults.")
@click.pass_context
@reports_errors
def init(
    ctx: click.Context, folder: Path | None, yes: bool, ci: str | None, languages: tuple[str, ...], **given: str | None
) -> None:
    """Start a publication in FOLDER (default: here): settings, a first draft issue, subscribers/, a .gitignore,
    a README and deployment files. Asks for each setting unless --yes.

    Example: newsletter init weekly --yes --title "Weekly" --postal-address "1 Main St, Springfield"
    """
    root = (ctx.find_root().obj or {}).get("root")
    folder = folder or (Path(root) if root else Path("."))

    def ask(
        key: str,
        label: str,
        default: str | None,
        *,
        needed: str = "",
        example: str = "",
        check: Callable[[str, str], str] = check_answer,
    ) -> str:
        """The flag's value, else (with --yes) the default, else the editor's answer, asked again until the
        settings would take it; each is checked as the settings will check it."""
        value = given.get(key)
        if value is not None:
            return check(key, value)
        if yes:
            if default is None:
                flag = f"--{key.replace('_', '-')}"
                raise NewsletterError(flag, f"is needed with --yes: {needed}", f"pass {flag} {example}")
            return check(key, default)
        return str(click.prompt(label, default=default, value_proc=lambda text: _checked(check, key, text)))

    title = ask("title", "Title", default_title(folder))
    description = ask("description", "Description", f"News from {title}.")
    base_url = ask("base_url", "Base URL of the archive", "http://localhost:8000")
    app_url = ""
    if ci == "github":  # the archive on GitHub Pages, `newsletter serve` elsewhere: mails must link there

        def another_host(key: str, text: str) -> str:
            url = check_answer(key, text)
            check_app_url_for_ci(base_url, url)
            return url

        app_url = ask(
            "app_url",
            "URL where `newsletter serve` answers /unsubscribe (not on GitHub Pages)",
            None,
            needed="GitHub Pages serves the archive but cannot answer /unsubscribe",
            example="https://app.example.com",
            check=another_host,
        )
    elif given.get("app_url"):
        app_url = check_answer("app_url", str(given["app_url"]))
    if languages:
        codes = check_languages(split_languages(languages))
    elif yes:
        codes = ("en",)
    else:
        codes = click.prompt(
            "Languages, the default first",
            default="en",
            value_proc=lambda text: _checked(lambda _, t: check_languages(split_languages([t])), "languages", text),
        )
    from_address = ask("from_address", "From", default_from_address(title, base_url))
    postal_address = ask(
        "postal_address",
        "Postal address (printed in every email; CAN-SPAM)",
        None,
        needed="every email carries the sender's postal address (CAN-SPAM)",
        example='"street, city, country"',
    )
    timezone = ask("timezone", "Time zone", local_timezone())
    new = NewPublication(
        title=title,
        description=description,
        base_url=base_url,
        app_url=app_url,
        languages=codes or ("en",),
        from_address=from_address,
        postal_address=postal_address,
        timezone=timezone,
        author=given.get("author") or title,
        ci=ci or "",
    )
    written = init_publication(folder, new)
    shown = _shown(folder)
    click.echo(f"Made a publication in {shown}/:")
    for item in written:
        click.echo(f"  {item.action} {item.path}{' (it was there)' if item.action == 'kept' else ''}")
    draft = next((w.path for w in written if w.path.startswith("issues/") and w.action == "wrote"), None)
    slug = Path(draft).stem if draft else "ISSUE"
    click.echo("Next:")
    if shown != ".":
        click.echo(f"  cd {shown}")
    click.echo("  newsletter check")
    click.echo(f"  newsletter preview {slug}")
    click.echo("  newsletter build")
    click.echo("  newsletter subscribers add you@example.com")
    click.echo(f"  newsletter send {slug}      # after removing draft: true from {draft or 'the issue'}")


def _checked(check: Callable[[str, str], _T], key: str, text: str) -> _T:
    """`check(key, text)` for a prompt: a refusal is said and the question asked again."""
    try:
        return check(key, text)
    except NewsletterError as err:
        raise click.UsageError(str(err)) from None


def _shown(path: Path) -> str:
    """`path` relative to the current folder (`.` for the folder itself), else as given."""
    try:
        return str(path.absolute().relative_to(Path.cwd())) or "."
    except ValueError:
        return str(path)


def _publication_root(ctx: click.Context) -> Path:
    """The publication folder (--root, or found above here); its settings need not be valid to list or copy."""
    root = (ctx.find_root().obj or {}).get("root")
    return Path(root) if root else find_root(Path.cwd())


@click.group()
def templates() -> None:
    """The theme's files: which the publication's templates/ overrides, and copying one there to change it."""


@templates.command("list")
@click.pass_context
@reports_errors
def templates_list(ctx: click.Context) -> None:
    """List each theme file and whether templates/ overrides it.

    Example: newsletter templates list
    """
    states = template_states(_publication_root(ctx))
    width = max(len(name) for name, _ in states)
    for name, state in states:
        click.echo(f"{name:<{width}}  {state}")


@templates.command("copy")
@click.argument("names", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Copy every theme file.")
@click.option("--force", is_flag=True, help="Replace files that templates/ has already.")
@click.pass_context
@reports_errors
def templates_copy(ctx: click.Context, names: tuple[str, ...], everything: bool, force: bool) -> None:
    """Copy theme files (NAME: a file or a folder such as web) into templates/ to change them.

    Example: newsletter templates copy email.mjml.j2 static/style.css
    """
    if not names and not everything:
        raise click.UsageError("name the files to copy (newsletter templates list shows them), or pass --all")
    root = _publication_root(ctx)
    for path in copy_templates(root, theme_files() if everything else list(names), force=force):
        click.echo(f"Copied theme/{path.removeprefix(OVERRIDES + '/')} to {path}")
