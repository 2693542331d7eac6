"""An issue's report as aligned text for the terminal: one column per edition and the total, measured in
terminal columns (Hangul takes two), unknown figures written as "no events yet"."""

from __future__ import annotations

import zoneinfo
from collections.abc import Sequence

from .markdown import display_width
from .report import EditionReport, IssueReport
from .time_words import on_clock

UNKNOWN = "no events yet"
TITLE_WIDTH = 44  # columns a paper's title may take before it is cut


def _number(value: int | None) -> str:
    return UNKNOWN if value is None else f"{value:,}"


def _pair(clickers: int | None, clicks: int | None) -> str:
    return UNKNOWN if clickers is None or clicks is None else f"{clickers:,} / {clicks:,}"


def _fit(text: str, width: int) -> str:
    """`text` cut to `width` columns (an ellipsis marks the cut)."""
    if display_width(text) <= width:
        return text
    kept = ""
    for char in text:
        if display_width(kept + char + "…") > width:
            break
        kept += char
    return kept + "…"


def _pad(text: str, width: int, *, right: bool) -> str:
    gap = " " * max(0, width - display_width(text))
    return gap + text if right else text + gap


def _table(rows: Sequence[Sequence[str]], right_from: int = 1) -> list[str]:
    """Rows of cells as lines, each column as wide as its widest cell; cells from `right_from` on right-aligned."""
    widths = [max(display_width(row[n]) for row in rows) for n in range(len(rows[0]))]
    return [
        "  ".join(_pad(cell, widths[n], right=n >= right_from) for n, cell in enumerate(row)).rstrip() for row in rows
    ]


FIGURES: tuple[tuple[str, str], ...] = (
    ("sent (send log)", "sent"),
    ("delivered", "delivered"),
    ("bounced, hard", "bounced_hard"),
    ("bounced, soft", "bounced_soft"),
    ("complained", "complained"),
    ("rejected", "rejected"),
    ("unsubscribed after it", "unsubscribed"),
)
TRACKING: tuple[tuple[str, str], ...] = (
    ("consenting recipients", "consenting"),
    ("opens, unique", "openers"),
    ("opens, total", "opens"),
)


def format_report(report: IssueReport, zone: zoneinfo.ZoneInfo) -> str:
    """The report as lines of text: a heading, the figures per edition, then clicks per paper."""
    columns: list[EditionReport] = [*report.editions, report.total] if len(report.editions) > 1 else [report.total]
    names = [e.lang for e in report.editions] + (["total"] if len(report.editions) > 1 else [])
    lines = [f"{report.slug}: {report.title}"]
    total = report.total
    if total.first_sent and total.last_sent:
        first, last = on_clock(total.first_sent, zone), on_clock(total.last_sent, zone)
        lines.append(f"Sent {first}{'' if last == first else f' to {last}'} (the send log)")
    span = report.events
    if span.first_recorded and span.last_recorded:
        lines.append(
            f"Events seen since {on_clock(span.first_recorded, zone)} ({span.count:,} events, the last "
            f"{on_clock(span.last_recorded, zone)}): {', '.join(sorted(span.kinds))}"
        )
    else:
        lines.append(f"No events seen for this issue yet: what SES reports says {UNKNOWN!r}, not 0")
    lines.append("")
    rows = [["", *names]]
    for label, field in FIGURES:
        rows.append([label, *(_number(getattr(e, field)) for e in columns)])
    rows.append(["tracking, consenting only:", *("" for _ in columns)])
    for label, field in TRACKING:
        rows.append([f"  {label}", *(_number(getattr(e, field)) for e in columns)])
    lines += _table(rows)
    lines.append("")
    consented = f"consenting recipients: {total.consenting:,} of {total.sent:,}"
    if all(paper.clicks is None for paper in total.papers):
        lines.append(f"Clicks per paper: {UNKNOWN} ({consented}; {len(total.papers)} papers)")
        return "\n".join(lines)
    lines.append(f"Clicks per paper ({consented}; clickers / clicks):")
    papers = [["#", "paper", *names]]
    by_position = [{paper.position: paper for paper in e.papers} for e in columns]
    for paper in total.papers:
        cells = []
        for mine in by_position:
            own = mine.get(paper.position)
            cells.append(
                _pair(own.clickers, own.clicks) if own else _pair(0, 0) if paper.clicks is not None else UNKNOWN
            )
        papers.append([str(paper.position) if paper.position else "-", _fit(paper.title, TITLE_WIDTH), *cells])
    lines += ["  " + line for line in _table(papers, right_from=2)]
    return "\n".join(lines)
