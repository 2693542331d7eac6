"""Edition → RenderedEmail (subject, preheader, HTML, text): Jinja2 → MJML (mjml-python) → premailer.

Rendered once per edition, never per recipient: the unsubscribe URL is a placeholder that
messages.py fills per recipient. Links to the archive go to `base_url`, links to the web app (unsubscribe,
preferences, subscribe) to `app_url`. The table of contents links each paper to its anchor on the web page,
since anchors inside an email are unreliable across clients; so does the summary layout (`email_layout`), which
keeps each paper's first paragraph. Every link of a paper carries its SES link tag (`ses:tags="paper:…;"`), so
click events count per paper. Issue HTML is sanitised here so the email never
carries scripts, frames, forms or event handlers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import mjml
import nh3
from markupsafe import Markup
from premailer import Premailer

from ..config import Settings
from ..config_values import shown
from ..errors import ConfigError, TemplateError
from ..issues import Edition, read_body_source
from ..link_tags import link_attribute, tag_links
from ..markdown import Section, display_width, render_text, wrap
from ..tokens import TOKEN_LENGTH
from .templates import Templates

UNSUBSCRIBE_TOKEN = "__UNSUBSCRIBE_TOKEN__"  # ASCII and URL-safe: survives every renderer untouched
FONT_STACK = (
    "-apple-system, BlinkMacSystemFont, 'Apple SD Gothic Neo', 'Malgun Gothic', 'Noto Sans KR', "
    "'Noto Sans CJK KR', 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
)
PREHEADER_PADDING = "&#847;&zwnj;&nbsp;" * 60  # keeps clients from pulling body text into the preview
HTML_WARN_BYTES = 80_000
HTML_LIMIT_BYTES = 102_000  # Gmail clips larger HTML, hiding the footer with the unsubscribe link
FORBIDDEN_IN_EMAIL = ("<script", "<iframe", "<form", "<object", "<embed")


@dataclass(frozen=True)
class RenderedEmail:
    """One edition's email, ready for personalisation."""

    lang: str
    subject: str
    preheader: str
    html: str  # contains UNSUBSCRIBE_TOKEN
    text: str  # contains UNSUBSCRIBE_TOKEN
    archive_url: str

    @property
    def html_size(self) -> int:
        """Size of the HTML in bytes (what Gmail's clipping counts; Hangul is 3 bytes)."""
        return len(self.html.encode("utf-8"))


def unsubscribe_url(settings: Settings, token: str = UNSUBSCRIBE_TOKEN) -> str:
    """The one-click unsubscribe URL for `token` (the placeholder until a recipient is known), on the web app's
    host (`app_url`), which may differ from the archive's."""
    return settings.app(f"unsubscribe?token={token}")


def preferences_url(settings: Settings, token: str = UNSUBSCRIBE_TOKEN) -> str:
    """The subscriber's preferences page for `token` (the same token as the unsubscribe link), on the web app."""
    return settings.app(f"preferences?token={token}")


def subscribe_url(settings: Settings, lang: str) -> str:
    """The web app's sign-up page with `lang` chosen (for a reader the email was forwarded to)."""
    return settings.app(f"subscribe?lang={lang}")


def logo_url(settings: Settings, templates: Templates) -> str:
    """The masthead logo's absolute URL ("" for none); a static/ path must name a file the build publishes."""
    if settings.logo.startswith("static/"):
        name = settings.logo.removeprefix("static/")
        if name not in {found for found, _, _ in templates.static_files()}:
            raise ConfigError(
                "pyproject.toml [tool.newsletter] logo",
                f"{shown(settings.logo)} is neither in templates/static/ nor in the theme's static/",
                f"put the image at templates/{settings.logo}, or fix the path",
            )
    return settings.logo_url


def sanitise_email_html(fragment: str) -> str:
    """Keep ordinary markup; drop script, iframe, form, style, event handlers and javascript: URLs."""
    return nh3.clean(fragment, url_schemes={"http", "https", "mailto"}, link_rel=None)


def first_paragraph(fragment: str) -> str:
    """The first top-level paragraph of an HTML fragment (the summary layout's text of a paper); "" when it has
    none. Headings, lists and quotes before it are left out."""
    from lxml import html as lxml_html  # premailer loads it anyway

    if not fragment.strip():
        return ""
    for element in lxml_html.fragments_fromstring(fragment):
        if not isinstance(element, str) and element.tag == "p" and element.text_content().strip():
            element.tail = None
            return str(lxml_html.tostring(element, encoding="unicode"))
    return ""


def _sanitised_section(section: Section, archive_url: str) -> dict[str, object]:
    """A paper for the template; each of its links carries its SES link tag (link_tags.py), after sanitising."""
    html = sanitise_email_html(section.html)
    return {
        "anchor": section.anchor,
        "title": section.title,
        "html": Markup(tag_links(html, section.anchor)),
        "summary_html": Markup(tag_links(first_paragraph(html), section.anchor)),
        "ses_tag": Markup(link_attribute(section.anchor)),
        "url": f"{archive_url}#{section.anchor}",
        "tags": section.tags,
        "links": [link for link in section.links if link.url.startswith(("https://", "http://", "mailto:"))],
    }


TEXT_LINE = 78  # RFC 5322 §2.1.1: a line SHOULD stay within 78 characters (here: columns, as it looks)


