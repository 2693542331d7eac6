"""Markdown body → intro plus one Section per `##` heading, as HTML (for every build) and plain text (for email).

Inside a section, a paragraph made only of `#tag` words is the paper's tags, and a list (or paragraph)
made only of links is its buttons; everything else is its body. Parsing uses markdown-it-pyrs, the Rust
port of markdown-it (CommonMark + tables + strikethrough): see docs/design.md for why not markdown-it-py.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from markdown_it_pyrs import MarkdownIt

TEXT_WIDTH = 76
TAG_WORD = re.compile(r"#([^\s#]+)")
TAG_LINE = re.compile(r"^#[^\s#]+(\s+#[^\s#]+)*$")
NOT_WORD = re.compile(r"[^\w\s-]")
SPACES = re.compile(r"[\s-]+")
LINK_SEPARATORS = re.compile(r"^[\s·|•,/-]*$")

_markdown = MarkdownIt("commonmark").enable("table").enable("strikethrough")
Node = Any  # markdown_it_pyrs.Node: name, attrs, meta, srcmap (byte offsets), children

# How deep elements may sit inside one another (quotes, lists, emphasis, links, images, raw HTML). Deeper
# bodies break what reads them: lxml (premailer) stops at 256 levels, Chrome flattens past 512, MJML crashes
# near 10,000 and our own tree walks would exceed Python's recursion limit.
MAX_NESTING = 100
# markdown-it-pyrs itself overflows its stack (a segfault) past about 20,000 levels, and nested
# strikethrough costs it quadratic time, so these bounds are checked on the source, before parsing:
MAX_CONTAINER_PREFIX = 1_000  # characters of `>`, list markers and indentation that open a line
MAX_DELIMITERS = 10_000  # `*`, `_` and `[` in one paragraph (text between blank lines)
MAX_TILDES = 2_000  # `~` in one paragraph
MAX_DEFINITION_RUN = 200  # link reference definitions on consecutive lines: the parser is quadratic in them
MAX_SECTIONS = 1_000  # `##` sections; the email of an issue this long already fails Gmail's size limit
DEFINITION_LINE = re.compile(r"^ {0,3}\[[^\n]*?\]:[^\n]*$", re.MULTILINE)
# After a line break (searched for as a literal: much faster than a MULTILINE `^`):
CONTAINER_PREFIX = re.compile(r"\n[ \t]*(?:(?:>|(?:[-+*]|\d{1,9}[.)])(?=[ \t\n]|\Z))[ \t]*)+")
BRACKETED = re.compile(r"\[((?:[^\[\]\\]|\\.){1,999})\]")  # what may be a reference label (CommonMark: 999 at most)
BLANK_LINE = re.compile(r"\n[ \t]*\n")
HTML_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)([^<>]*)>")
UNNESTED_TAGS = frozenset(  # void elements and those whose end tag may be left out: they do not nest
    "area base br col embed hr img input link meta source track wbr p li dt dd tr td th thead tbody tfoot "
    "option optgroup colgroup caption rb rt rp".split()
)


class MarkdownError(ValueError):
    """A body that cannot be rendered safely; `line` counts from the body's first line (1)."""

    def __init__(self, line: int, message: str, hint: str) -> None:
        self.line, self.message, self.hint = line, message, hint
        super().__init__(f"{line}: {message} ({hint})")


def _too_deep(line: int) -> MarkdownError:
    return MarkdownError(
        line,
        f"Markdown nests more than {MAX_NESTING} levels deep (quotes, lists, emphasis, links or HTML inside "
        "one another)",
        "flatten it",
    )


