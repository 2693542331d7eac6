"""Markdown body → intro plus one Section per `##` heading, each as HTML and as readable plain text.

Runs once per edition. Inside a section, a paragraph made only of `#tag` words is the paper's tags,
and a list (or paragraph) made only of links is its buttons; everything else is its body.
"""

from __future__ import annotations

import re
import textwrap
import unicodedata
from dataclasses import dataclass

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token
from markdown_it.tree import SyntaxTreeNode

TEXT_WIDTH = 76
TAG_WORD = re.compile(r"#([^\s#]+)")
TAG_LINE = re.compile(r"^(#[^\s#]+)(\s+#[^\s#]+)*$")
LINK_SEPARATORS = re.compile(r"^[\s·|•,/-]*$")

_markdown = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


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
    html: str  # the body as an HTML fragment (tags and links excluded)
    text: str  # the body as wrapped plain text; inline links as "label [n]"
    tags: tuple[str, ...]
    links: tuple[Link, ...]
    line: int  # 1-based line of the heading within the body


@dataclass(frozen=True)
class Body:
    """A parsed Markdown body."""

    intro_html: str
    intro_text: str
    sections: tuple[Section, ...]
    references: tuple[str, ...]  # URLs of the inline links, numbered from 1 in the text


def slugify(text: str) -> str:
    """GitHub-style anchor: lowercase letters and digits of any script, words joined by '-'."""
    text = unicodedata.normalize("NFC", text).lower()
    kept = "".join(ch if ch.isalnum() or ch in " -_" else " " for ch in text)
    return re.sub(r"[\s-]+", "-", kept).strip("-_") or "section"


def render_body(source: str) -> Body:
    """Parse `source` (CommonMark with tables) and split it at its `##` headings."""
    root = SyntaxTreeNode(_markdown.parse(source))
    text_renderer = _TextRenderer()
    intro: list[SyntaxTreeNode] = []
    sections: list[Section] = []
    current: _SectionBuilder | None = None
    used_anchors: dict[str, int] = {}
    for node in root.children:
        if node.type == "heading" and node.tag == "h2":
            if current:
                sections.append(current.finish(text_renderer))
            title = _plain_inline(node.children[0]) if node.children else ""
            anchor = slugify(title)
            seen = used_anchors.get(anchor, 0)
            used_anchors[anchor] = seen + 1
            if seen:
                anchor = f"{anchor}-{seen + 1}"
            line = (node.map[0] + 1) if node.map else 0
            current = _SectionBuilder(anchor, title, line)
        elif current is None:
            intro.append(node)
        else:
            current.add(node)
    if current:
        sections.append(current.finish(text_renderer))
    return Body(
        intro_html=_html(intro),
        intro_text=text_renderer.blocks(intro),
        sections=tuple(sections),
        references=tuple(text_renderer.references),
    )


class _SectionBuilder:
    def __init__(self, anchor: str, title: str, line: int) -> None:
        self.anchor, self.title, self.line = anchor, title, line
        self.nodes: list[SyntaxTreeNode] = []
        self.tags: list[str] = []
        self.links: list[Link] = []

    def add(self, node: SyntaxTreeNode) -> None:
        tags = _tag_line(node)
        if tags is not None:
            self.tags.extend(tag for tag in tags if tag not in self.tags)
            return
        links = _link_row(node)
        if links is not None:
            self.links.extend(links)
            return
        self.nodes.append(node)

    def finish(self, text_renderer: _TextRenderer) -> Section:
        return Section(
            anchor=self.anchor,
            title=self.title,
            html=_html(self.nodes),
            text=text_renderer.blocks(self.nodes),
            tags=tuple(self.tags),
            links=tuple(self.links),
            line=self.line,
        )


def _html(nodes: list[SyntaxTreeNode]) -> str:
    tokens: list[Token] = []
    for node in nodes:
        tokens.extend(node.to_tokens())
    return _markdown.renderer.render(tokens, _markdown.options, {})


def _tag_line(node: SyntaxTreeNode) -> list[str] | None:
    """The tags if `node` is a paragraph of `#tag` words only."""
    if node.type != "paragraph" or not node.children:
        return None
    inline = node.children[0]
    if any(child.type not in {"text", "softbreak"} for child in inline.children):
        return None
    content = inline.content.strip()
    if not TAG_LINE.match(content):
        return None
    return TAG_WORD.findall(content)