def text_heading(text: str, underline: str) -> str:
    """A heading wrapped to the text part's width, underlined as wide as its widest line looks."""
    lines = wrap(text).split("\n")
    return "\n".join(lines) + "\n" + underline * max(map(display_width, lines))


def text_item(prefix: str, text: str) -> str:
    """`prefix` (`9. `, `Postal address: `) then `text` wrapped, its later lines indented under the text."""
    indent = " " * display_width(prefix)
    return prefix + wrap(text, indent=indent)[len(indent) :]


def text_labelled(label: str, url: str) -> str:
    """`label: url` on one line when it fits in TEXT_LINE columns (an unsubscribe URL counted with the token it
    will carry), else the URL on a line of its own (a URL cannot be wrapped)."""
    longer = TOKEN_LENGTH - len(UNSUBSCRIBE_TOKEN) if UNSUBSCRIBE_TOKEN in url else 0
    if display_width(f"{label}: {url}") + longer <= TEXT_LINE:
        return f"{label}: {url}"
    return f"{label}:\n{url}"


def render_email(edition: Edition, settings: Settings, templates: Templates) -> RenderedEmail:
    """Render one edition's email: HTML through MJML and premailer, and its plain-text part."""
    strings = templates.strings_for(edition.lang, settings.language)
    subject = edition.title
    if edition.advertisement:
        subject = f"{strings.get('ad_subject_prefix', '(광고)')} {subject}"
    archive_url = settings.url(edition.page_path)
    wording = settings.for_language(edition.lang)
    context = {
        "edition": edition,
        "site": {
            "title": wording.title,
            "description": wording.description,
            "postal_address": settings.postal_address,
            "base_url": settings.base_url,
            "app_url": settings.app_url or settings.base_url,
            "logo_url": logo_url(settings, templates),
            "logo_alt": wording.logo_alt or wording.title,
        },
        "t": strings,
        "archive_url": archive_url,
        "layout": settings.email_layout,
        "contents": [
            {"title": s.title, "url": f"{archive_url}#{s.anchor}", "ses_tag": Markup(link_attribute(s.anchor))}
            for s in edition.sections
        ],
        "unsubscribe_url": unsubscribe_url(settings),
        "preferences_url": preferences_url(settings),
        "subscribe_url": subscribe_url(settings, edition.lang),
        "font": FONT_STACK,
    }
    mjml_source = templates.render(
        "email.mjml.j2",
        **context,
        intro_html=Markup(sanitise_email_html(edition.body.intro_html)),
        sections=[_sanitised_section(s, archive_url) for s in edition.sections],
        preheader_padding=Markup(PREHEADER_PADDING),
    )
    try:
        html = mjml.mjml2html(mjml_source, disable_comments=True, fonts={})
    except (ValueError, RuntimeError) as err:
        raise TemplateError(
            "templates/email.mjml.j2", f"MJML could not be converted: {err}", "check that every mj- tag is closed"
        ) from None
    html = _inline_css(html, templates.read("email.css"))
    body_text = render_text(read_body_source(edition, settings))
    text = templates.render(
        "email.txt.j2",
        **context,
        heading=text_heading,
        item=text_item,
        labelled=text_labelled,
        wrapped=wrap,
        body_text=body_text,
        sections=list(zip(edition.sections, body_text.sections, strict=True)),
    )
    return RenderedEmail(
        lang=edition.lang,
        subject=subject,
        preheader=edition.summary,
        html=html,
        text=_tidy_text(text),
        archive_url=archive_url,
    )


def _inline_css(html: str, css: str) -> str:
    """Inline the editor's email.css with premailer; MJML's own <style> blocks stay in <head> as they are.

    Inlining MJML's resets (`table, td {…}`) would repeat them on every cell and double the size.
    premailer drops the doctype, so it is restored.
    """
    html = html.replace("<style", '<style data-premailer="ignore"')
    inliner = Premailer(
        html,
        css_text=css,
        allow_network=False,  # MJML may link web fonts; nothing is fetched at run time
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
        keep_style_tags=False,
        strip_important=False,
        remove_classes=False,
    )
    inlined = inliner.transform().replace(' data-premailer="ignore"', "")
    if not inlined.lstrip().lower().startswith("<!doctype"):
        inlined = "<!doctype html>\n" + inlined
    return inlined


def _tidy_text(text: str) -> str:
    """No trailing spaces, at most two blank lines in a row, one newline at the end."""
    lines = [line.rstrip() for line in text.splitlines()]
    tidy: list[str] = []
    for line in lines:
        if not line and len(tidy) >= 2 and not tidy[-1] and not tidy[-2]:
            continue
        tidy.append(line)
    return "\n".join(tidy).strip("\n") + "\n"


def email_problems(email: RenderedEmail) -> list[tuple[str, str]]:
    """(severity, message) pairs for what `check` reports: size against Gmail's clip, forbidden tags."""
    problems: list[tuple[str, str]] = []
    size = email.html_size
    if size > HTML_LIMIT_BYTES:
        problems.append(("error", f"email HTML is {size:,} bytes, over Gmail's ~102 KB clipping limit"))
    elif size > HTML_WARN_BYTES:
        problems.append(("warning", f"email HTML is {size:,} bytes, close to Gmail's ~102 KB clipping limit"))
    lowered = email.html.lower()
    for tag in FORBIDDEN_IN_EMAIL:
        if tag in lowered:
            problems.append(("error", f"email HTML contains {tag}>"))
    return problems