def _check_source(source: str) -> None:
    """Refuse, before parsing, sources whose nesting could crash the parser or take it quadratic time."""
    for match in CONTAINER_PREFIX.finditer("\n" + source):  # match.start() is where its line starts in source
        if match.end() - match.start() - 1 > MAX_CONTAINER_PREFIX:
            raise _too_deep(source.count("\n", 0, match.start()) + 1)
    run, previous_end = 0, -2
    for match in DEFINITION_LINE.finditer(source) if "]:" in source else ():
        run = run + 1 if match.start() == previous_end + 1 else 1
        previous_end = match.end()
        if run > MAX_DEFINITION_RUN:
            raise MarkdownError(
                source.count("\n", 0, match.start()) + 1,
                f"more than {MAX_DEFINITION_RUN} link reference definitions ([label]: URL) in a row",
                "put a blank line between groups of them",
            )
    if source.count("~") <= MAX_TILDES and sum(map(source.count, "*_[")) <= MAX_DELIMITERS:
        return  # the common case, decided without splitting the source into paragraphs
    start = 0
    for gap in [*BLANK_LINE.finditer(source), None]:
        end = len(source) if gap is None else gap.start()
        tildes = source.count("~", start, end)
        delimiters = sum(source.count(char, start, end) for char in "*_[")
        if tildes > MAX_TILDES or delimiters > MAX_DELIMITERS:
            raise MarkdownError(
                source.count("\n", 0, start) + 1,
                f"a paragraph holds {delimiters:,} of '*', '_' and '[' and {tildes:,} of '~' (at most "
                f"{MAX_DELIMITERS:,} and {MAX_TILDES:,}: deeper nesting than that cannot be rendered safely)",
                "split it with blank lines",
            )
        start = end if gap is None else gap.end()


def _check_nesting(root: Node, children: Sequence[Node], data: bytes) -> None:
    """Refuse a tree (`root`, whose `children` are given) deeper than MAX_NESTING, counting raw HTML elements left
    open as levels too."""
    open_tags: list[str] = []

    def visit(node: Node, children: Sequence[Node], depth: int) -> None:  # bounded: it stops at MAX_NESTING
        for child in children:  # in document order, which raw HTML's open elements need
            name = child.name
            if name in _LEAVES:
                continue
            if name in _HTML_NODES:
                for closing, tag, rest in HTML_TAG.findall(child.meta.get("content", "")):
                    tag = tag.lower()
                    if closing and tag in open_tags:
                        del open_tags[len(open_tags) - 1 - open_tags[::-1].index(tag) :]
                    elif not closing and not rest.endswith("/") and tag not in UNNESTED_TAGS:
                        open_tags.append(tag)
                if depth + len(open_tags) > MAX_NESTING:
                    raise _too_deep(data.count(b"\n", 0, (child.srcmap or node.srcmap or (0, 0))[0]) + 1)
            elif grandchildren := child.children:  # each node's children asked once: each ask builds them
                if depth + 1 + len(open_tags) > MAX_NESTING:
                    raise _too_deep(data.count(b"\n", 0, (child.srcmap or node.srcmap or (0, 0))[0]) + 1)
                visit(child, grandchildren, depth + 1)

    visit(root, children, 1)


_HTML_NODES = frozenset({"html_block", "html_inline"})
_LEAVES = frozenset({"text", "softbreak", "hardbreak", "hr"})  # nodes that never have children


@dataclass(frozen=True)
class Link:
    """A labelled URL, shown as a button in the email and on the page."""

    label: str
    url: str


@dataclass(frozen=True)
class Section:
    """One `##` section of an issue: in the sample, one paper."""

    anchor: str  # stable id on the page, from the heading
    title: str
    html: str  # the body as an HTML fragment (tag line and link row excluded)
    tags: tuple[str, ...]
    links: tuple[Link, ...]
    line: int  # line of the heading in the issue file


@dataclass(frozen=True)
class Body:
    """A parsed Markdown body."""

    intro_html: str
    sections: tuple[Section, ...]


@dataclass(frozen=True)
class BodyText:
    """A body as plain text for the email's text part; inline links are "label [n]"."""

    intro: str
    sections: tuple[str, ...]
    references: tuple[str, ...]  # URL of reference [n] at index n-1


@dataclass
class _Part:
    """Top-level blocks of the intro (heading None) or of one section."""

    heading: Node | None
    blocks: list[Node]
    tags: dict[str, None]  # ordered and unique
    links: list[Link]


def slugify(text: str) -> str:
    """GitHub-style anchor: lowercase letters and digits of any script, words joined by '-'."""
    kept = NOT_WORD.sub(" ", text.lower())
    return SPACES.sub("-", kept).strip("-_") or "section"


