"""Tags as editors write them (`machine learning`, `C++`, `a/b`, `한국어 태그`): one identity per tag, and the safe
path segment its page and feed live under. No I/O.

- The displayed form is the tag as written, trimmed, its inner runs of whitespace made one space.
- The identity (`tag_key`) is that form after Unicode NFKC and case folding, with every run of whitespace, `-`
  and `_` made one space: `Machine Learning`, `machine-learning` and `MACHINE_LEARNING` are one tag.
- The path segment (`tag_segment`) is the identity with `+` spelled `plus` and `#` spelled `sharp` (so `C`, `C++`
  and `C#` get pages of their own), then every run of characters that are neither letters, digits nor combining
  marks (of any script: Hangul stays) made one `-`, with none at either end: `한국어 태그` → `한국어-태그`,
  `a/b` → `a-b`, `C++` → `c-plus-plus`.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable

MAX_TAG_CHARS = 64
SPELLED = {"+": " plus ", "#": " sharp "}  # punctuation that tells tags apart (C, C++, C#)


def display_form(tag: str) -> str:
    """The tag as pages show it: trimmed, inner whitespace one space."""
    return " ".join(tag.split())


@functools.lru_cache(maxsize=65536)
def tag_key(tag: str) -> str:
    """The identity of a tag: tags whose keys are equal are one tag."""
    folded = unicodedata.normalize("NFKC", tag).casefold()
    return " ".join(folded.replace("-", " ").replace("_", " ").split())


@functools.lru_cache(maxsize=65536)
def tag_segment(tag: str) -> str:
    """The path segment of a tag's page (`tags/<segment>/`); empty when the tag has no letter or digit."""
    text = "".join(SPELLED.get(char, char) for char in tag_key(tag))
    kept = [char if char.isalnum() or unicodedata.category(char)[0] == "M" else " " for char in text]
    return "-".join("".join(kept).split())


def tag_problem(tag: str) -> tuple[str, str] | None:
    """(what is wrong, what to do) with a tag as written, or None when it is a good tag."""
    if not tag:
        return "a tag is empty", "write a word, or remove the empty entry"
    if len(tag) > MAX_TAG_CHARS:
        return f"tag {tag[:20]!r}… is longer than {MAX_TAG_CHARS} characters", "shorten it"
    if not tag_segment(tag):
        return f"tag {tag!r} has no letter or digit", "give it at least one: it names the tag's page"
    return None


class TagClash(ValueError):
    """Two different tags that would share one page (their segments are equal, their keys not)."""

    def __init__(self, first: str, first_where: str, other: str, other_where: str) -> None:
        super().__init__(first, first_where, other, other_where)
        self.first, self.first_where, self.other, self.other_where = first, first_where, other, other_where

    @property
    def segment(self) -> str:
        return tag_segment(self.first)

    def describe(self) -> str:
        """`tag 'a-b' and 'a/b' of issues/x.md would share the page tags/a-b/` (said of `other_where`)."""
        return f"tag '{self.other}' and '{self.first}' of {self.first_where} would share the page tags/{self.segment}/"


class TagNames:
    """The displayed form of each tag met so far: the first spelling wins; two tags that would share a page
    raise TagClash."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}  # key → displayed form
        self.where: dict[str, str] = {}  # key → where that form was first met
        self.by_segment: dict[str, str] = {}  # segment → key

    def add(self, tag: str, where: str) -> str:
        """Meet `tag` (a displayed form) in `where`; its displayed form for the whole site."""
        key = tag_key(tag)
        name = self.names.get(key)
        if name is not None:
            return name
        segment = tag_segment(tag)
        taken = self.by_segment.get(segment)
        if taken is not None:
            raise TagClash(self.names[taken], self.where[taken], tag, where)
        self.names[key] = tag
        self.where[key] = where
        self.by_segment[segment] = key
        return tag

    def name(self, tag: str) -> str:
        """The displayed form of a tag already met, in any of its spellings."""
        return self.names[tag_key(tag)]


def unique_tags(tags: Iterable[str]) -> dict[str, str]:
    """key → the first displayed form among `tags`, in their order."""
    found: dict[str, str] = {}
    for tag in tags:
        found.setdefault(tag_key(tag), tag)
    return found


def carries(tags: Iterable[str], tag: str) -> bool:
    """Whether `tags` hold `tag` in any of its spellings."""
    if tag in tags:
        return True
    key = tag_key(tag)
    return any(tag_key(other) == key for other in tags)
