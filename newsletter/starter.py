"""Start a publication: render `newsletter/scaffold/` with the editor's answers and put the files in a folder.

Nothing is half-written: init_publication renders every file into a staging folder, loads the settings it wrote
there (so a bad value is one line naming its key) and only then moves the files into place. No prompting and no
printing here: `newsletter init` (cli_init.py) asks and reports; errors are NewsletterError subclasses.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import tomllib
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import DISTRIBUTION, __version__
from .config import CONFIG_FILE, CONFIG_FILE_LIMIT, derived_list_id, load_settings
from .errors import ConfigError, NewsletterError
from .files import read_regular_file
from .render.templates import (
    OVERRIDES,
    STRINGS_FILE,
    THEME_DIR,
    THEME_LAYER,
    likely_language,
    load_templates,
    merge_strings,
    wording_of,
)

SCAFFOLD = Path(__file__).resolve().parent / "scaffold"
# scaffold folder → where its files go in the publication (github only with --ci github)
SCAFFOLD_TARGETS = {"publication": "", "deploy": "deploy/", "github": ".github/workflows/"}
CI_CHOICES = ("github",)
DOT_PREFIX = "dot-"  # a scaffold file named dot-gitignore is written as .gitignore (wheels drop dotfiles' globs)


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
        "list_id": derived_list_id(base_url),
        "language": new.languages[0],
        "languages": list(new.languages[1:]),  # the other languages, as in the settings
        "all_languages": list(new.languages),
        "from_address": new.from_address,
        "postal_address": new.postal_address,
        "timezone": new.timezone,
        "author": new.author,
        "date": today.isoformat(),
        "version": __version__,
        "package_spec": installed_from(),
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


def split_languages(values: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The language codes in `values` (each may hold several, split by commas or spaces), once each, in order."""
    codes = [code for value in values for code in re.split(r"[\s,]+", value) if code]
    return tuple(dict.fromkeys(codes))


def default_title(folder: Path) -> str:
    """A title from the folder's name (`weekly-notes` → `Weekly Notes`)."""
    words = re.split(r"[-_\s]+", folder.absolute().name)
    return " ".join(word.capitalize() for word in words if word) or "My Newsletter"


def installed_from() -> str:
    """What to pip install to get this very newsletter: where it came from when pip recorded a URL (PEP 610's
    direct_url.json: a git repository at its commit, or an archive), else the release `DISTRIBUTION==version`."""
    from importlib import metadata

    release = f"{DISTRIBUTION}=={__version__}"
    try:
        record = json.loads(metadata.distribution(DISTRIBUTION).read_text("direct_url.json") or "null")
    except (metadata.PackageNotFoundError, ValueError):
        return release
    if not isinstance(record, dict) or not str(record.get("url", "")).startswith("https://"):
        return release  # from an index, or from a folder on this machine, which a runner or container lacks
    vcs = record.get("vcs_info")
    if isinstance(vcs, dict) and vcs.get("vcs") == "git" and vcs.get("commit_id"):
        return f"{DISTRIBUTION} @ git+{record['url']}@{vcs['commit_id']}"
    return f"{DISTRIBUTION} @ {record['url']}" if "archive_info" in record else release
