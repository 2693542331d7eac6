"""An issue's report as one self-contained HTML page: the figures per edition, a CSS bar chart of clicks per
paper and an inline SVG chart of sends and deliveries over time. No script, style sheet, font or image is
fetched (its Content-Security-Policy allows none). It goes beside the preview or into a private folder, never
into the public site/.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import zoneinfo
from pathlib import Path

from .config import Settings
from .errors import NewsletterError
from .render.site import check_out_folder
from .report import EditionReport, IssueReport
from .report_table import FIGURES, TRACKING, UNKNOWN
from .time_words import on_clock

PAGE_NAME = "report.html"
PRIVATE_HINT = "write the report into a private folder, such as preview/"

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
table { border-collapse: collapse; } td, th { padding: .2rem .6rem; text-align: right; }
td:first-child, th:first-child { text-align: left; } tr:nth-child(even) { background: #f4f4f4; }
.unknown { color: #888; font-style: italic; }
.bars { display: grid; grid-template-columns: minmax(10rem, 22rem) 1fr; gap: .3rem .8rem; align-items: center; }
.bar { background: #3b6fb6; height: 1.1rem; min-width: 1px; } .bar-value { font-size: .85rem; margin-left: .4rem; }
.bar-row { display: flex; align-items: center; }
svg text { font: 11px system-ui, sans-serif; fill: #444; } .sent { fill: #9bb7de; } .delivered { fill: #2f7d4a; }
"""


def check_report_folder(out: Path, settings: Settings) -> None:
    """Refuse a folder inside (or holding) the public site/, or one holding or inside the publication's sources."""
    out = out.resolve()
    site = (settings.root / "site").resolve()
    if out == site or out.is_relative_to(site):
        raise NewsletterError(f"--out {out}", "is inside the public site/, which anyone can read", PRIVATE_HINT)
    if site.is_relative_to(out):
        raise NewsletterError(f"--out {out}", "holds the public site/", PRIVATE_HINT)
    check_out_folder(out, settings, hint=PRIVATE_HINT)


