"""Load the templates (Jinja2) and the wording: the packaged theme, overridden file by file by the publication.

The theme ships in `newsletter/theme/`. A publication's `templates/` holds only the files it changes: each one
replaces the theme's file of the same name (`templates/static/x` the theme's `static/x`), and its `strings.toml`
replaces the theme's wording key by key, per language. `{% extends "theme/NAME" %}` reaches the theme's own
file from an override of NAME. Errors name the real file: `templates/NAME:line` or `theme/NAME:line`.

A file of templates/ that is a symbolic link (itself, or through a linked folder) is used only when it leads to a
file inside the publication: one that leads out (to /etc/passwd, a runner's secrets) is refused, never read, so a
pull request cannot publish the files of the machine that builds it.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import hashlib
import os
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from ..config import CONFIG_FILE, Settings
from ..errors import ConfigError, TemplateError
from ..files import read_regular_file

THEME_DIR = Path(__file__).resolve().parent.parent / "theme"
THEME = "theme"  # how messages name the theme's files: theme/page.html.j2
OVERRIDES = "templates"  # and the publication's: templates/page.html.j2
THEME_PREFIX = "theme/"  # a template name that always means the theme's file, past any override
STRINGS_FILE = "strings.toml"
BASE_WORDING = "en"  # the theme's language whose wording fills any key another language's table lacks
FILE_LIMIT = 1_000_000  # bytes of a template, strings.toml or email.css; the theme's largest is about 7 KB


@dataclass(frozen=True)
class Layer:
    """One folder of templates and what messages call it (`templates` or `theme`)."""

    folder: Path
    label: str
    confine: Path | None = None  # the (resolved) folder every file must lead into; None for the packaged theme

    def where(self, name: str) -> str:
        return f"{self.label}/{name}"

    def checked(self, path: Path, where: str) -> Path:
        """`path`, after refusing it if a symbolic link on its way leads outside `confine`."""
        if self.confine is None or not os.path.lexists(path):
            return path
        target = path.resolve()
        if not target.is_relative_to(self.confine):
            raise TemplateError(
                where,
                f"leads through a symbolic link to {target}, outside the publication",
                "copy the file into the publication, or remove the link",
            )
        return path

    def sub(self, name: str) -> Layer:
        """The layer of a folder inside this one (`static`), under the same confinement."""
        return Layer(self.folder / name, f"{self.label}/{name}", self.confine)

    def has(self, name: str) -> bool:
        return os.path.lexists(self.folder / name)

    def files(self) -> Iterator[str]:
        """The relative name of every file in the folder (posix), sorted."""
        if not self.folder.is_dir():
            return iter(())
        found = (p for p in self.folder.rglob("*") if "__pycache__" not in p.parts and not p.is_dir())
        return iter(sorted(p.relative_to(self.folder).as_posix() for p in found))


THEME_LAYER = Layer(THEME_DIR, THEME)


def theme_files() -> list[str]:
    """Every file of the packaged theme, by the name an override takes (`page.html.j2`, `static/style.css`)."""
    return list(THEME_LAYER.files())


@dataclass(frozen=True)
class Templates:
    """The Jinja environments (HTML autoescaped, text not), the merged wording and a digest of both layers."""

    html: jinja2.Environment
    text: jinja2.Environment
    strings: Mapping[str, Mapping[str, Any]]  # each language's merged table, as the files give it
    layers: tuple[Layer, ...]  # the publication's templates/ first, then the theme
    digest: str  # changes whenever any file of either layer changes
    wording: Mapping[str, Mapping[str, Any]]  # lower-cased language tag → its wording, gaps filled

    def strings_for(self, lang: str, default: str) -> Mapping[str, Any]:
        """The wording (`t`) for `lang` (a configured language, or one the wording has), else the default's."""
        found = self.wording.get(lang.lower())
        if found is None:
            found = wording_of(lang, self.strings) or self.wording.get(default.lower())
        return found or {}

    def layer_of(self, name: str) -> Layer:
        """The layer whose file `name` is used: the publication's when it overrides the theme's."""
        if name.startswith(THEME_PREFIX):
            return THEME_LAYER
        return next((layer for layer in self.layers if layer.has(name)), self.layers[-1])

    def where(self, name: str) -> str:
        """How messages name the file used for `name`: `templates/NAME` or `theme/NAME`."""
        layer = self.layer_of(name)
        return layer.where(name.removeprefix(THEME_PREFIX) if layer is THEME_LAYER else name)

    def read(self, name: str) -> str:
        """The text of a non-template file (such as email.css), the publication's if it has one."""
        layer = self.layer_of(name)
        return read_template_file(layer.checked(layer.folder / name, layer.where(name)), layer.where(name))

    def static_files(self) -> list[tuple[str, Path, str]]:
        """(name under static/, file, how to name it) of the merged static/ folders: an override wins."""
        merged: dict[str, tuple[Path, str]] = {}
        for layer in reversed(self.layers):
            static = layer.sub("static")
            for name in static.files():
                merged[name] = (static.checked(static.folder / name, static.where(name)), static.where(name))
        return [(name, *merged[name]) for name in sorted(merged)]

    def template_names(self) -> list[str]:
        """Every template (.j2) of the theme and of the publication's templates/."""
        return sorted({name for layer in self.layers for name in layer.files() if name.endswith(".j2")})

    def environment(self, name: str) -> jinja2.Environment:
        return self.text if name.endswith((".txt.j2", ".md.j2")) else self.html

    def compile(self, name: str) -> None:
        """Load and compile template `name`; a failure becomes a TemplateError naming file and line."""
        try:
            self.environment(name).get_template(name)
        except jinja2.TemplateError as err:
            raise self._error(err, name) from None

    def preload(self, *names: str) -> None:
        """Compile templates now (before worker processes fork, so each does not compile them again)."""
        for name in names:
            self.compile(name)

    def render(self, name: str, **context: Any) -> str:
        """Render template `name`; a Jinja failure becomes a TemplateError naming file and line."""
        try:
            return self.environment(name).get_template(name).render(**context)
        except (jinja2.TemplateError, TypeError, ValueError, KeyError, AttributeError) as err:
            raise self._error(err, name) from None

    def _error(self, err: BaseException, name: str) -> TemplateError:
        if isinstance(err, jinja2.TemplateSyntaxError):
            where = self._label(err.filename) or self.where(err.name or name)
            return TemplateError(f"{where}:{err.lineno}", err.message or "syntax error", self._hint(where))
        if isinstance(err, jinja2.TemplateNotFound):
            missing = f"{err.name!r} is neither in templates/ nor in the theme"
            return TemplateError(self.where(name), missing, "see newsletter templates list")
        raised_in, line = self._raised_at(err)
        where = raised_in or self.where(name)
        return TemplateError(f"{where}:{line}", f"{type(err).__name__}: {err}", self._hint(where))

    def _label(self, filename: str | None) -> str | None:
        """`templates/NAME` or `theme/NAME` for a file of one of the layers."""
        if not filename:
            return None
        path = Path(filename)
        for layer in self.layers:
            if path.is_relative_to(layer.folder):
                return layer.where(path.relative_to(layer.folder).as_posix())
        return None

    def _raised_at(self, err: BaseException) -> tuple[str | None, int]:
        """The last template file and line in `err`'s traceback (Jinja maps frames to template files)."""
        found: tuple[str | None, int] = (None, 0)
        tb = err.__traceback__
        while tb is not None:
            label = self._label(tb.tb_frame.f_code.co_filename)
            if label:
                found = (label, tb.tb_lineno)
            tb = tb.tb_next
        return found

    @staticmethod
    def _hint(where: str) -> str:
        if where.startswith(THEME_PREFIX):
            name = where[len(THEME_PREFIX) :].split(":")[0]
            return f"check what your overrides give it, or change it: newsletter templates copy {name}"
        return "fix the template"


