"""SES tag values: each message's `issue` tag (`issue_tag`), and the link tags: each paper's links in the email
carry `ses:tags="paper:<tag>;"`, so SES's click events name the paper (events.paper in the store) when the
recipient consented to click tracking.

A tag value may hold only ASCII letters, digits, `_` and `-` (at most 256 characters). An anchor made of those
alone (and no `_`) is its own tag; any other keeps its ASCII words and gains `_` and 8 hex digits of its
SHA-256 (`반전의-저주-the-reversal-curse` → `the-reversal-curse_36e21849`): short, one per anchor, and a report
finds a tag's paper by computing `paper_tag` of each anchor of the issue.
"""

from __future__ import annotations

import functools
import hashlib
import re

SAFE = re.compile(r"[A-Za-z0-9-]{1,256}")
UNSAFE = re.compile(r"[^A-Za-z0-9-]+")
WORDS_KEPT = 200  # characters of an anchor's ASCII words kept in front of its digest


@functools.lru_cache(maxsize=64)
def issue_tag(slug: str) -> str:
    """The `issue` tag value of an issue's messages, which its SES events carry (events.issue in the store): SES
    tag values allow ASCII letters, digits, '_' and '-' only."""
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "_-") else "_" for ch in slug)[:256]


def paper_tag(anchor: str) -> str:
    """The `paper` link tag value of a paper's anchor."""
    if SAFE.fullmatch(anchor):
        return anchor
    words = re.sub("-{2,}", "-", UNSAFE.sub("-", anchor)).strip("-")[:WORDS_KEPT]
    return f"{words}_{hashlib.sha256(anchor.encode()).hexdigest()[:8]}"


def link_attribute(anchor: str) -> str:
    """The attribute that tags an <a> of the paper with this anchor, with its leading space."""
    return f' ses:tags="paper:{paper_tag(anchor)};"'


def tag_links(html: str, anchor: str) -> str:
    """Every <a> of a sanitised HTML fragment (nh3's output: `<a href=…>`, never `<` inside a value) tagged."""
    attribute = link_attribute(anchor)
    return re.sub(r"<a(?=[\s>])", lambda _: "<a" + attribute, html)