def display_width(text: str) -> int:
    """Columns `text` takes in a terminal or monospace font, by wcwidth: Hangul and emoji count two, an emoji
    sequence (`🙇‍♂️`: a person, a joiner, a sign, a variation selector) two in all, combining marks none."""
    if text.isascii() and text.isprintable():
        return len(text)
    from wcwidth import wcswidth  # only the text part needs it

    width = wcswidth(text)
    if width < 0:  # a control character (a tab in code, say): wcswidth gives up; count the rest
        width = wcswidth("".join(char for char in text if char.isprintable() or char == " "))
    return max(width, 0)


def _split(source: str) -> tuple[bytes, list[_Part], dict[str, str]]:
    """(source bytes, parts, link reference definitions by label) of a body: the intro, then one part per
    `##`."""
    _check_source(source)
    data = source.encode("utf-8")
    tree = _markdown.tree(source)
    top = tree.children
    _check_nesting(tree, top, data)
    part = _Part(None, [], {}, [])
    parts = [part]
    definitions: dict[str, str] = {}
    for node in top:
        name = node.name
        if name == "heading" and node.meta.get("level") == 2:
            if len(parts) > MAX_SECTIONS:
                line = data.count(b"\n", 0, (node.srcmap or (0, 0))[0]) + 1
                raise MarkdownError(line, f"more than {MAX_SECTIONS:,} sections (## headings)", "split the issue")
            part = _Part(node, [], {}, [])
            parts.append(part)
        elif name == "definition":
            definitions.setdefault(_label(node.meta.get("label", "")), _slice(data, node))  # the first wins
        elif part.heading is None or name not in _ROW_BLOCKS:
            part.blocks.append(node)
        elif (tags := _tag_line(node, children := node.children)) is not None:
            part.tags.update(dict.fromkeys(tags))
        elif (links := _link_row(node, children)) is not None:
            part.links.extend(links)
        else:
            part.blocks.append(node)
    return data, parts, definitions


def _label(text: str) -> str:
    """A reference label as CommonMark matches it: case-folded, inner whitespace collapsed."""
    return " ".join(text.split()).lower().upper()


def _slice(data: bytes, node: Node) -> str:
    start, end = node.srcmap
    return data[start:end].decode("utf-8")


def _runs(data: bytes, blocks: list[Node]) -> list[tuple[int, int]]:
    """(start, end) in `data` of each contiguous run of `blocks`: blocks with only whitespace between them are
    one run (keeps lists and references intact)."""
    runs: list[tuple[int, int]] = []
    for node in blocks:
        start, end = node.srcmap
        if runs and not data[runs[-1][1] : start].strip():
            runs[-1] = (runs[-1][0], end)
        else:
            runs.append((start, end))
    return runs


def _run_source(text: str, definitions: dict[str, str]) -> str:
    """A run's Markdown with the link reference definitions its labels mention (appending all of them to every
    run made many sections with many references quadratic)."""
    used = {_label(label) for label in BRACKETED.findall(text)} & definitions.keys() if definitions else ()
    return text + "\n\n" + "\n".join(definitions[label] for label in sorted(used)) + "\n" if used else text


# Between two runs rendered in one call: an HTML comment on a line of its own, which ends whatever block precedes
# it (a blank line comes before it) and renders as itself, so the call's HTML splits there into each run's.
CUT = "<!--newsletter:cut-->"
CUT_SOURCE = f"\n\n{CUT}\n\n"
CUT_HTML = f"{CUT}\n"


