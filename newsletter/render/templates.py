"""Load the editor-owned templates (Jinja2) and UI strings, and turn their failures into TemplateErrors.

Templates live in `<publication>/templates/`; the UI wording per language in `templates/strings.toml`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import posixpath
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from ..config import Settings
from ..errors import TemplateError
from ..files import read_regular_file

STRINGS_FILE = "strings.toml"
FILE_LIMIT = 1_000_000  # bytes of a template, strings.toml or email.css; the sample's largest is about 10 KB
REQUIRED_TEMPLATES = (
    "email.mjml.j2",
    "email.txt.j2",
    "entry.html.j2",
    "page.html.j2",
    "index.html.j2",
    "tag.html.j2",
    "tags.html.j2",
    "404.html.j2",
    "issue.md.j2",
    "pagination.html.j2",
)


@dataclass(frozen=True)
class Templates:
    """The Jinja environments (HTML autoescaped, text not), the UI strings and a digest of it all."""

    html: jinja2.Environment
    text: jinja2.Environment
    strings: Mapping[str, Mapping[str, Any]]
    folder: Path
    digest: str  # changes whenever any template or string changes

    def strings_for(self, lang: str, default: str) -> Mapping[str, Any]:
        return self.strings.get(lang) or self.strings.get(default) or {}

    def read(self, name: str) -> str:
        """The text of a non-template file in the templates folder (such as email.css)."""
        return read_template_file(self.folder / name, f"templates/{name}")

    def preload(self, *names: str) -> None:
        """Compile templates now (before worker processes fork, so each does not compile them again)."""
        for name in names:
            try:
                self.html.get_template(name)
            except jinja2.TemplateSyntaxError as err:
                raise TemplateError(
                    f"templates/{err.name or name}:{err.lineno}", err.message or "syntax error", "fix the template"
                ) from None
            except jinja2.TemplateNotFound as err:
                raise TemplateError(
                    f"templates/{err.name}", "template not found", "restore it from the sample"
                ) from None

    def render(self, name: str, **context: Any) -> str:
        """Render template `name`; a Jinja failure becomes a TemplateError naming file and line."""
        env = self.text if name.endswith(".txt.j2") or name.endswith(".md.j2") else self.html
        try:
            return env.get_template(name).render(**context)
        except jinja2.TemplateSyntaxError as err:
            raise TemplateError(
                f"templates/{err.name or name}:{err.lineno}", err.message or "syntax error", "fix the template"
            ) from None
        except jinja2.TemplateNotFound as err:
            raise TemplateError(f"templates/{err.name}", "template not found", "restore it from the sample") from None
        except (jinja2.TemplateError, TypeError, ValueError, KeyError, AttributeError) as err:
            where = f"templates/{name}:{_template_line(err, self.folder)}"
            raise TemplateError(where, f"{type(err).__name__}: {err}", "fix the template") from None


def read_template_file(path: Path, where: str) -> str:
    """The UTF-8 text of a file in the templates folder; anything but a regular file is refused unread."""
    try:
        raw = read_regular_file(path, where, limit=FILE_LIMIT, fail=TemplateError)
    except FileNotFoundError:
        raise TemplateError(where, "not found", "restore it from the sample") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise TemplateError(where, f"byte 0x{raw[err.start]:02x} is not UTF-8", "save the file as UTF-8") from None


class _TemplateLoader(jinja2.FileSystemLoader):
    """Jinja's file loader, but a template that is not a regular file (a FIFO, a device, a folder) or is over
    FILE_LIMIT is refused with a TemplateError naming it, instead of blocking or reading "not found"."""

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        pieces = jinja2.loaders.split_template_path(template)  # refuses .. and the like
        folder = self.searchpath[0]
        filename = posixpath.join(folder, *pieces)
        if not os.path.lexists(filename):
            raise jinja2.TemplateNotFound(template)
        text = read_template_file(Path(filename), f"templates/{'/'.join(pieces)}")
        mtime = os.path.getmtime(filename)
        return text, os.path.normpath(filename), lambda: _mtime(filename) == mtime


def _mtime(filename: str) -> float | None:
    try:
        return os.path.getmtime(filename)
    except OSError:
        return None


def _template_line(err: BaseException, folder: Path) -> int:
    """The last line inside a template file in `err`'s traceback (Jinja maps frames to templates)."""
    line = 0
    tb = err.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.startswith(str(folder)):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def format_date(value: dt.date, strings: Mapping[str, Any]) -> str:
    """A date in the wording of `strings` (`date_format` with {year} {month} {day} {month_name})."""
    months = strings.get("months") or []
    month_name = months[value.month - 1] if len(months) == 12 else str(value.month)
    pattern = strings.get("date_format", "{year}-{month:02d}-{day:02d}")
    return pattern.format(year=value.year, month=value.month, day=value.day, month_name=month_name)


def _bytecode_cache(settings: Settings) -> jinja2.BytecodeCache | None:
    """Compiled templates under .cache/jinja/ (keyed by source), so each run skips compiling."""
    folder = settings.root / ".cache" / "jinja"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(str(folder))


def load_templates(settings: Settings) -> Templates:
    """Read the templates folder; errors name the file."""
    folder = settings.templates_dir
    if not folder.is_dir():
        raise TemplateError(str(folder), "not found", "copy templates/ from the sample publication")
    strings_text = read_template_file(folder / STRINGS_FILE, f"templates/{STRINGS_FILE}")
    try:
        strings = tomllib.loads(strings_text)
    except tomllib.TOMLDecodeError as err:
        raise TemplateError(f"templates/{STRINGS_FILE}", f"is not valid TOML: {err}", "fix the syntax") from None
    digest = hashlib.blake2b(digest_size=16)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(folder).as_posix().encode())
            digest.update(path.read_bytes())
    loader = _TemplateLoader(str(folder))
    common: dict[str, Any] = {
        "loader": loader,
        "undefined": jinja2.StrictUndefined,
        "trim_blocks": True,
        "lstrip_blocks": True,
        "auto_reload": False,
        "bytecode_cache": _bytecode_cache(settings),
    }
    html = jinja2.Environment(autoescape=True, **common)
    text = jinja2.Environment(autoescape=False, keep_trailing_newline=True, **common)
    for env in (html, text):
        env.filters["format_date"] = format_date
    return Templates(html=html, text=text, strings=strings, folder=folder, digest=digest.hexdigest())