def _link_row(node: SyntaxTreeNode) -> list[Link] | None:
    """The links if `node` is a list of bare links, or a paragraph of links and separators."""
    if node.type in {"bullet_list", "ordered_list"}:
        links: list[Link] = []
        for item in node.children:
            if len(item.children) != 1 or item.children[0].type != "paragraph":
                return None
            found = _links_only(item.children[0].children[0])
            if found is None or len(found) != 1:
                return None
            links.extend(found)
        return links
    if node.type == "paragraph" and node.children:
        return _links_only(node.children[0])
    return None


def _links_only(inline: SyntaxTreeNode) -> list[Link] | None:
    links: list[Link] = []
    for child in inline.children:
        if child.type == "link":
            links.append(Link(_plain_inline(child), str(child.attrs.get("href", ""))))
        elif child.type == "softbreak" or (child.type == "text" and LINK_SEPARATORS.match(child.content)):
            continue
        else:
            return None
    return links or None


def _plain_inline(node: SyntaxTreeNode) -> str:
    """The visible text of an inline node, without markup."""
    parts: list[str] = []
    for child in node.children:
        if child.type in {"text", "code_inline"}:
            parts.append(child.content)
        elif child.type in {"softbreak", "hardbreak"}:
            parts.append(" ")
        elif child.type == "image":
            parts.append(str(child.attrs.get("alt", "")) or _plain_inline(child))
        elif child.type == "html_inline":
            continue
        else:
            parts.append(_plain_inline(child))
    return "".join(parts)


def display_width(text: str) -> int:
    """Columns `text` takes in a terminal: wide (Hangul, CJK) characters count twice."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def wrap(text: str, width: int = TEXT_WIDTH, indent: str = "") -> str:
    """Wrap at spaces to `width` display columns (Hangul counts double); prefix each line."""
    room = width - display_width(indent)
    lines: list[str] = []
    line, used = "", 0
    for word in text.split():
        size = display_width(word)
        if line and used + 1 + size > room:
            lines.append(line)
            line, used = word, size
        elif line:
            line, used = f"{line} {word}", used + 1 + size
        else:
            line, used = word, size
    lines.append(line)
    return "\n".join(indent + line for line in lines)


class _TextRenderer:
    """Block nodes → plain text for reading in a mail client; inline links become "label [n]"."""

    def __init__(self) -> None:
        self.references: list[str] = []

    def blocks(self, nodes: list[SyntaxTreeNode], indent: str = "") -> str:
        return "\n\n".join(filter(None, (self.block(node, indent) for node in nodes)))

    def block(self, node: SyntaxTreeNode, indent: str) -> str:
        kind = node.type
        if kind == "paragraph":
            return wrap(self.inline(node.children[0]), indent=indent)
        if kind == "heading":
            title = self.inline(node.children[0])
            return f"{indent}{title}\n{indent}{'-' * display_width(title)}"
        if kind in {"bullet_list", "ordered_list"}:
            items = []
            number = int(node.attrs.get("start", 1) or 1)
            for item in node.children:
                marker = f"{number}. " if kind == "ordered_list" else "- "
                number += 1
                inner = self.blocks(item.children, indent + " " * len(marker))
                items.append(indent + marker + inner[len(indent) + len(marker) :])
            return "\n".join(items)
        if kind == "blockquote":
            inner = self.blocks(node.children)
            return "\n".join(f"{indent}> {line}".rstrip() for line in inner.splitlines())
        if kind in {"fence", "code_block"}:
            return textwrap.indent(node.content.rstrip("\n"), indent + "    ")
        if kind == "hr":
            return indent + "-" * 20
        if kind == "html_block":
            return wrap(nh3.clean(node.content, tags=set()), indent=indent)
        if kind == "table":
            rows = []
            for row in (r for part in node.children for r in part.children):
                rows.append(" | ".join(self.inline(cell.children[0]) for cell in row.children if cell.children))
            return textwrap.indent("\n".join(rows), indent)
        return ""

    def inline(self, node: SyntaxTreeNode) -> str:
        parts: list[str] = []
        for child in node.children:
            kind = child.type
            if kind == "text":
                parts.append(child.content)
            elif kind == "code_inline":
                parts.append(f"`{child.content}`")
            elif kind == "softbreak":
                parts.append(" ")
            elif kind == "hardbreak":
                parts.append("\n")
            elif kind == "link":
                label = self.inline(child)
                href = str(child.attrs.get("href", ""))
                if label.strip() == href:
                    parts.append(href)
                else:
                    self.references.append(href)
                    parts.append(f"{label} [{len(self.references)}]")
            elif kind == "image":
                parts.append(f"[{child.attrs.get('alt') or self.inline(child)}]")
            elif kind == "html_inline":
                continue
            else:
                parts.append(self.inline(child))
        return "".join(parts)
