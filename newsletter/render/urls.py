"""Where things live on the site, and relative URLs between them (so the site works from file:// and under
any base path). No I/O."""

from __future__ import annotations

import functools
from collections.abc import Container, Mapping
from urllib.parse import quote

from ..config import Settings
from ..tags import tag_segment


def lang_prefix(lang: str, settings: Settings) -> str:
    return "" if lang == settings.language else f"{lang}/"


def tag_slug(tag: str) -> str:
    """The path segment of a tag's page, the same for every spelling of the tag (newsletter.tags)."""
    return tag_segment(tag)


def tag_path(tag: str, lang: str, settings: Settings) -> str:
    return f"{lang_prefix(lang, settings)}tags/{tag_slug(tag)}/"


def tag_versions(tag: str, tagged_by_lang: Mapping[str, Container[str]], settings: Settings) -> list[tuple[str, str]]:
    """(language, tag page path) of each language that has issues with `tag`."""
    return [
        (code, tag_path(tag, code, settings)) for code in settings.all_languages if tag in tagged_by_lang.get(code, ())
    ]


@functools.lru_cache(maxsize=65536)
def _quoted(path: str) -> str:
    target, _, fragment = path.partition("#")
    url = quote(target, safe="/.-_~%")
    return f"{url}#{quote(fragment, safe='-_.~%')}" if fragment else url


def relative_url(target: str, from_dir: str) -> str:
    """URL of site path `target` as seen from the folder `from_dir` (both relative to the site root).

    Goes up to the root and down again (`../../tags/x/`), so it works from file:// and under any base path.
    """
    up = "../" * from_dir.count("/")
    return up + _quoted(target) if up or target else "./"


ROOT_MARK = "\x00site-root\x00"  # stands for the way to the site root in HTML rendered once for two places


def rooted_url(target: str) -> str:
    """URL of site path `target` from the site root, marked so that `resolve_root` can place it later."""
    return ROOT_MARK + _quoted(target)


def resolve_root(html: str, root: str) -> str:
    """`html` with each rooted_url made relative to a page (`root` = "../../") or absolute (the base URL)."""
    return html.replace(ROOT_MARK, root or "./")
