"""The theme's files as a publication sees them: which of them its templates/ overrides, and copying one there
to change it. The theme's folder and the override rules are render/templates.py's; no printing here.
"""

from __future__ import annotations

import difflib
import os
import shutil
from pathlib import Path

from .errors import NewsletterError
from .render.templates import OVERRIDES, STRINGS_FILE, THEME_DIR, THEME_PREFIX, Layer, theme_files


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


def _theme_names(name: str, known: list[str]) -> list[str]:
    """The theme files NAME means: itself, or every file of a folder (`web`, `static`); a prefix templates/ or
    theme/ is allowed. Unknown: one line with the nearest names."""
    name = name.strip().removeprefix("./")
    for prefix in (f"{OVERRIDES}/", THEME_PREFIX):
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
    chosen = list(dict.fromkeys(n for name in names for n in _theme_names(name, known)))
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
