"""What one issue did, per edition: the send log's count, SES's delivery events for everyone, opens and clicks
per paper for consenting recipients, and unsubscribes after it (`newsletter report ISSUE`).

A figure no event could have fed yet is None ("no events yet"), never 0: SES publishes each kind of event only
once the configuration set is set up, so before the first one a zero would be a guess. Delivery, opens and
clicks are known once an event of their own kind came in for the issue; bounces, complaints and rejects once any
bounce, complaint, reject, send or delivery event of it did (SES reports them all through the same configuration
set, so none of one kind since then is a true zero). Unsubscribes come from the store and are always known.

The JSON shape (`IssueReport.as_dict`, `"format": 1`) is documented in README.md and kept stable for scripts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .errors import NewsletterError
from .issues import Edition, Issue
from .link_tags import issue_tag, paper_tag
from .store import Store
from .store.reports import (
    EventCount,
    EventSpan,
    SentEdition,
    Timeline,
    consenting_recipients,
    delivery_event_counts,
    event_span,
    sent_editions,
    timeline,
    tracking_event_counts,
    unsubscribed_after,
)

FORMAT = 1  # the JSON shape's version: a change that breaks a reader raises it
BOUNCES = frozenset({"bounce-permanent", "bounce-transient"})
FLOWING = frozenset({"send", "delivery"})  # events proving that the configuration set publishes to this store
FACTS = BOUNCES | FLOWING | {"complaint", "reject"}
# kind of a figure → the kinds of event whose arrival makes it known
KNOWN_FROM = {
    "delivery": frozenset({"delivery"}),
    "open": frozenset({"open"}),
    "click": frozenset({"click"}),
    "bounce-permanent": FACTS,
    "bounce-transient": FACTS,
    "complaint": FACTS,
    "reject": FACTS,
}


@dataclass(frozen=True)
class PaperClicks:
    """Clicks on one paper's links by consenting recipients (None: no click event of the issue yet)."""

    position: int  # 1 for the first paper on the page; 0 for links outside the papers
    anchor: str | None  # None for links outside the papers
    title: str
    clickers: int | None  # distinct recipients
    clicks: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "paper": self.anchor,
            "title": self.title,
            "clickers": self.clickers,
            "clicks": self.clicks,
        }


@dataclass(frozen=True)
class EditionReport:
    """One edition's figures (or, with lang "total", the issue's)."""

    lang: str
    sent: int
    first_sent: dt.datetime | None
    last_sent: dt.datetime | None
    delivered: int | None
    bounced_hard: int | None
    bounced_soft: int | None
    complained: int | None
    rejected: int | None
    unsubscribed: int
    consenting: int  # recipients who had consented to tracking when their message was sent
    openers: int | None
    opens: int | None
    papers: tuple[PaperClicks, ...]  # page order, then links outside the papers (if any were clicked)

    def as_dict(self) -> dict[str, Any]:
        return {
            "edition": self.lang,
            "sent": self.sent,
            "first_sent": _iso(self.first_sent),
            "last_sent": _iso(self.last_sent),
            "delivered": self.delivered,
            "bounced": {"hard": self.bounced_hard, "soft": self.bounced_soft},
            "complained": self.complained,
            "rejected": self.rejected,
            "unsubscribed": self.unsubscribed,
            "tracking": {
                "consenting": self.consenting,
                "opens": {"unique": self.openers, "total": self.opens},
                "clicks": [paper.as_dict() for paper in self.papers],
            },
        }


@dataclass(frozen=True)
class IssueReport:
    """What one issue did: its editions, their total, when its events came in, and its sends over time."""

    slug: str
    title: str
    generated_at: dt.datetime
    events: EventSpan
    editions: tuple[EditionReport, ...]
    total: EditionReport
    timeline: Timeline | None

    def as_dict(self) -> dict[str, Any]:
        line = self.timeline
        return {
            "format": FORMAT,
            "issue": self.slug,
            "title": self.title,
            "generated_at": _iso(self.generated_at),
            "events": {
                "count": self.events.count,
                "first_recorded": _iso(self.events.first_recorded),
                "last_recorded": _iso(self.events.last_recorded),
                "kinds": sorted(self.events.kinds),
            },
            "editions": [edition.as_dict() for edition in self.editions],
            "total": self.total.as_dict(),
            "timeline": None
            if line is None
            else {
                "start": _iso(line.start),
                "bucket_seconds": int(line.bucket.total_seconds()),
                "sent": list(line.sent),
                "delivered": list(line.delivered),
            },
        }