def _parts_html(data: bytes, parts: list[_Part], definitions: dict[str, str]) -> list[str]:
    """The HTML of each part's blocks, every run rendered by its source in one call of the renderer (a call per
    run cost as much as parsing the body again). The body's link reference definitions come first, each once,
    so every run sees them and none is swallowed by a block a run leaves open at the end of the body."""
    runs = [_runs(data, part.blocks) for part in parts]
    texts = [data[start:end].decode("utf-8") for part_runs in runs for start, end in part_runs]
    pieces: list[str] = []
    if texts and CUT.encode() not in data:
        head = ["\n\n".join(definitions.values())] if definitions else []  # blank lines: see MAX_DEFINITION_RUN
        pieces = _markdown.render(CUT_SOURCE.join(head + texts)).split(CUT_HTML)
        if head and pieces[0] == "":
            del pieces[0]
    if len(pieces) != len(texts):  # the body holds the cut line itself: a call per run
        pieces = [_markdown.render(_run_source(text, definitions)) for text in texts]
    html, taken = [], 0
    for part_runs in runs:
        html.append("".join(pieces[taken : taken + len(part_runs)]))
        taken += len(part_runs)
    return html


def render_body(source: str, first_line: int = 1) -> Body:
    """Parse `source` and split it at its `##` headings into an intro and Sections with HTML.

    `first_line` is the file line `source` starts at, so Section.line (and MarkdownError.line) is a line of
    the file.
    """
    try:
        data, parts, definitions = _split(source)
    except MarkdownError as err:
        err.line += first_line - 1
        raise
    used: dict[str, int] = {}  # anchor made from a title → how many sections took it or a numbered form
    taken: set[str] = set()
    sections = []
    html = _parts_html(data, parts, definitions)
    line, counted_to = first_line, 0
    for part, part_html in zip(parts[1:], html[1:], strict=True):
        heading = part.heading
        assert heading is not None, "every part after the intro starts at its heading"
        title = _plain(heading)
        base = slugify(title)
        count = used.get(base, 0) + 1
        anchor = base if count == 1 else f"{base}-{count}"
        while anchor in taken:  # "A", "A 2", "A" must not give a-2 twice
            count += 1
            anchor = f"{base}-{count}"
        used[base] = count
        taken.add(anchor)
        start = heading.srcmap[0]
        line += data.count(b"\n", counted_to, start)
        counted_to = start
        sections.append(
            Section(
                anchor=anchor,
                title=title,
                html=part_html,
                tags=tuple(part.tags),
                links=tuple(part.links),
                line=line,
            )
        )
    return Body(intro_html=html[0], sections=tuple(sections))


def render_text(source: str) -> BodyText:
    """Parse `source` again and write each part as wrapped plain text (used once per email)."""
    _, parts, _ = _split(source)
    renderer = _TextRenderer()
    texts = [renderer.blocks(part.blocks) for part in parts]
    return BodyText(intro=texts[0], sections=tuple(texts[1:]), references=tuple(renderer.references))


_ROW_BLOCKS = {"paragraph", "bullet_list", "ordered_list"}  # what a tag line or a link row can be


def _leading_text(children: Sequence[Node]) -> str | None:
    """The text a paragraph starts with, or None when it starts with something else (a link, say)."""
    return children[0].meta.get("content", "") if children and children[0].name == "text" else None


def _tag_line(node: Node, children: Sequence[Node]) -> list[str] | None:
    """The tags if `node` (with `children`) is a paragraph of `#tag` words only."""
    lead = _leading_text(children)
    if node.name != "paragraph" or lead is None or not lead.startswith("#"):
        return None  # the common case, decided without joining the paragraph's text
    if any(c.name not in {"text", "softbreak"} for c in children):
        return None
    content = _plain(node, children).strip()
    return TAG_WORD.findall(content) if TAG_LINE.match(content) else None


def _link_row(node: Node, children: Sequence[Node]) -> list[Link] | None:
    """The links if `node` (with `children`) is a list of bare links, or a paragraph of links and separators."""
    if node.name == "paragraph":
        lead = _leading_text(children)
        if lead is not None and not LINK_SEPARATORS.match(lead):
            return None  # the common case: a paragraph that starts with words
        return _links_only(children)
    links: list[Link] = []
    for item in children:
        inline = item.children
        if len(inline) == 1 and inline[0].name == "paragraph":
            inline = inline[0].children
        found = _links_only(inline)
        if found is None or len(found) != 1:
            return None
        links.extend(found)
    return links


def _links_only(children: Sequence[Node]) -> list[Link] | None:
    links: list[Link] = []
    for child in children:
        name = child.name
        if name == "link":
            links.append(Link(_plain(child), str(child.meta.get("url", ""))))
        elif name != "softbreak" and not (name == "text" and LINK_SEPARATORS.match(child.meta["content"])):
            return None
    return links or None


