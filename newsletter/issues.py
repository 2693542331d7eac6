"""Find issue files and parse each (YAML front matter + Markdown) into an Edition; group them into Issues.

Errors name `path:line` and say what to do. Nothing here renders templates or touches the store.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from .config import LANGUAGE_PATTERN, Settings
from .errors import IssueError
from .files import FileRules
from .markdown import Body, MarkdownError, Section, render_body
from .tags import TagClash, TagNames, display_form, tag_key, tag_problem

FILE_NAME = re.compile(r"^(?P<date>\d{4}-\d{2}-\d{2})-(?P<name>[a-z0-9]+(?:-[a-z0-9]+)*)(?:\.(?P<lang>[^.]+))?\.md$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FRONT_MATTER_END = re.compile(r"^(?:---|\.\.\.)\s*?$", re.MULTILINE)  # the line closing the front matter
FRONT_MATTER_KEYS = ("title", "date", "summary", "tags", "draft", "advertisement", "publish_at")
RAW_KEYS = ("date", "publish_at")  # read as written (not as YAML's own dates), so a bad one gets our message
# ISO 8601 date and time, to the minute at least, with an optional offset: 2026-12-02T09:00+09:00, 2026-12-02 09:00
DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:?\d{2})?$")
MAX_FILE_BYTES = 1_000_000  # an issue file's size limit; the sample's editions are about 30 KB
MAX_FRONT_MATTER_CHARS = 65_536
MAX_TAGS = 200  # per edition, front matter and sections together: each tag is a page and a feed of the site
MAX_FRONT_MATTER_DEPTH = 8  # nested lists and mappings in front matter (deeper ones overflow the YAML constructor)
# Characters XML 1.0 forbids (feeds cannot carry them) and the invisible C1/DEL controls; tab, LF and CR stay.
CONTROL_CHARACTER = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")


def edition_page_path(slug: str, lang: str, is_default: bool) -> str:
    """Site path of an edition's page: `issues/<slug>/`, or `<lang>/issues/<slug>/` for a translation."""
    return f"{'' if is_default else lang + '/'}issues/{slug}/"


@dataclass(frozen=True)
class Edition:
    """One language of one issue, parsed."""

    slug: str  # e.g. 2023-09-25-top-ml-papers; the same for every edition of the issue
    lang: str
    is_default: bool  # the publication's default language
    path: str  # the file, relative to the publication root
    title: str
    date: dt.date
    summary: str
    tags: tuple[str, ...]  # front-matter tags, then the sections' tags, each once
    draft: bool
    advertisement: bool  # the issue carries advertising (Korean law: "(광고)" subject prefix)
    body: Body
    source_hash: str
    publish_at: dt.datetime | None = None  # front-matter publish_at (timezone-aware); None: date at publish_time
    publish_at_line: int | None = None  # its line in the file
    issue_tags: tuple[str, ...] = ()  # the front-matter tags (in `tags` too): every paper of the issue carries them

    @property
    def sections(self) -> tuple[Section, ...]:
        return self.body.sections

    @property
    def page_path(self) -> str:
        return edition_page_path(self.slug, self.lang, self.is_default)


@dataclass(frozen=True)
class Issue:
    """One dated newsletter: its editions, the default language first."""

    slug: str
    date: dt.date
    editions: tuple[Edition, ...]
    publish_at: dt.datetime | None = None  # the publish_at its editions give (they agree), if any

    @property
    def default(self) -> Edition:
        return self.editions[0]

    def edition(self, lang: str) -> Edition | None:
        return next((e for e in self.editions if e.lang == lang), None)


def _as_text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be non-empty text", f'write {name}: "…"')
    if "\r" in value or "\n" in value.strip():
        raise ValueError(f"{name} contains a line break", "write it on one line")
    return value.strip()


