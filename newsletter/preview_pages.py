"""The preview server's own pages: the index of issues and, per edition, the email at 375 and 600 px, the text
part and the archive page, each in frames under a bar, reloading itself when what it shows changes."""

from __future__ import annotations

import datetime as dt
import json
from html import escape

from .preview_state import Entry, Failure, PreviewState
from .time_words import on_clock

VIEWS = {"": "Email", "text": "Text part", "archive": "Archive page"}  # view (the path after the edition) → name
WIDTHS = (375, 600)  # the email's frames: a phone, and the width email clients give a message on a desktop

STYLE = """
  body { font: 15px/1.5 system-ui, sans-serif; margin: 0; color: #1f2328; background: #f6f8fa; }
  header { display: flex; flex-wrap: wrap; gap: 4px 16px; align-items: baseline; padding: 10px 16px;
           background: #fff; border-bottom: 1px solid #d0d7de; }
  header h1 { font-size: 16px; margin: 0; }
  nav a, nav strong { margin-right: 10px; }
  main { padding: 16px; }
  .error { font-family: ui-monospace, monospace; color: #82071e; background: #ffebe9; border: 1px solid #ff818266;
           padding: 8px 12px; margin: 0 0 12px; white-space: pre-wrap; overflow-wrap: anywhere; }
  .frames { display: flex; gap: 24px; align-items: flex-start; flex-wrap: wrap; }
  figure { margin: 0; }
  figcaption { font-size: 13px; color: #59636e; }
  iframe { border: 1px solid #d0d7de; background: #fff; height: 600px; display: block; }
  iframe.wide { width: 100%; }
  iframe.dark { color-scheme: dark; background: #0d1117; }
  .mark { font-size: 12px; border-radius: 10px; padding: 1px 8px; background: #ddf4ff; margin-left: 6px; }
  .mark.draft { background: #fff8c5; }
  .mark.error { background: #ffebe9; }
  li { margin: 4px 0; }
"""

RELOAD = """
<script>
(() => {
  const slug = %(slug)s;  // reload on a change of this issue, or (null) on any change
  const key = "preview-scroll:" + location.pathname + location.search;
  const kept = Number(sessionStorage.getItem(key) || 0);
  sessionStorage.removeItem(key);
  history.scrollRestoration = "manual";
  const frames = Array.from(document.querySelectorAll("iframe"));
  let waiting = frames.length;
  const fit = (frame) => {  // the frame as tall as its page: no scroll bar inside takes from its width
    const root = frame.contentDocument && frame.contentDocument.documentElement;
    if (root) frame.style.height = root.scrollHeight + "px";
    if (--waiting <= 0) window.scrollTo(0, kept);
  };
  frames.forEach((frame) => {
    const loaded = frame.contentDocument && frame.contentDocument.readyState === "complete"
      && frame.contentDocument.URL !== "about:blank";
    if (loaded) fit(frame); else frame.addEventListener("load", () => fit(frame), { once: true });
  });
  if (!frames.length) window.scrollTo(0, kept);
  const source = new EventSource("/events?since=%(version)d");
  source.addEventListener("change", (event) => {
    const change = JSON.parse(event.data);
    if (slug !== null && change.slugs !== null && !change.slugs.includes(slug)) return;
    source.close();
    sessionStorage.setItem(key, String(window.scrollY));
    location.reload();
  });
})();
</script>"""


def _page(title: str, header: str, body: str, *, version: int, slug: str | None, lang: str = "en") -> str:
    script = RELOAD % {"slug": json.dumps(slug), "version": version}
    return (
        f'<!doctype html>\n<html lang="{escape(lang)}">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)} · preview</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<header>{header}</header>\n<main>\n{body}\n</main>{script}\n</body>\n</html>\n"
    )


def _error(failure: Failure) -> str:
    return f'<p class="error" role="alert">{escape(failure)}</p>'


def _marks(entry: Entry, lang: str, now: dt.datetime, state: PreviewState) -> str:
    parsed = entry.editions[lang]
    if isinstance(parsed, Failure):
        return '<span class="mark error">error</span>'
    marks = []
    if parsed.draft:
        marks.append('<span class="mark draft">draft</span>')
    if entry.published is not None and entry.published > now and state.settings is not None:
        due = on_clock(entry.published, state.settings.timezone)
        marks.append(f'<span class="mark">not yet due: {escape(due)}</span>')
    if entry.error:
        marks.append('<span class="mark error">error</span>')
    return "".join(marks)