def write_report_page(report: IssueReport, folder: Path, zone: zoneinfo.ZoneInfo) -> Path:
    """Write `folder`/report.html (atomically) and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / PAGE_NAME
    temporary = path.with_suffix(".html.tmp")
    temporary.write_text(render_report_page(report, zone), encoding="utf-8")
    os.replace(temporary, path)
    return path


def _cell(value: int | None) -> str:
    return f'<td class="unknown">{UNKNOWN}</td>' if value is None else f"<td>{value:,}</td>"


def _figures(report: IssueReport) -> str:
    columns: list[EditionReport] = [*report.editions, report.total] if len(report.editions) > 1 else [report.total]
    head = "".join(f"<th>{html.escape(e.lang)}</th>" for e in columns)
    rows = [f"<tr><th></th>{head}</tr>"]
    for label, field in (*FIGURES, *TRACKING):
        cells = "".join(_cell(getattr(e, field)) for e in columns)
        rows.append(f"<tr><td>{html.escape(label)}</td>{cells}</tr>")
    return f'<table class="figures">{"".join(rows)}</table>'


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _clicks_chart(report: IssueReport) -> str:
    """Horizontal CSS bars: clicks per paper over all editions, in page order."""
    papers = report.total.papers
    if not papers:
        return "<p>The issue has no papers (## sections).</p>"
    if all(p.clicks is None for p in papers):
        return f'<p class="unknown">{UNKNOWN}: no click event has come in for this issue.</p>'
    most = max((p.clicks or 0) for p in papers) or 1
    rows = []
    for paper in papers:
        clicks, clickers = paper.clicks or 0, paper.clickers or 0
        width = 100 * clicks / most
        label = f"{paper.position}. {paper.title}" if paper.position else paper.title
        rows.append(
            f'<div class="bar-label">{html.escape(label)}</div><div class="bar-row">'
            f'<div class="bar" style="width: {width:.1f}%"></div>'
            f'<span class="bar-value">{_count(clicks, "click")}, {_count(clickers, "reader")}</span></div>'
        )
    return f'<div class="bars chart clicks-per-paper" role="img" aria-label="Clicks per paper">{"".join(rows)}</div>'


def _timeline_chart(report: IssueReport, zone: zoneinfo.ZoneInfo) -> str:
    """An inline SVG: per time bucket, messages sent (the send log) and delivered (delivery events)."""
    line = report.timeline
    if line is None:
        return "<p>Nothing was sent yet.</p>"
    count = len(line.sent)
    most = max((*line.sent, *line.delivered, 1))
    width, height, left, bottom = 720, 220, 64, 28
    slot = (width - left) / count
    bar = min(max(slot / 2 - 1, 1), 24)
    shapes = []
    for n, (sent, delivered) in enumerate(zip(line.sent, line.delivered, strict=True)):
        x = left + n * slot
        for offset, value, kind in ((0, sent, "sent"), (bar, delivered, "delivered")):
            tall = (height - bottom - 10) * value / most
            moment = on_clock(line.start + n * line.bucket, zone)
            shapes.append(
                f'<rect class="{kind}" x="{x + offset:.1f}" y="{height - bottom - tall:.1f}" '
                f'width="{bar:.1f}" height="{tall:.1f}"><title>{moment}: {value:,} {kind}</title></rect>'
            )
    end = line.start + count * line.bucket
    axis = (
        f'<text x="{left}" y="{height - 8}">{html.escape(on_clock(line.start, zone))}</text>'
        f'<text x="{width}" y="{height - 8}" text-anchor="end">{html.escape(on_clock(end, zone))}</text>'
        f'<text x="{left - 6}" y="16" text-anchor="end">{most:,}</text>'
        f'<text x="{left - 6}" y="{height - bottom}" text-anchor="end">0</text>'
        f'<line x1="{left}" y1="{height - bottom}" x2="{width}" y2="{height - bottom}" stroke="#888"/>'
    )
    minutes = int(line.bucket.total_seconds() // 60)
    no_deliveries = "" if any(line.delivered) else f" Delivered: {UNKNOWN}."
    return (
        f'<svg class="chart deliveries-over-time" role="img" viewBox="0 0 {width} {height}" width="100%" '
        f'xmlns="http://www.w3.org/2000/svg"><title>Sent and delivered per {minutes} min</title>'
        f"{''.join(shapes)}{axis}</svg>"
        f'<p><svg width="10" height="10"><rect class="sent" width="10" height="10"/></svg> sent (the send log) '
        f'<svg width="10" height="10"><rect class="delivered" width="10" height="10"/></svg> delivered (SES '
        f"delivery events), per {minutes} min.{no_deliveries}</p>"
    )


def render_report_page(report: IssueReport, zone: zoneinfo.ZoneInfo) -> str:
    """The whole page as text."""
    total, span = report.total, report.events
    sent = (
        f"Sent {on_clock(total.first_sent, zone)} to {on_clock(total.last_sent, zone)} (the send log)."
        if total.first_sent and total.last_sent
        else "No message was accepted by the transport."
    )
    seen = (
        f"Events seen since {on_clock(span.first_recorded, zone)} ({span.count:,} events, the last "
        f"{on_clock(span.last_recorded, zone)})."
        if span.first_recorded and span.last_recorded
        else f"No events seen for this issue yet: what SES reports says “{UNKNOWN}”, not 0."
    )
    made = on_clock(report.generated_at.astimezone(dt.UTC), zone)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="robots" content="noindex">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Report: {html.escape(report.slug)}</title>
<style>{STYLE}</style></head>
<body>
<h1>{html.escape(report.title)}</h1>
<p>{html.escape(report.slug)} · {html.escape(sent)} {html.escape(seen)} Made {html.escape(made)}.</p>
<h2>Per edition</h2>
{_figures(report)}
<p>Opens and clicks count only recipients who had consented to tracking when their message was sent:
{total.consenting:,} of {total.sent:,}.</p>
<h2>Clicks per paper</h2>
{_clicks_chart(report)}
<h2>Sent and delivered over time</h2>
{_timeline_chart(report, zone)}
</body></html>
"""
