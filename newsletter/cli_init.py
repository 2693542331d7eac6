"""`newsletter init`: a new publication from `newsletter/scaffold/`; `newsletter templates`: the theme's files, which
of them the publication overrides, and copying one into `templates/` to change it.

Nothing is half-written: init renders every file into a staging folder, loads the settings it wrote there (so a
bad value is one line naming its key) and only then moves the files into place.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import json
import os
import re
import shutil
import tomllib
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from . import __version__
from .config import CONFIG_FILE, CONFIG_FILE_LIMIT, find_root, load_settings
from .errors import ConfigError, NewsletterError, one_line
from .files import read_regular_file
from .render.templates import (
    OVERRIDES,
    STRINGS_FILE,
    THEME_DIR,
    THEME_LAYER,
    Layer,
    likely_language,
    load_templates,
    merge_strings,
    theme_files,
    wording_of,
)

SCAFFOLD = Path(__file__).resolve().parent / "scaffold"
# scaffold folder → where its files go in the publication (github only with --ci github)
SCAFFOLD_TARGETS = {"publication": "", "deploy": "deploy/", "github": ".github/workflows/"}
CI_CHOICES = ("github",)
DOT_PREFIX = "dot-"  # a scaffold file named dot-gitignore is written as .gitignore (wheels drop dotfiles' globs)

F = TypeVar("F", bound=Callable[..., Any])


def _one_line_errors(command: F) -> F:
    """Our errors and unreadable files as one `Error:` line, exit 1 (cli.reports_errors, without importing cli,
    which imports this module)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except NewsletterError as err:
            raise click.ClickException(str(err)) from None
        except OSError as err:
            where = one_line(str(getattr(err, "filename", None) or "file system"))
            what = one_line(str(err.strerror or err))
            raise click.ClickException(f"{where}: {what} (check the path and permissions)") from None

    return wrapper  # type: ignore[return-value]


# ---------------------------------------------------------------- init


@dataclass(frozen=True)
class NewPublication:
    """What `newsletter init` asks for."""

    title: str
    description: str
    base_url: str
    app_url: str  # "" for base_url
    languages: tuple[str, ...]  # the default language first
    from_address: str
    postal_address: str
    timezone: str
    author: str
    ci: str = ""  # "github" also writes .github/workflows/


@dataclass(frozen=True)
class Written:
    """One file of the scaffold: its path in the publication and what init did (wrote, appended to, kept)."""

    path: str
    action: str


def local_timezone() -> str:
    """This machine's IANA time zone name (TZ, /etc/timezone, the /etc/localtime link), else UTC."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    try:
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    except OSError:
        pass
    try:
        candidates.append(str(Path("/etc/localtime").readlink()).split("zoneinfo/", 1)[-1])
    except (OSError, ValueError):
        pass
    for name in candidates:
        try:
            if name and zoneinfo.ZoneInfo(name):
                return name
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            continue
    return "UTC"


def _quoted(value: Any) -> str:
    """A TOML (and YAML) string or list of strings: JSON's quoting, which both read, with DEL escaped too."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True
    )
    env.filters["quoted"] = _quoted
    return env