def _iso(stamp: dt.datetime | None) -> str | None:
    return None if stamp is None else stamp.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def build_report(store: Store, issue: Issue, *, now: dt.datetime | None = None) -> IssueReport:
    """The report of `issue` from the store; an issue with no message in the send log is an error."""
    sent = {row.lang: row for row in sent_editions(store, issue.slug)}
    if not sent:
        raise NewsletterError(
            issue.slug,
            "was never sent: the send log has no message of it",
            f"send it first: newsletter send {issue.slug}",
        )
    tag = issue_tag(issue.slug)
    # The queries are independent, and SQLite and the PostgreSQL driver let go of the GIL while one runs: two
    # at a time, the longest first, halve the wait on two cores.
    with ThreadPoolExecutor(max_workers=2) as pool:
        clicks = pool.submit(tracking_event_counts, store, issue.slug, tag, "click")
        opens = pool.submit(tracking_event_counts, store, issue.slug, tag, "open")
        facts_asked = pool.submit(delivery_event_counts, store, tag)
        consenting_asked = pool.submit(consenting_recipients, store, issue.slug)
        unsubscribed_asked = pool.submit(unsubscribed_after, store, issue.slug)
        facts = facts_asked.result()
        line = pool.submit(timeline, store, issue.slug, tag, *_sends_and_deliveries(sent.values(), facts))
        tracking = opens.result() + clicks.result()
        consenting, unsubscribed = consenting_asked.result(), unsubscribed_asked.result()
        span = event_span(store, tag, [*facts, *tracking])
        sends_over_time = line.result()
    by_lang = {edition.lang: edition for edition in issue.editions}
    langs = [edition.lang for edition in issue.editions if edition.lang in sent]
    langs += sorted(lang for lang in sent if lang not in by_lang)  # an edition since removed from issues/
    editions = tuple(
        _edition_report(
            lang,
            sent[lang],
            by_lang.get(lang),
            span.kinds,
            [c for c in facts if c.lang == lang],
            [c for c in tracking if c.lang == lang],
            consenting.get(lang, 0),
            unsubscribed.get(lang, 0),
        )
        for lang in langs
    )
    default = next((e for e in issue.editions if e.is_default), issue.editions[0])
    return IssueReport(
        slug=issue.slug,
        title=default.title,
        generated_at=now or dt.datetime.now(dt.UTC),
        events=span,
        editions=editions,
        total=_total(editions, [c for c in facts if c.lang not in sent], span.kinds, default),
        timeline=sends_over_time,
    )