def index_page(state: PreviewState, now: dt.datetime) -> str:
    """Every issue, newest first, with its editions: drafts, issues not yet due and files that fail marked."""
    with state.lock:
        title = state.settings.title if state.settings else "newsletter"
        parts = [_error(state.error)] if state.error else []
        parts += [_error(failure) for failure in state.unplaced]
        items = []
        for entry in state.entries.values():
            editions = []
            for lang, parsed in entry.editions.items():
                shown = parsed if isinstance(parsed, Failure) else parsed.title
                link = f'<a href="/issues/{escape(entry.slug)}/{escape(lang)}/">{escape(lang)}</a>'
                editions.append(f"<li>{link} {escape(shown)}{_marks(entry, lang, now, state)}</li>")
            error = _error(entry.error) if entry.error else ""
            items.append(f"<li><strong>{escape(entry.slug)}</strong>{error}<ul>{''.join(editions)}</ul></li>")
        if items:
            parts.append(f'<ul class="issues">{"".join(items)}</ul>')
        elif not state.error:
            parts.append("<p>issues/ has no issue yet (newsletter new TITLE writes one).</p>")
        header = f"<h1>{escape(title)}</h1><span>{len(state.entries)} issue(s), drafts and future ones too</span>"
        return _page(title, header, "\n".join(parts), version=state.version, slug=None)


def edition_page(state: PreviewState, slug: str, lang: str, view: str, dark: bool) -> str:
    """One view (VIEWS) of edition (slug, lang), or the one-line error that stops it."""
    with state.lock:
        version = state.version
        entry = state.entries[slug]
        parsed = entry.editions[lang]
        title = parsed.title if not isinstance(parsed, Failure) else slug
        others = [
            f'<a href="/issues/{escape(slug)}/{escape(other)}/{view}">{escape(other)}</a>'
            if other != lang
            else f"<strong>{escape(other)}</strong>"
            for other in entry.editions
        ]
    tabs = [
        f"<strong>{name}</strong>"
        if key == view
        else f'<a href="/issues/{escape(slug)}/{escape(lang)}/{key}">{name}</a>'
        for key, name in VIEWS.items()
    ]
    if view == "":
        scheme = "?scheme=dark" if dark else ""
        toggle = "?" if dark else "?scheme=dark"
        tabs.append(f'<a href="{toggle}" id="scheme">{"Light" if dark else "Dark"} mode</a>')
    header = f'<a href="/">All issues</a><h1>{escape(title)}</h1><nav>{"".join(others)}</nav><nav>{"".join(tabs)}</nav>'
    problem = state.email(slug, lang) if view in ("", "text") else state.archive(slug, lang)
    if isinstance(problem, Failure):
        body = _error(problem)
    elif view == "":
        cls = ' class="dark"' if dark else ""
        frames = [
            f'<figure><figcaption>{width} px</figcaption><iframe src="email.html{scheme}" width="{width}"{cls}'
            f' title="The email at {width} px"></iframe></figure>'
            for width in WIDTHS
        ]
        body = f'<div class="frames">{"".join(frames)}</div>'
    elif view == "text":
        body = '<iframe class="wide" src="email.txt" title="The text part"></iframe>'
    else:
        assert state.settings is not None
        page_path = escape(_page_path(state, slug, lang))
        body = f'<iframe class="wide" src="/site/{page_path}" title="The archive page"></iframe>'
    return _page(title, header, body, version=version, slug=slug, lang=lang)


def _page_path(state: PreviewState, slug: str, lang: str) -> str:
    entry = state.entries[slug]
    assert entry.issue is not None
    edition = entry.issue.edition(lang)
    assert edition is not None
    return edition.page_path


def not_found_page(state: PreviewState, what: str) -> str:
    """The answer for a path the preview has nothing at."""
    body = _error(state.error) if state.error else ""  # the settings or templates fail: nothing can be found
    body += f"<p>{escape(what)}</p><p><a href='/'>All issues</a></p>"
    return _page("Not found", "<h1>Not found</h1>", body, version=state.version, slug=None)