def read_template_file(path: Path, where: str) -> str:
    """The UTF-8 text of a template file; anything but a regular file is refused unread."""
    try:
        raw = read_regular_file(path, where, limit=FILE_LIMIT, fail=TemplateError)
    except FileNotFoundError:
        raise TemplateError(where, "not found", "restore it, or remove the override to use the theme's") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise TemplateError(where, f"byte 0x{raw[err.start]:02x} is not UTF-8", "save the file as UTF-8") from None


class _LayeredLoader(jinja2.BaseLoader):
    """Each template from the first layer that has it (`theme/NAME` from the theme only). A template that is
    not a regular file (a FIFO, a device, a folder) or is over FILE_LIMIT is refused with a TemplateError
    naming it, instead of blocking or reading "not found"."""

    def __init__(self, layers: tuple[Layer, ...]) -> None:
        self.layers = layers

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        pieces = jinja2.loaders.split_template_path(template)  # refuses .. and the like
        layers = self.layers
        if pieces[0] == THEME and len(pieces) > 1:
            pieces, layers = pieces[1:], (THEME_LAYER,)
        name = "/".join(pieces)
        for layer in layers:
            filename = os.path.join(layer.folder, *pieces)
            if os.path.lexists(filename):
                text = read_template_file(layer.checked(Path(filename), layer.where(name)), layer.where(name))
                mtime = os.path.getmtime(filename)
                return text, os.path.normpath(filename), functools.partial(_unchanged, filename, mtime)
        raise jinja2.TemplateNotFound(template)