def _sends_and_deliveries(
    sent: Iterable[SentEdition], facts: Iterable[EventCount]
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The first and the last moment a message of the issue was sent or delivered."""
    delivered = [c for c in facts if c.kind == "delivery"]
    firsts = [s.first_sent for s in sent] + [c.first_occurred for c in delivered]
    lasts = [s.last_sent for s in sent] + [c.last_occurred for c in delivered]
    known_firsts = [m for m in firsts if m is not None]
    known_lasts = [m for m in lasts if m is not None]
    return min(known_firsts, default=None), max(known_lasts, default=None)


def _known(kinds: frozenset[str], kind: str) -> bool:
    """Whether a figure of `kind` is known, from the kinds of event seen for the issue (the module's docstring)."""
    return bool(kinds & KNOWN_FROM[kind])


def _recipients(counts: Iterable[EventCount], kinds: frozenset[str], kind: str) -> int | None:
    """Distinct recipients with an event of `kind` (None while the figure is unknown)."""
    if not _known(kinds, kind):
        return None
    return sum(c.recipients for c in counts if c.kind == kind)


def _edition_report(
    lang: str,
    sent: SentEdition,
    edition: Edition | None,
    kinds: frozenset[str],
    facts: Sequence[EventCount],
    tracking: Sequence[EventCount],
    consenting: int,
    unsubscribed: int,
) -> EditionReport:
    opens = [c for c in tracking if c.kind == "open"]
    known_opens = _known(kinds, "open")
    return EditionReport(
        lang=lang,
        sent=sent.sent,
        first_sent=sent.first_sent,
        last_sent=sent.last_sent,
        delivered=_recipients(facts, kinds, "delivery"),
        bounced_hard=_recipients(facts, kinds, "bounce-permanent"),
        bounced_soft=_recipients(facts, kinds, "bounce-transient"),
        complained=_recipients(facts, kinds, "complaint"),
        rejected=_recipients(facts, kinds, "reject"),
        unsubscribed=unsubscribed,
        consenting=consenting,
        openers=sum(c.recipients for c in opens) if known_opens else None,
        opens=sum(c.total for c in opens) if known_opens else None,
        papers=_papers(edition, [c for c in tracking if c.kind == "click"], _known(kinds, "click")),
    )


def paper_keys(edition: Edition) -> dict[str, int]:
    """The `paper` link tag (link_tags.py) of each paper of `edition` → its position (1 = first)."""
    return {paper_tag(section.anchor): n for n, section in enumerate(edition.body.sections, 1)}


def _papers(edition: Edition | None, clicks: Sequence[EventCount], known: bool) -> tuple[PaperClicks, ...]:
    """Clicks per paper of `edition` in page order; clicks on other links (or on a paper no longer in the file)
    last, as one row, when there are any."""
    sections = edition.body.sections if edition is not None else ()
    keys = paper_keys(edition) if edition is not None else {}
    clickers = [0] * (len(sections) + 1)  # index 0: links outside the papers
    totals = [0] * (len(sections) + 1)
    for count in clicks:
        position = keys.get(count.paper or "", 0)
        clickers[position] += count.recipients
        totals[position] += count.total
    papers = [
        PaperClicks(
            n,
            section.anchor,
            section.title,
            clickers[n] if known else None,
            totals[n] if known else None,
        )
        for n, section in enumerate(sections, 1)
    ]
    if totals[0]:
        papers.append(PaperClicks(0, None, "other links", clickers[0], totals[0]))
    return tuple(papers)


def _add(values: Iterable[int | None]) -> int | None:
    """The sum; None when no value is known (unknown stays unknown)."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _total(
    editions: Sequence[EditionReport], unattributed: Sequence[EventCount], kinds: frozenset[str], default: Edition
) -> EditionReport:
    """The issue's figures: the editions' summed, events that name no edition included; papers by position,
    titled as in the default edition."""

    def add(field: str, kind: str) -> int | None:
        return _add([*(getattr(e, field) for e in editions), _recipients(unattributed, kinds, kind)])

    firsts = [e.first_sent for e in editions if e.first_sent is not None]
    lasts = [e.last_sent for e in editions if e.last_sent is not None]
    return EditionReport(
        lang="total",
        sent=sum(e.sent for e in editions),
        first_sent=min(firsts, default=None),
        last_sent=max(lasts, default=None),
        delivered=add("delivered", "delivery"),
        bounced_hard=add("bounced_hard", "bounce-permanent"),
        bounced_soft=add("bounced_soft", "bounce-transient"),
        complained=add("complained", "complaint"),
        rejected=add("rejected", "reject"),
        unsubscribed=sum(e.unsubscribed for e in editions),
        consenting=sum(e.consenting for e in editions),
        openers=_add(e.openers for e in editions),
        opens=_add(e.opens for e in editions),
        papers=_papers_by_position(editions, default),
    )


def _papers_by_position(editions: Sequence[EditionReport], default: Edition) -> tuple[PaperClicks, ...]:
    """Each position's clicks summed over the editions (they carry the same papers in the same order)."""
    rows: dict[int, list[PaperClicks]] = {}
    for edition in editions:
        for paper in edition.papers:
            rows.setdefault(paper.position, []).append(paper)
    titles: Mapping[int, tuple[str, str]] = {
        n: (section.anchor, section.title) for n, section in enumerate(default.body.sections, 1)
    }
    papers = []
    for position in sorted(rows, key=lambda n: (n == 0, n)):
        group = rows[position]
        anchor, title = titles.get(position, (group[0].anchor, group[0].title)) if position else (None, "other links")
        papers.append(
            PaperClicks(position, anchor, title, _add(p.clickers for p in group), _add(p.clicks for p in group))
        )
    return tuple(papers)
