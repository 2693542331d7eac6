"""What every archive page's template gets: `site` (the publication in one language), `page` (this page's
canonical URL, language versions and Open Graph data), `t` (the wording) and the `url` and `tag_path` helpers."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from ..config import Settings
from .templates import Templates
from .urls import lang_prefix, relative_url, tag_path


class Fields(dict[str, Any]):
    """A dict whose keys a template reads as attributes (`page.title`) without the AttributeError that Jinja's
    getattr otherwise raises and catches on each such read of a plain dict: a tenth of rendering a page. A key
    named like a dict method (`items`) still reads as the method, as it does on a plain dict."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class PageContexts:
    """Template contexts of one publication's pages."""

    def __init__(self, settings: Settings, templates: Templates) -> None:
        self.settings = settings
        self.templates = templates
        self.wording: dict[str, Fields] = {}

    def strings(self, lang: str) -> Fields:
        """The wording of `lang` (the default language's where it has none)."""
        found = self.wording.get(lang)
        if found is None:
            found = self.wording[lang] = Fields(self.templates.strings_for(lang, self.settings.language))
        return found

    def site(self, lang: str) -> Fields:
        s = self.settings
        prefix = lang_prefix(lang, s)
        wording = s.for_language(lang)
        return Fields(
            {
                "title": wording.title,
                "description": wording.description,
                "base_url": s.base_url,
                "postal_address": s.postal_address,
                "is_default": lang == s.language,
                "home": prefix,
                "tags_index": f"{prefix}tags/",
                "atom_path": f"{prefix}feed.xml",
                "rss_path": f"{prefix}rss.xml",
                "atom_url": s.url(f"{prefix}feed.xml"),
                "rss_url": s.url(f"{prefix}rss.xml"),
                "og_image": s.url("static/og-image.png"),
                "search_path": f"{prefix}search/" if s.search else "",
                "subscribe_url": s.app("subscribe"),  # the web app's sign-up, on app_url (may be another host)
                "languages": [(code, self.strings(code).get("language_name", code)) for code in s.all_languages],
            }
        )

    def page(
        self,
        lang: str,
        path: str,
        title: str,
        description: str,
        versions: Sequence[tuple[str, str]],
        og_type: str = "website",
        published: str = "",
        tag: str = "",
    ) -> dict[str, Any]:
        """Context for the page at site folder `path`; `versions` are (lang, path) of each language version."""
        s = self.settings
        t = self.strings(lang)
        others = [(v_lang, v_path) for v_lang, v_path in versions if v_lang != lang]
        default_path = next((p for v_lang, p in versions if v_lang == s.language), None)
        translated = len(versions) > 1
        page = Fields(
            {
                "lang": lang,
                "title": title,
                "description": description,
                "canonical": s.url(path),
                "alternates": [Fields(lang=v_lang, href=s.url(v_path)) for v_lang, v_path in versions]
                if translated
                else [],
                "x_default": s.url(default_path) if translated and default_path is not None else "",
                "og_type": og_type,
                "og_locale_alternates": [self.strings(v_lang).get("og_locale", v_lang) for v_lang, _ in others],
                "published": published,
                "switch": [
                    Fields(lang=v_lang, path=v_path, name=self.strings(v_lang).get("language_name", v_lang))
                    for v_lang, v_path in others
                ],
                "tag": tag,
                "tag_feed": s.url(tag_path(tag, lang, s) + "feed.xml") if tag else "",
            }
        )
        folder = path if path.endswith("/") or not path else path.rsplit("/", 1)[0] + "/" if "/" in path else ""
        return {
            "site": self.site(lang),
            "page": page,
            "t": t,
            "url": functools.partial(relative_url, from_dir=folder),
            "tag_path": functools.partial(tag_path, lang=lang, settings=s),
        }