def _unchanged(filename: str, mtime: float) -> bool:
    try:
        return os.path.getmtime(filename) == mtime
    except OSError:
        return False


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


def _read_strings(layer: Layer) -> dict[str, dict[str, Any]]:
    """The wording tables of one layer's strings.toml ({} when the publication has none)."""
    if layer is not THEME_LAYER and not layer.has(STRINGS_FILE):
        return {}
    where = layer.where(STRINGS_FILE)
    try:
        document = tomllib.loads(read_template_file(layer.checked(layer.folder / STRINGS_FILE, where), where))
    except tomllib.TOMLDecodeError as err:
        raise TemplateError(where, f"is not valid TOML: {err}", "fix the syntax") from None
    for lang, table in document.items():
        if not isinstance(table, dict):
            raise TemplateError(
                where, f"{lang!r} is not a table of wording", f"write the keys of a language under [{lang}]"
            )
    return {lang.lower(): table for lang, table in document.items()}


def merge_strings(layers: tuple[Layer, ...]) -> dict[str, dict[str, Any]]:
    """Each language's wording: the theme's, with the publication's keys over it."""
    merged: dict[str, dict[str, Any]] = {}
    for layer in reversed(layers):
        for lang, table in _read_strings(layer).items():
            merged[lang] = {**merged.get(lang, {}), **table}
    return merged


def wording_of(code: str, strings: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """The wording of language `code`: its table over its primary language's (`en-GB` over `en`), over the
    theme's English for any key both lack; None when neither table exists."""
    code = code.lower()
    primary = code.split("-", 1)[0]
    if code not in strings and primary not in strings:
        return None
    return {**strings.get(BASE_WORDING, {}), **strings.get(primary, {}), **strings.get(code, {})}


def likely_language(code: str, known: list[str]) -> str | None:
    """The known language an editor most likely meant: the usual one of a region code (`kr` → `ko`), or the
    nearest by spelling that starts with the same letter (`eng` → `en`, but `de` is not `en`)."""
    import langcodes  # only on this error path

    region = code.upper()
    private = region == "AA" or region == "ZZ" or "QM" <= region <= "QZ" or "XA" <= region <= "XZ"
    if len(code) == 2 and code.isalpha() and not private and langcodes.tag_is_valid(f"und-{region}"):
        likely = langcodes.Language.get(f"und-{region}").maximize().language
        if likely in known:
            return likely
    same_start = [lang for lang in known if lang[:1] == code[:1].lower()]
    close = difflib.get_close_matches(code.lower(), same_start, n=1, cutoff=0.5)
    return close[0] if close else None


def _check_languages(settings: Settings, strings: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse a configured language that has no wording, naming the settings key that configures it."""
    known = sorted(strings)
    for key, code in [("language", settings.language), *(("languages", code) for code in settings.languages)]:
        if wording_of(code, strings) is not None:
            continue
        add = f"add a [{code}] table to templates/{STRINGS_FILE}"
        nearest = likely_language(code, known)
        hint = f"did you mean {nearest!r}? or {add}" if nearest else f"{add}; the theme has {', '.join(known)}"
        raise ConfigError(f"{CONFIG_FILE} [tool.newsletter] {key}", f"{code!r} has no wording in the theme", hint)


def _digest(layers: tuple[Layer, ...]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for layer in layers:
        for name in layer.files():
            path = layer.checked(layer.folder / name, layer.where(name))
            if path.is_file():
                digest.update(f"{layer.label}/{name}\0".encode())
                digest.update(path.read_bytes())
                digest.update(b"\0")
    return digest.hexdigest()


def load_templates(settings: Settings) -> Templates:
    """The theme with the publication's overrides over it; errors name the file (or the settings key)."""
    folder = settings.templates_dir
    if os.path.lexists(folder) and not folder.is_dir():
        raise TemplateError(f"{OVERRIDES}/", "is not a folder", "make it a folder of the files you override")
    layers = (Layer(folder, OVERRIDES, settings.root.resolve()), THEME_LAYER)
    strings = merge_strings(layers)
    _check_languages(settings, strings)
    wording = {code.lower(): wording_of(code, strings) or {} for code in settings.all_languages}
    loader = _LayeredLoader(layers)
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
    return Templates(html, text, strings, layers, _digest(layers), wording)
