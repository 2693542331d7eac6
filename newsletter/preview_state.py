"""What the preview server shows: the publication's issues as their files say now, each page rendered once and
kept until a file it depends on changes, and the changes so far (for the reload signal).

An issue file's change re-parses that file and forgets only its issue's pages; a template or theme change
reloads the templates and forgets every page; a change of the settings file reloads everything. A file that
does not parse, or a page that does not render, is kept as its one-line error, and the rest goes on working.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .config import CONFIG_FILE, Settings, load_settings
from .errors import NewsletterError, one_line
from .issues import Edition, Issue, find_issue_files, group_editions, parse_issue, publication_instant, split_file_name
from .preview import PreviewEmail, archive_page, preview_email
from .render.templates import THEME_DIR, Templates, load_templates

log = logging.getLogger("newsletter.preview")
KEPT_CHANGES = 200  # changes remembered for a page that reconnects; one older than these reloads every page
Snapshot = dict[Path, tuple[int, int]]  # file → (mtime_ns, size)


@dataclass(frozen=True)
class Change:
    """One batch of changed files: the issues whose pages changed, or every page (`slugs` None)."""

    version: int
    slugs: frozenset[str] | None


@dataclass
class Entry:
    """One issue as the preview lists it: its editions by language (or each file's error), and the issue."""

    slug: str
    editions: dict[str, Edition | Failure] = field(default_factory=dict)  # lang → edition, or why its file fails
    issue: Issue | None = None  # the editions that parse, as one issue (None: they make none, see error)
    error: Failure | None = None  # why the editions that parse make no issue (group_editions)
    published: dt.datetime | None = None  # the issue's publication instant


class Failure(str):
    """What stops a page: its one-line error, `Error: <where>: <what> (<what to do>)`."""


def describe(err: BaseException) -> Failure:
    """An error as the one line the pages show."""
    if isinstance(err, NewsletterError):
        return Failure(f"Error: {err}")
    if isinstance(err, OSError):
        where, what = one_line(str(err.filename or "file system")), one_line(str(err.strerror or err))
        return Failure(f"Error: {where}: {what} (check the path and permissions)")
    return Failure(f"Error: {type(err).__name__}: {one_line(str(err))} (a bug: the server's log has the traceback)")


class PreviewState:
    """The preview's model; every method may be called from any thread."""

    def __init__(self, root: Path, load: Callable[[Path], Settings] = load_settings) -> None:
        self.root = root
        self._load = load
        self.lock = threading.Condition(threading.RLock())  # hold it to read several fields as of one moment
        self.version = 0
        self.closed = False
        self._changes: deque[Change] = deque(maxlen=KEPT_CHANGES)
        self.settings: Settings | None = None
        self.templates: Templates | None = None
        self.error: Failure | None = None  # the settings' or the templates' error: every page shows it
        self._files: dict[Path, Edition | Failure] = {}
        self.entries: dict[str, Entry] = {}
        self.unplaced: list[Failure] = []  # errors of issue files whose name gives no slug and language
        self._pages: dict[tuple[str, str, str], PreviewEmail | str | Failure] = {}  # (slug, lang, kind) → page
        self._snapshot: Snapshot = {}
        self._reload_all()

    # what is watched ---------------------------------------------------------

    def watched(self) -> list[Path]:
        """The folders and files whose changes matter (those that exist): issues, templates, theme, settings."""
        with self.lock:
            paths = [self.root / CONFIG_FILE, THEME_DIR]
            if self.settings is not None:
                paths += [self.settings.issues_dir, self.settings.templates_dir]
            return [path for path in paths if path.exists()]

    def snapshot(self) -> Snapshot:
        """Every watched file's mtime and size, to find what changed while no watcher ran."""
        found: Snapshot = {}
        for path in self.watched():
            for item in [path] if path.is_file() else path.rglob("*"):
                try:
                    stat = item.stat()
                except OSError:
                    continue
                if item.is_file():
                    found[item] = (stat.st_mtime_ns, stat.st_size)
        return found

    def resync(self) -> None:
        """Take in whatever changed since the files were last read (before the watcher started)."""
        now = self.snapshot()
        with self.lock:
            before = self._snapshot
        changed = {path for path in now.keys() | before.keys() if now.get(path) != before.get(path)}
        if changed:
            self.reload(changed)

    # changes -----------------------------------------------------------------

    def reload(self, paths: Iterable[Path]) -> Change | None:
        """Take in changed files: re-read what they affect and forget the pages made from them."""
        paths = {Path(path) for path in paths}
        with self.lock:
            if self.closed:
                return None
            settings = self.settings
            if settings is None or self.root / CONFIG_FILE in paths:
                self._reload_all()
                return self._changed(None)
            every_page = any(_under(path, settings.templates_dir) or _under(path, THEME_DIR) for path in paths)
            if every_page:
                self._reload_templates()
                self._pages.clear()
            issue_files = {path for path in paths if path.parent == settings.issues_dir and _is_issue_file(path)}
            touched = self._reparse(issue_files) if issue_files else frozenset()
            if not every_page:
                if not touched:
                    return None  # nothing any page is made from
                self._forget(touched)
            self._snapshot = self.snapshot()
            return self._changed(None if every_page else touched)

    def _changed(self, slugs: frozenset[str] | None) -> Change:
        self.version += 1
        change = Change(self.version, slugs)
        self._changes.append(change)
        self.lock.notify_all()
        return change

    def changes_since(self, version: int) -> Change | None:
        """The changes after `version` merged into one, or None if there are none yet."""
        with self.lock:
            if version >= self.version:
                return None
            kept = [change for change in self._changes if change.version > version]
            if len(kept) < self.version - version or any(change.slugs is None for change in kept):
                return Change(self.version, None)
            return Change(self.version, frozenset().union(*(change.slugs or () for change in kept)))

    def wait(self, version: int, seconds: float) -> Change | None:
        """The changes after `version`, waiting up to `seconds` for one (None: none came, or the server stops)."""
        with self.lock:
            self.lock.wait_for(lambda: self.closed or self.version > version, timeout=seconds)
            return None if self.closed else self.changes_since(version)

    def close(self) -> None:
        """Wake every waiting reload stream: the server stops."""
        with self.lock:
            self.closed = True
            self.lock.notify_all()

    # loading -----------------------------------------------------------------

    def _reload_all(self) -> None:
        self._pages.clear()
        self._files.clear()
        self.entries, self.unplaced = {}, []
        try:
            self.settings = self._load(self.root)
        except (NewsletterError, OSError) as err:
            self.settings, self.templates, self.error = None, None, describe(err)
            self._snapshot = self.snapshot()
            return
        self._reload_templates()
        self._reparse(set(find_issue_files(self.settings)))
        self._snapshot = self.snapshot()

    def _reload_templates(self) -> None:
        assert self.settings is not None
        try:
            self.templates, self.error = load_templates(self.settings), None
        except (NewsletterError, OSError) as err:
            self.templates, self.error = None, describe(err)

    def _reparse(self, paths: set[Path]) -> frozenset[str]:
        """Parse `paths` again (a missing one is forgotten); returns the slugs whose issue changed."""
        assert self.settings is not None
        touched: set[str] = set()
        for path in paths:
            old = self._files.pop(path, None)
            if isinstance(old, Edition):
                touched.add(old.slug)
            if not path.is_file():
                continue
            try:
                self._files[path] = parse_issue(path, self.settings)
            except (NewsletterError, OSError) as err:
                self._files[path] = describe(err)
            try:
                touched.add(split_file_name(path.name, self.settings)[0])
            except ValueError:
                pass
        self._regroup()
        return frozenset(touched)

    def _regroup(self) -> None:
        assert self.settings is not None
        settings = self.settings
        entries: dict[str, Entry] = {}
        unplaced: list[Failure] = []
        for path in sorted(self._files):
            parsed = self._files[path]
            try:
                slug, lang = split_file_name(path.name, settings)
            except ValueError as err:
                what, hint = err.args
                unplaced.append(Failure(f"Error: issues/{path.name}: {what} ({hint})"))
                continue
            entries.setdefault(slug, Entry(slug)).editions[lang] = parsed
        order = {lang: place for place, lang in enumerate(settings.all_languages)}
        for entry in entries.values():
            entry.editions = dict(sorted(entry.editions.items(), key=lambda item: order.get(item[0], len(order))))
            editions = [e for e in entry.editions.values() if isinstance(e, Edition)]
            failed = [e for e in entry.editions.values() if isinstance(e, Failure)]
            try:  # the editions that parse make the issue: a translation is shown while another file fails
                entry.issue = group_editions(editions, settings)[0] if editions else None
                entry.published = publication_instant(entry.issue, settings) if entry.issue else None
            except NewsletterError as err:  # when the default edition is among the failing, say why it fails
                entry.error = failed[0] if failed else describe(err)
        self.entries = dict(sorted(entries.items(), reverse=True))
        self.unplaced = unplaced

    def _forget(self, slugs: Iterable[str]) -> None:
        wanted = set(slugs)
        for key in [key for key in self._pages if key[0] in wanted]:
            del self._pages[key]

    # pages -------------------------------------------------------------------

    def knows(self, slug: str, lang: str) -> bool:
        """Whether issues/ has a file for edition (slug, lang), parsed or not."""
        with self.lock:
            entry = self.entries.get(slug)
            return entry is not None and lang in entry.editions

    def problem(self, slug: str, lang: str) -> Failure | None:
        """Why edition (slug, lang) cannot be shown now, if it cannot."""
        with self.lock:
            if self.error:
                return self.error
            entry = self.entries.get(slug)
            if entry is None:
                return None
            parsed = entry.editions.get(lang)
            if isinstance(parsed, Failure):
                return parsed
            return entry.error

    def email(self, slug: str, lang: str) -> PreviewEmail | Failure:
        """The edition's email for the sample subscriber, or what stops it."""
        page = self._page(slug, lang, "email")
        assert not isinstance(page, str) or isinstance(page, Failure)
        return page

    def archive(self, slug: str, lang: str) -> str | Failure:
        """The edition's archive page (HTML), or what stops it."""
        page = self._page(slug, lang, "archive")
        assert isinstance(page, str)
        return page

    def _page(self, slug: str, lang: str, kind: str) -> PreviewEmail | str | Failure:
        with self.lock:  # renders one page at a time: two iframes asking for one email render it once
            key = (slug, lang, kind)
            if key in self._pages:
                return self._pages[key]
            problem = self.problem(slug, lang)
            if problem:
                return problem
            entry = self.entries[slug]
            assert entry.issue is not None and entry.published is not None
            assert self.settings is not None and self.templates is not None
            edition = entry.issue.edition(lang)
            assert edition is not None
            page: PreviewEmail | str | Failure
            try:
                if kind == "email":
                    page = preview_email(self.settings, self.templates, entry.issue, edition)
                else:
                    page = archive_page(self.settings, self.templates, entry.issue, edition, entry.published)
            except (NewsletterError, OSError) as err:
                page = describe(err)
            except Exception as err:  # a bug in a renderer: keep serving, say it on the page, log the traceback
                log.exception("rendering the %s of %s (%s)", kind, slug, lang)
                page = describe(err)
            self._pages[key] = page
            return page


def _under(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def _is_issue_file(path: Path) -> bool:
    return path.suffix == ".md" and path.name.lower() != "readme.md"
