"""An edition's HTML as feed content: every link absolute against the edition's page, what feed readers refuse
left out, and each paper cut out.

Feed readers resolve a relative link (`#anchor`, `img.png`, `../tags/x/`) against the feed's own URL, never the
page's, so each is resolved here, with lxml's HTML parser (the W3C validator's ContainsRelRef). The editor's raw
HTML stays on the page as written; in feeds, scripts, styles, frames and plugins are dropped, and so are event
handler and style attributes (the validator's SecurityRisk, SecurityRiskAttr and DangerousStyleAttr).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import urljoin

# Attributes whose value is one URL (HTML's link and resource attributes); srcset holds several.
URL_ATTRIBUTES = ("href", "src", "cite", "poster", "action", "formaction", "data", "longdesc", "background")
# Elements feed readers strip and the W3C validator flags, dropped with what they hold.
UNSAFE_ELEMENTS = frozenset(
    ("script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "link", "meta", "base")
)


@dataclass(frozen=True)
class FeedContent:
    """An edition's content with absolute links: the whole, and the element of each paper asked for."""

    whole: str
    papers: dict[str, str]  # element id (a section's anchor) → that element's HTML


def feed_content(html: str, page_url: str, anchors: Collection[str] = ()) -> FeedContent:
    """`html` with every relative URL resolved against `page_url` (a bare `#anchor` becomes `page_url#anchor`),
    and the HTML of the element whose id is each of `anchors` (those the HTML lacks are left out)."""
    from lxml import html as lxml_html  # loads only when a feed is rendered

    root = lxml_html.fragment_fromstring(html, create_parent="div")
    wanted = set(anchors)
    found = {}
    unsafe = []
    for element in root.iter():
        if element.tag in UNSAFE_ELEMENTS:
            unsafe.append(element)
            continue
        attributes = element.attrib
        if not attributes:
            continue
        for name in [name for name in attributes if name == "style" or name.startswith("on")]:
            del attributes[name]
        for name in URL_ATTRIBUTES:
            value = attributes.get(name)
            if value is not None:
                attributes[name] = urljoin(page_url, value.strip())
        srcset = attributes.get("srcset")
        if srcset is not None:
            attributes["srcset"] = _absolute_srcset(srcset, page_url)
        if wanted and attributes.get("id") in wanted:
            found[attributes["id"]] = element
    for element in unsafe:
        if element.getparent() is not None:
            element.drop_tree()  # keeps the text after it
    whole = lxml_html.tostring(root, encoding="unicode").removeprefix("<div>").removesuffix("</div>")
    papers = {anchor: lxml_html.tostring(e, encoding="unicode", with_tail=False) for anchor, e in found.items()}
    return FeedContent(whole, papers)


def absolutize(html: str, page_url: str) -> str:
    """`html` with every relative href, src (and the other URL attributes) resolved against `page_url`."""
    return feed_content(html, page_url).whole


def _absolute_srcset(srcset: str, base: str) -> str:
    """`a.png 1x, b.png 2x` with each URL resolved against `base`."""
    candidates = []
    for candidate in srcset.split(","):
        url, _, descriptor = candidate.strip().partition(" ")
        if url:
            candidates.append(f"{urljoin(base, url)} {descriptor.strip()}".rstrip())
    return ", ".join(candidates)