def _plain(node: Node, children: Sequence[Node] | None = None) -> str:
    """The visible text of an inline node (whose `children` may be given), without markup."""
    parts: list[str] = []
    for child in node.children if children is None else children:
        name = child.name
        if name == "text":
            parts.append(child.meta.get("content", ""))
        elif name == "softbreak" or name == "hardbreak":
            parts.append(" ")
        elif name != "html_inline":
            parts.append(_plain(child))
    return "".join(parts)


def wrap(text: str, width: int = TEXT_WIDTH, indent: str = "") -> str:
    """Wrap at spaces to `width` display columns (display_width); prefix each line with `indent`."""
    room = width - display_width(indent)
    lines: list[str] = []
    for paragraph_line in text.split("\n"):
        line, used = "", 0
        for word in paragraph_line.split():
            size = display_width(word)
            if line and used + 1 + size > room:
                lines.append(line)
                line, used = word, size
            elif line:
                line, used = f"{line} {word}", used + 1 + size
            else:
                line, used = word, size
        lines.append(line)
    return "\n".join((indent + line).rstrip() for line in lines)


class _TextRenderer:
    """Block nodes → plain text for reading in a mail client; inline links become "label [n]"."""

    def __init__(self) -> None:
        self.references: list[str] = []

    def blocks(self, nodes: list[Node], indent: str = "") -> str:
        return "\n\n".join(filter(None, (self.block(node, indent) for node in nodes)))

    def block(self, node: Node, indent: str) -> str:
        name = node.name
        if name == "paragraph":
            return wrap(self.inline(node), indent=indent)
        if name == "heading":
            title = self.inline(node)
            return f"{indent}{title}\n{indent}{'-' * display_width(title)}"
        if name in {"bullet_list", "ordered_list"}:
            number = int(node.meta.get("start", 1) or 1)
            items = []
            for item in node.children:
                marker = f"{number}. " if name == "ordered_list" else "- "
                number += 1
                pad = indent + " " * len(marker)
                if item.children and item.children[0].name not in _BLOCKS:  # tight item: inline children
                    inner = wrap(self.inline(item), indent=pad)
                else:
                    inner = self.blocks(item.children, pad)
                items.append(indent + marker + inner[len(pad) :])
            return "\n".join(items)
        if name == "blockquote":
            inner = self.blocks(node.children)
            return "\n".join(f"{indent}> {line}".rstrip() for line in inner.splitlines())
        if name in {"fence", "code_block"}:
            return textwrap.indent(node.meta.get("content", "").rstrip("\n"), indent + "    ")
        if name == "hr":
            return indent + "-" * 20
        if name == "html_block":
            import nh3

            return wrap(nh3.clean(node.meta.get("content", ""), tags=set()), indent=indent)
        if name == "table":
            rows = [
                " | ".join(self.inline(cell) for cell in row.children)
                for group in node.children
                for row in group.children
            ]
            return textwrap.indent("\n".join(rows), indent)
        return ""

    def inline(self, node: Node) -> str:
        parts: list[str] = []
        for child in node.children:
            name = child.name
            if name == "text":
                parts.append(child.meta.get("content", ""))
            elif name == "code_inline":
                parts.append(f"`{_plain(child)}`")
            elif name == "softbreak":
                parts.append(" ")
            elif name == "hardbreak":
                parts.append("\n")
            elif name == "link":
                label, href = self.inline(child), str(child.meta.get("url", ""))
                if label.strip() == href:
                    parts.append(href)
                else:
                    self.references.append(href)
                    parts.append(f"{label} [{len(self.references)}]")
            elif name == "image":
                parts.append(f"[{_plain(child)}]")
            elif name != "html_inline":
                parts.append(self.inline(child))
        return "".join(parts)


_BLOCKS = {
    "paragraph",
    "bullet_list",
    "ordered_list",
    "blockquote",
    "fence",
    "code_block",
    "heading",
    "html_block",
    "hr",
    "table",
}