def _as_summary(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text", f'write {name}: "…"')
    return " ".join(value.split())


def _as_date(name: str, value: Any) -> dt.date:
    text = str(value)
    try:
        if not DATE.match(text):
            raise ValueError
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a valid date", "use YYYY-MM-DD") from None


def _as_date_time(name: str, value: Any) -> dt.datetime:
    """An ISO 8601 date and time; without an offset it is a wall-clock time (parse_issue puts it in `timezone`)."""
    hint = (
        "use YYYY-MM-DDTHH:MM with an offset, such as 2026-12-02T09:00+09:00, or without one for a time in the "
        "timezone setting"
    )
    if not isinstance(value, str):
        raise ValueError(f"{name} must be one date and time", hint)
    text = value.strip()
    if DATE_TIME.match(text):
        try:
            return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            pass
    raise ValueError(f"{name} {text!r} is not a date and time", hint)


def _as_tags(name: str, value: Any) -> tuple[str, ...]:
    """Front-matter tags in their displayed form (newsletter.tags): any words, `machine learning`, `C++`, `한국어`."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError(f"{name} must be a list", "write tags: [llm, machine learning, 한국어]")
    tags = []
    for item in items:
        if isinstance(item, list | dict):
            raise ValueError(f"{name} holds a list or mapping, not a tag", "write tags: [llm, machine learning]")
        tag = display_form("" if item is None else str(item)).lstrip("#").lstrip()
        problem = tag_problem(tag)
        if problem:
            raise ValueError(*problem)
        tags.append(tag)
    return tuple(tags)


def _as_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} {value!r} is not true or false", f"write {name}: true")
    return value


FIELD_CONVERTERS: dict[str, Callable[[str, Any], Any]] = {
    "title": _as_text,
    "date": _as_date,
    "summary": _as_summary,
    "tags": _as_tags,
    "draft": _as_bool,
    "advertisement": _as_bool,
    "publish_at": _as_date_time,
}


def split_file_name(name: str, settings: Settings) -> tuple[str, str]:
    """(slug, language) of an issue file name, or ValueError(message, hint)."""
    match = FILE_NAME.match(name)
    if not match:
        raise ValueError("file name is not YYYY-MM-DD-slug[.lang].md", "rename it, e.g. 2023-09-25-top-ml-papers.md")
    lang = match["lang"] or settings.language
    if not LANGUAGE_PATTERN.match(lang) or lang not in settings.all_languages:
        known = ", ".join(settings.all_languages)
        raise ValueError(f"language '{lang}' is not configured", f"use one of {known} or add it to languages")
    return f"{match['date']}-{match['name']}", lang


def parse_issue(path: Path, settings: Settings, data: bytes | None = None) -> Edition:
    """Parse one issue file into an Edition; raises IssueError with path and line."""
    where = _display_path(path, settings.root)
    try:
        slug, lang = split_file_name(path.name, settings)
    except ValueError as err:
        raise IssueError(where, None, *err.args) from None
    if data is None:
        raw = read_issue_file(path, settings)
    else:
        raw = data
        ISSUE_FILE.check_size(len(raw), where)
    text = decode_issue(raw, where)
    fields, body_text, body_line = _split_front_matter(text, where)
    values: dict[str, Any] = {"summary": "", "tags": (), "draft": False, "advertisement": False}
    for key, (value, line) in fields.items():
        converter = FIELD_CONVERTERS.get(key)
        if converter is None:
            raise IssueError(where, line, f"unknown front matter key '{key}'", "use " + ", ".join(FRONT_MATTER_KEYS))
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and (found := CONTROL_CHARACTER.search(item)):
                raise IssueError(where, line, f"{key} contains {_character(found[0])}", "remove it")
        try:
            values[key] = converter(key, value)
        except ValueError as err:
            raise IssueError(where, line, *err.args) from None
    for required in ("title", "date"):
        if required not in values:
            raise IssueError(where, 1, f"{required} is missing", f"add {required}: to the front matter")
    publish_at = values.get("publish_at")
    if publish_at is not None:
        publish_at = _in_zone(publish_at, settings, where, fields["publish_at"][1])
    if values["date"].isoformat() != slug[:10]:
        raise IssueError(
            where,
            fields["date"][1],
            f"date {values['date']} differs from the file name's {slug[:10]}",
            "make them the same",
        )
    try:
        body = render_body(body_text, body_line)
    except MarkdownError as err:
        raise IssueError(where, err.line, err.message, err.hint) from None
    tags_line = fields["tags"][1] if "tags" in fields else 1
    tags = _tag_names(values["tags"], tags_line, where)
    issue_tags = tuple(tags.names.values())
    if len(tags.names) > MAX_TAGS:
        raise IssueError(
            where,
            tags_line,
            f"more than {MAX_TAGS} tags",
            "keep the ones readers follow: each is a page and a feed",
        )
    body = _with_section_tags(body, tags, where)
    for section in body.sections:
        for link in section.links:
            if not link.url:
                raise IssueError(
                    where,
                    section.line,
                    f"a link in '{section.title}' has no URL",
                    "write [label](https://…)",
                )
    return Edition(
        slug=slug,
        lang=lang,
        is_default=lang == settings.language,
        path=where,
        title=values["title"],
        date=values["date"],
        summary=values["summary"],
        tags=tuple(tags.names.values()),
        draft=values["draft"],
        advertisement=values["advertisement"],
        body=body,
        source_hash=source_hash(raw),
        publish_at=publish_at,
        publish_at_line=fields["publish_at"][1] if publish_at is not None else None,
        issue_tags=issue_tags,
    )


def _tag_names(tags: Iterable[str], line: int, where: str) -> TagNames:
    """The front-matter tags, each once (the first spelling of those that differ in case or spacing only)."""
    names = TagNames()
    for tag in tags:
        _add_tag(names, tag, line, where)
    return names


def _add_tag(names: TagNames, tag: str, line: int, where: str) -> str:
    """Meet `tag` on `line` of the file; two different tags that would share a page are refused."""
    try:
        return names.add(tag, str(line))
    except TagClash as clash:
        raise IssueError(
            where,
            line,
            f"tag '{clash.first}' (line {clash.first_where}) and '{clash.other}' share the page tags/{clash.segment}/",
            "spell them one way, or tell them apart by a letter or digit",
        ) from None


def _with_section_tags(body: Body, names: TagNames, where: str) -> Body:
    """`body` with each paper's `#tags` checked, met in `names` and each once; a section's spelling is kept."""
    sections = []
    changed = False
    for section in body.sections:
        if not section.tags:
            sections.append(section)
            continue
        unique: dict[str, str] = {}  # key → the section's first spelling
        for tag in section.tags:
            key = tag_key(tag)
            if key in unique:
                continue
            unique[key] = tag
            problem = tag_problem(tag)
            if problem:
                raise IssueError(where, section.line, *problem)
            if key not in names.names:
                _add_tag(names, tag, section.line, where)
        if len(names.names) > MAX_TAGS:
            raise IssueError(
                where,
                section.line,
                f"the issue has more than {MAX_TAGS} tags by '{section.title}'",
                "keep the ones readers follow: each is a page and a feed",
            )
        if len(unique) != len(section.tags):
            section = dataclasses.replace(section, tags=tuple(unique.values()))
            changed = True
        sections.append(section)
    return dataclasses.replace(body, sections=tuple(sections)) if changed else body


def _in_zone(moment: dt.datetime, settings: Settings, where: str, line: int) -> dt.datetime:
    """`moment` as a timezone-aware instant: a wall-clock time is read in the `timezone` setting (and given that
    moment's fixed offset), refused when the zone skips it (a daylight-saving gap); a repeated one (the hour the
    clocks go back) is its first occurrence."""
    if moment.tzinfo is not None:
        return moment
    local = moment.replace(tzinfo=settings.timezone)
    if local.astimezone(dt.UTC).astimezone(settings.timezone).replace(tzinfo=None) != moment:
        raise IssueError(
            where,
            line,
            f"publish_at {moment:%Y-%m-%d %H:%M} does not exist in {settings.timezone.key} (the clocks skip it)",
            "pick another time, or give an offset such as +09:00",
        )
    # A fixed offset: Python never finds a zone's repeated-hour times equal to those of another zone (PEP 495).
    return local.astimezone(dt.timezone(local.utcoffset() or dt.timedelta(0)))


def read_issue_file(path: Path, settings: Settings) -> bytes:
    """The bytes of an issue file, refusing what is not a regular file (a FIFO would block the read for ever,
    a device never end) and files over MAX_FILE_BYTES, before reading them."""
    return ISSUE_FILE.read(path, _display_path(path, settings.root))


ISSUE_FILE = FileRules(
    limit=MAX_FILE_BYTES,
    fail=lambda where, what, hint: IssueError(where, None, what, hint),
    kind="an issue file",
    not_regular_hint="issue files are plain files: remove it",
    too_big_hint="split it",
)


def decode_issue(raw: bytes, where: str) -> str:
    """The text of an issue file: UTF-8 (a BOM is dropped), without characters feeds and email cannot carry."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise IssueError(where, line, f"byte 0x{raw[err.start]:02x} is not UTF-8", "save the file as UTF-8") from None
    found = CONTROL_CHARACTER.search(text)
    if found:
        line_start = text.rfind("\n", 0, found.start()) + 1
        line = text.count("\n", 0, found.start()) + 1
        column = found.start() - line_start + 1
        raise IssueError(
            where,
            line,
            f"{_character(found[0])} at column {column}",
            "feeds and email cannot carry it: delete it",
        )
    return text


def _character(char: str) -> str:
    kind = "a NUL byte" if char == "\0" else "a noncharacter" if char in "\ufffe\uffff" else "a control character"
    return f"{kind} (U+{ord(char):04X})"


def source_hash(raw: bytes) -> str:
    """The hash that identifies an issue file's bytes (build cache keys, feed keys)."""
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def _split_front_matter(text: str, where: str) -> tuple[dict[str, tuple[Any, int]], str, int]:
    """({key: (value, line)}, body, first line of the body) of a file's text."""
    first_end = text.find("\n")
    if (text if first_end < 0 else text[:first_end]).rstrip() != "---":
        raise IssueError(where, 1, "no front matter", "start the file with a '---' line, title: and date:, then '---'")
    closing = FRONT_MATTER_END.search(text, first_end + 1) if first_end >= 0 else None
    if closing is None:
        raise IssueError(where, 1, "front matter is not closed", "add a '---' line after it")
    yaml_text = text[first_end + 1 : closing.start()].removesuffix("\n")
    if len(yaml_text) > MAX_FRONT_MATTER_CHARS:
        raise IssueError(
            where,
            2,
            f"front matter is {len(yaml_text):,} characters, over the limit of {MAX_FRONT_MATTER_CHARS:,}",
            "keep it to title, date, a short summary and tags",
        )
    body = text[closing.end() + 1 :]
    body_line = text.count("\n", 0, closing.start()) + 2  # the line after the closing one
    import yaml  # only parsing needs it; a cached rebuild does not

    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader is ten times faster
    try:
        _refuse_expansion(yaml.parse(yaml_text, Loader=loader_class), where)
        node = yaml.compose(yaml_text, Loader=loader_class)
    except yaml.MarkedYAMLError as err:
        mark = err.context_mark or err.problem_mark  # where the broken construct starts
        line = 2 + mark.line if mark else 1
        problem = f"{err.context}: {err.problem}" if err.context else str(err.problem)
        raise IssueError(where, line, f"front matter is not valid YAML: {problem}", "fix the YAML syntax") from None
    except yaml.YAMLError as err:
        raise IssueError(where, 2, f"front matter is not valid YAML: {_one_line(err)}", "fix the YAML syntax") from None
    if node is None:
        return {}, body, body_line
    if not isinstance(node, yaml.MappingNode):
        raise IssueError(where, 2, "front matter is not a list of key: value lines", "write title: …")
    constructor = loader_class("")
    fields: dict[str, tuple[Any, int]] = {}
    for key_node, value_node in node.value:
        line = 2 + key_node.start_mark.line
        key = str(key_node.value)
        if key in fields:
            raise IssueError(where, line, f"front matter key '{key}' appears twice", "keep one")
        if key in RAW_KEYS and isinstance(value_node, yaml.ScalarNode):
            value: Any = value_node.value  # parsed by our converter, so 2023-13-45 gets our message
        else:
            try:
                value = constructor.construct_object(value_node, deep=True)
            except Exception as err:  # noqa: BLE001 - explicit tags (!!int abc, !!timestamp x) raise anything
                if isinstance(err, yaml.MarkedYAMLError) and err.problem:
                    problem = err.problem
                elif isinstance(err, yaml.YAMLError):
                    problem = _one_line(err)
                else:  # the constructor of an explicit tag failed on its value
                    problem = f"the value is not a valid {str(value_node.tag).rsplit(':', 1)[-1]}"
                raise IssueError(where, line, f"{key}: {problem}", "fix the value") from None
        fields[key] = (value, line)
    return fields, body, body_line


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _refuse_expansion(events: Iterable[Any], where: str) -> None:
    """Refuse anchors and aliases (a few hundred bytes of nested aliases expand to gigabytes: the "billion
    laughs") and nesting deeper than MAX_FRONT_MATTER_DEPTH, before anything is constructed."""
    import yaml

    depth = 0
    for event in events:
        line = 2 + event.start_mark.line
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            name = event.anchor
            raise IssueError(
                where,
                line,
                f"front matter uses the YAML {'alias *' if isinstance(event, yaml.AliasEvent) else 'anchor &'}{name}",
                "write each value out; anchors and aliases are not allowed",
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_FRONT_MATTER_DEPTH:
                raise IssueError(
                    where,
                    line,
                    f"front matter nests lists or mappings more than {MAX_FRONT_MATTER_DEPTH} deep",
                    "write tags: [a, b]",
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def read_body_source(edition: Edition, settings: Settings) -> str:
    """The Markdown body of `edition`'s file, read again (the email's text part is made from it).

    Editions don't carry their source, which keeps the build cache small.
    """
    path = settings.root / edition.path
    text = path.read_bytes().decode("utf-8-sig")
    _, body, _ = _split_front_matter(text, edition.path)
    return body


def _display_path(path: Path, root: Path) -> str:
    """`path` relative to the publication root when it is inside it (resolving links only if needed)."""
    if not path.is_relative_to(root):
        path = path.resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def find_issue_files(settings: Settings) -> list[Path]:
    """Every `*.md` in issues/ except README.md, sorted by name."""
    folder = settings.issues_dir
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.md") if p.name.lower() != "readme.md")


class Versioned(Protocol):
    """What grouping needs of an edition (Edition, or the site builder's lighter record of one).

    Read-only members, so frozen dataclasses meet it.
    """

    @property
    def slug(self) -> str: ...

    @property
    def lang(self) -> str: ...

    @property
    def path(self) -> str: ...

    @property
    def date(self) -> dt.date: ...


V = TypeVar("V", bound=Versioned)


def group_by_issue(editions: Iterable[V], settings: Settings) -> list[list[V]]:
    """Editions → one list per issue (default language first), newest issue first.

    Refuses two editions of one language and issues without a default-language edition.
    """
    by_slug: dict[str, dict[str, V]] = {}
    for edition in editions:
        langs = by_slug.setdefault(edition.slug, {})
        if edition.lang in langs:
            other = langs[edition.lang]
            raise IssueError(
                edition.path,
                None,
                f"is a second '{edition.lang}' edition of {edition.slug}, like {other.path}",
                "remove or rename one",
            )
        langs[edition.lang] = edition
    groups: list[list[V]] = []
    for slug, langs in by_slug.items():
        if settings.language not in langs:
            some = next(iter(langs.values()))
            raise IssueError(
                some.path,
                None,
                f"issue {slug} has no '{settings.language}' (default language) edition",
                f"add issues/{slug}.md",
            )
        groups.append([langs[lang] for lang in settings.all_languages if lang in langs])
    groups.sort(key=lambda group: (group[0].date, group[0].slug), reverse=True)
    return groups


def group_editions(editions: Iterable[Edition], settings: Settings) -> list[Issue]:
    """Editions → Issues, newest first (see group_by_issue); refuses editions that disagree on publish_at."""
    return [
        Issue(slug=group[0].slug, date=group[0].date, editions=tuple(group), publish_at=agreed_publish_at(group))
        for group in group_by_issue(editions, settings)
    ]


def agreed_publish_at(editions: Iterable[Edition]) -> dt.datetime | None:
    """The publish_at of an issue: the one instant its editions give (an edition without one follows it), or None."""
    given = [(edition, edition.publish_at) for edition in editions if edition.publish_at is not None]
    if not given:
        return None
    first, instant = given[0]
    for edition, other in given[1:]:
        if other.astimezone(dt.UTC) != instant.astimezone(dt.UTC):
            raise IssueError(
                edition.path,
                edition.publish_at_line,
                f"publish_at {other.isoformat()} differs from {first.path}:{first.publish_at_line}'s "
                f"{instant.isoformat()}",
                "give every edition the same, or leave it out of the translations",
            )
    return instant


def publication_instant(issue: Issue, settings: Settings) -> dt.datetime:
    """When `issue` is published: its publish_at, else its date at `publish_time` in `timezone` (a time that a
    daylight-saving gap skips moves on by the gap, as the clocks do)."""
    if issue.publish_at is not None:
        return issue.publish_at
    local = dt.datetime.combine(issue.date, settings.publish_time, tzinfo=settings.timezone)
    return local.astimezone(dt.UTC).astimezone(settings.timezone)


def load_issues(settings: Settings, *, include_drafts: bool = True) -> list[Issue]:
    """Parse every issue file; drafts are dropped unless `include_drafts`."""
    editions = [parse_issue(path, settings) for path in find_issue_files(settings)]
    if not include_drafts:
        editions = [e for e in editions if not e.draft]
    return group_editions(editions, settings)


def find_issue(settings: Settings, name: str) -> Issue:
    """The issue whose slug (or file name, or path) is `name`; the error names the nearest slugs."""
    wanted = Path(name).name.removesuffix(".md")
    wanted = wanted.rsplit(".", 1)[0] if "." in wanted else wanted
    issues = load_issues(settings)
    for issue in issues:
        if issue.slug == wanted:
            return issue
    slugs = [issue.slug for issue in issues]  # newest first
    nearest = difflib.get_close_matches(wanted, slugs, n=3, cutoff=0.6)
    if nearest:
        hint = f"did you mean {' or '.join(nearest)}?"
    elif slugs:
        more = f", and {len(slugs) - 3} older in issues/" if len(slugs) > 3 else ""
        hint = f"the newest: {', '.join(slugs[:3])}{more}"
    else:
        hint = "issues/ has none yet: run 'newsletter new TITLE' to write one"
    raise IssueError(name, None, "no such issue", hint)