def _scaffold_sources(folder: str) -> Iterator[Path]:
    base = SCAFFOLD / folder
    if base.is_dir():
        yield from sorted(p for p in base.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def render_scaffold(folders: list[str], context: dict[str, Any]) -> dict[str, bytes]:
    """Every file of the scaffold `folders`, by its path in the publication: files ending .j2 rendered with
    Jinja2 (and the suffix dropped), others copied; `dot-x` becomes `.x`; `{{ … }}` in a name is filled."""
    import jinja2

    env = _environment()
    files: dict[str, bytes] = {}
    for folder in folders:
        for source in _scaffold_sources(folder):
            relative = source.relative_to(SCAFFOLD / folder).as_posix()
            where = f"newsletter/scaffold/{folder}/{relative}"
            name = "/".join(
                "." + part[len(DOT_PREFIX) :] if part.startswith(DOT_PREFIX) else part for part in relative.split("/")
            )
            try:
                if "{{" in name:
                    name = env.from_string(name).render(context)
                if name.endswith(".j2"):
                    name = name[: -len(".j2")]
                    text = env.from_string(source.read_text(encoding="utf-8")).render(context)
                    data = text.encode("utf-8")
                else:
                    data = source.read_bytes()
            except jinja2.TemplateError as err:
                line = getattr(err, "lineno", None) or 0
                raise NewsletterError(f"{where}:{line}", str(err), "reinstall newsletter") from None
            files[SCAFFOLD_TARGETS[folder] + name] = data
    return files


def _context(new: NewPublication, today: dt.date) -> dict[str, Any]:
    base_url = new.base_url.rstrip("/")
    return {
        "title": new.title,
        "description": new.description,
        "base_url": base_url,
        "app_url": (new.app_url or base_url).rstrip("/"),
        "language": new.languages[0],
        "languages": list(new.languages[1:]),  # the other languages, as in the settings
        "all_languages": list(new.languages),
        "from_address": new.from_address,
        "postal_address": new.postal_address,
        "timezone": new.timezone,
        "author": new.author,
        "date": today.isoformat(),
        "version": __version__,
        "package_spec": f"newsletter=={__version__}",
    }


def _existing_settings(folder: Path) -> bytes | None:
    """The bytes of `folder`'s pyproject.toml (None if it has none); refused when it is a publication already."""
    path = folder / CONFIG_FILE
    if not os.path.lexists(path):
        return None
    raw = read_regular_file(path, str(path), limit=CONFIG_FILE_LIMIT, fail=ConfigError)
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(str(path), f"is not valid TOML: {err}", "fix it first; init appends to it") from None
    if isinstance(document.get("tool"), dict) and "newsletter" in document["tool"]:
        raise ConfigError(
            str(path), "already has [tool.newsletter]", "this folder is a publication already: edit its settings"
        )
    return raw


def _wording_for_new_languages(languages: tuple[str, ...]) -> bytes | None:
    """templates/strings.toml with the theme's English under each language the theme has no wording for
    (None when it has all); a language that looks like a slip for one it has (`kr` for `ko`) is refused."""
    strings = merge_strings((THEME_LAYER,))
    missing = [code for code in languages if wording_of(code, strings) is None]
    for code in missing:
        nearest = likely_language(code, sorted(strings))
        if nearest:
            raise ConfigError(
                "--language",
                f"{code!r} has no wording in the theme",
                f"did you mean {nearest!r}? the theme has {', '.join(sorted(strings))}",
            )
    if not missing:
        return None
    english = _theme_table_text("en")
    parts = [
        "# Wording for the languages the theme does not have: its English, to translate. Keys you leave out come\n"
        "# from the theme's English; `newsletter templates list` shows the theme's files.\n"
    ]
    parts.extend(f"\n[{code}]\n{_own_names(code, english)}" for code in missing)
    return "".join(parts).encode("utf-8")


def _own_names(code: str, english: str) -> str:
    """The English wording with the keys that name the language itself set for `code`."""
    import langcodes

    likely = langcodes.Language.get(code).maximize()
    locale = f"{likely.language}_{likely.territory}" if likely.territory else code.replace("-", "_")
    english = re.sub(r"^og_locale = .*$", f'og_locale = "{locale}"', english, flags=re.M)
    return re.sub(r"^language_name = .*$", f'language_name = "{code}"  # the language\'s own name', english, flags=re.M)


def _theme_table_text(lang: str) -> str:
    """The lines of the theme's strings.toml under `[lang]`, as written."""
    text = (THEME_DIR / STRINGS_FILE).read_text(encoding="utf-8")
    match = re.search(rf"^\[{re.escape(lang)}\]\n(.*?)(?=^\[|\Z)", text, flags=re.M | re.S)
    return match[1].rstrip() + "\n" if match else ""


def _gitignore(folder: Path, ours: bytes) -> tuple[bytes, str] | None:
    """(content, action) for .gitignore: ours, or the existing one with the lines it lacks appended."""
    path = folder / ".gitignore"
    if not os.path.lexists(path):
        return ours, "wrote"
    have = read_regular_file(path, str(path), limit=CONFIG_FILE_LIMIT).decode("utf-8", "replace")
    lines = [line for line in ours.decode().splitlines() if line and not line.startswith("#")]
    lacking = [line for line in lines if line not in have.splitlines()]
    if not lacking:
        return None
    joiner = "" if have.endswith("\n") or not have else "\n"
    added = "\n# newsletter: made by its commands, or personal data\n" + "\n".join(lacking) + "\n"
    return (have + joiner + added).encode("utf-8"), "appended to"


def init_publication(folder: Path, new: NewPublication, *, today: dt.date | None = None) -> list[Written]:
    """Make a publication in `folder` (created if missing): settings, a first draft issue, subscribers/, a
    .gitignore, a README, deploy/ and, with ci="github", .github/workflows/. Returns what was written."""
    folder = folder.absolute()
    if os.path.lexists(folder) and not folder.is_dir():
        raise NewsletterError(str(folder), "is not a folder", "name a new or existing folder")
    exists = folder.is_dir()
    settings_before = _existing_settings(folder) if exists else None
    today = today or dt.datetime.now(zoneinfo.ZoneInfo(new.timezone) if _zone_ok(new.timezone) else None).date()
    context = _context(new, today)
    files = render_scaffold(["publication", "deploy", *(["github"] if new.ci == "github" else [])], context)
    wording = _wording_for_new_languages(new.languages)
    if wording is not None:
        files[f"{OVERRIDES}/{STRINGS_FILE}"] = wording
    actions = {name: "wrote" for name in files}
    if settings_before is not None:
        joiner = b"" if settings_before.endswith(b"\n") or not settings_before else b"\n"
        files[CONFIG_FILE] = settings_before + joiner + b"\n" + files[CONFIG_FILE]
        actions[CONFIG_FILE] = "appended [tool.newsletter] to"
    if exists:
        ignore = _gitignore(folder, files.pop(".gitignore"))
        if ignore is None:
            actions[".gitignore"] = "kept"
        else:
            files[".gitignore"], actions[".gitignore"] = ignore
        for name in [n for n in files if n not in (CONFIG_FILE, ".gitignore") and os.path.lexists(folder / n)]:
            del files[name]
            actions[name] = "kept"
    staging = (folder if exists else folder.parent) / f".{folder.name}.init-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for name, data in files.items():
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        _validate(staging)
        shutil.rmtree(staging / ".cache", ignore_errors=True)  # what loading the templates made
        _move_into_place(staging, folder, exists)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [Written(name, actions[name]) for name in sorted(actions)]


def _zone_ok(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _validate(staging: Path) -> None:
    """Load what was written as the commands will: the settings, the theme with its wording, the first issue."""
    from .issues import parse_issue

    settings = load_settings(staging)
    load_templates(settings)
    for path in sorted((staging / "issues").glob("*.md")):
        parse_issue(path, settings)


def _move_into_place(staging: Path, folder: Path, exists: bool) -> None:
    if not exists:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(folder)
        return
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        target = folder / path.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)


def _split_languages(values: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    codes = [code for value in values for code in re.split(r"[\s,]+", value) if code]
    return tuple(dict.fromkeys(codes))


def _title_of(folder: Path) -> str:
    words = re.split(r"[-_\s]+", folder.absolute().name)
    return " ".join(word.capitalize() for word in words if word) or "My Newsletter"


def _sender_domain(base_url: str) -> str:
    from urllib.parse import urlsplit

    host = urlsplit(base_url).hostname or ""
    return host if "." in host and not host.replace(".", "").isdigit() else "example.com"


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
@_one_line_errors
def init(
    ctx: click.Context, folder: Path | None, yes: bool, ci: str | None, languages: tuple[str, ...], **given: str | None
) -> None:
    """Start a publication in FOLDER (default: here): settings, a first draft issue, subscribers/, a .gitignore,
    a README and deployment files. Asks for each setting unless --yes.

    Example: newsletter init weekly --yes --title "Weekly" --postal-address "1 Main St, Springfield"
    """
    root = (ctx.find_root().obj or {}).get("root")
    folder = folder or (Path(root) if root else Path("."))

    def ask(key: str, label: str, default: str | None) -> str:
        value = given.get(key)
        if value is not None:
            return value
        if yes:
            if default is None:
                raise NewsletterError(
                    f"--{key.replace('_', '-')}",
                    "is needed with --yes: every email carries the sender's postal address (CAN-SPAM)",
                    f'pass --{key.replace("_", "-")} "street, city, country"',
                )
            return default
        return str(click.prompt(label, default=default))

    title = ask("title", "Title", _title_of(folder))
    description = ask("description", "Description", f"News from {title}.")
    base_url = ask("base_url", "Base URL of the archive", "http://localhost:8000")
    if languages:
        codes = _split_languages(languages)
    elif yes:
        codes = ("en",)
    else:
        codes = _split_languages([click.prompt("Languages, the default first", default="en")])
    from_address = ask("from_address", "From", f"{title} <newsletter@{_sender_domain(base_url)}>")
    postal_address = ask("postal_address", "Postal address (printed in every email; CAN-SPAM)", None)
    timezone = ask("timezone", "Time zone", local_timezone())
    new = NewPublication(
        title=title,
        description=description,
        base_url=base_url,
        app_url=given.get("app_url") or "",
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


def _shown(path: Path) -> str:
    try:
        return str(path.absolute().relative_to(Path.cwd())) or "."
    except ValueError:
        return str(path)


# ---------------------------------------------------------------- templates


def _publication_root(ctx: click.Context) -> Path:
    """The publication folder (--root, or found above here); its settings need not be valid to list or copy."""
    root = (ctx.find_root().obj or {}).get("root")
    return Path(root) if root else find_root(Path.cwd())


def template_states(root: Path) -> list[tuple[str, str]]:
    """(name, where it comes from) for each theme file, then each file of templates/ that is the publication's
    own (a partial its overrides include)."""
    overrides = Layer(root / OVERRIDES, OVERRIDES)
    theirs = set(theme_files())
    states = []
    for name in sorted(theirs):
        if not overrides.has(name):
            states.append((name, "theme"))
        elif name == STRINGS_FILE:
            states.append((name, f"theme, with {overrides.where(name)} merged over it"))
        else:
            states.append((name, f"{overrides.where(name)} (overrides the theme's)"))
    own = [name for name in overrides.files() if name not in theirs and name != "README.md"]
    states.extend((name, f"{overrides.where(name)} (yours; not in the theme)") for name in own)
    return states


def _theme_name(name: str, known: list[str]) -> list[str]:
    """The theme files NAME means: itself, or every file of a folder (`web`, `static`); a prefix templates/ or
    theme/ is allowed. Unknown: one line with the nearest names."""
    name = name.strip().removeprefix("./")
    for prefix in ("templates/", "theme/"):
        name = name.removeprefix(prefix)
    if name in known:
        return [name]
    inside = [n for n in known if n.startswith(name.rstrip("/") + "/")]
    if inside and name:
        return inside
    same_file = [n for n in known if Path(n).name == Path(name).name]
    nearest = [*same_file, *(n for n in difflib.get_close_matches(name, known, n=3, cutoff=0.5) if n not in same_file)]
    hint = f"did you mean {', '.join(repr(n) for n in nearest[:3])}? " if nearest else ""
    unknown = f"{name!r} is not a file of the theme"
    raise NewsletterError("templates copy", unknown, f"{hint}see newsletter templates list")


def copy_templates(root: Path, names: list[str], *, force: bool = False) -> list[str]:
    """Copy theme files into the publication's templates/ to change them; nothing is copied unless every name
    is known and, without force, none would replace a file. Returns the files written."""
    known = theme_files()
    chosen = list(dict.fromkeys(n for name in names for n in _theme_name(name, known)))
    folder = root / OVERRIDES
    if not force:
        taken = [name for name in chosen if os.path.lexists(folder / name)]
        if taken:
            more = f" and {len(taken) - 1} more" if len(taken) > 1 else ""
            raise NewsletterError(
                f"{OVERRIDES}/{taken[0]}{more}", "already exists", "pass --force to replace it with the theme's"
            )
    for name in chosen:
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(f".{target.name}.copy-{os.getpid()}")
        shutil.copyfile(THEME_DIR / name, staged)
        os.replace(staged, target)  # never writes through a FIFO or a link left where the file was
    return [f"{OVERRIDES}/{name}" for name in chosen]


@click.group()
def templates() -> None:
    """The theme's files: which the publication's templates/ overrides, and copying one there to change it."""


@templates.command("list")
@click.pass_context
@_one_line_errors
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
@_one_line_errors
def templates_copy(ctx: click.Context, names: tuple[str, ...], everything: bool, force: bool) -> None:
    """Copy theme files (NAME: a file or a folder such as web) into templates/ to change them.

    Example: newsletter templates copy email.mjml.j2 static/style.css
    """
    if not names and not everything:
        raise click.UsageError("name the files to copy (newsletter templates list shows them), or pass --all")
    root = _publication_root(ctx)
    for path in copy_templates(root, theme_files() if everything else list(names), force=force):
        click.echo(f"Copied theme/{path.removeprefix(OVERRIDES + '/')} to {path}")
