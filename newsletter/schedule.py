"""Which issues `newsletter send --due` sends now, from each issue's publication instant, an injected `now`,
`max_late` and what the send log says of it. Nothing here sends, renders or writes.

An issue is due from its instant until `max_late` after it. Fully sent means its send log exists and holds
nothing a send would still hand over (pending, claimed by a stopped or killed send, or deferred) to a subscriber
who is still active: every message was sent, failed for good, skipped, or had an unknown outcome.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable
from dataclasses import dataclass

from .config import Settings
from .errors import NewsletterError
from .issues import FILE_NAME, Edition, Issue, find_issue_files, group_editions, parse_issue, publication_instant
from .store import TO_SEND, Store, delivery_counts, plan_audience


class Standing(enum.StrEnum):
    """Where an issue stands for `send --due` at one moment."""

    DRAFT = "draft"  # its default edition is a draft: never due
    SCHEDULED = "scheduled"  # its time has not come
    DUE = "due"  # its time came at most max_late ago and it was never started: --due starts it
    RESUMABLE = "resumable"  # started, not fully sent, its time at most max_late ago: --due resumes it
    SENT = "sent"  # fully sent: nothing left to hand over
    MISSED = "missed"  # never started and more than max_late past its time: --due never starts it
    UNFINISHED = "unfinished"  # started, not fully sent, more than max_late past its time: only --late-ok resumes it


@dataclass(frozen=True)
class Scheduled:
    """One issue's standing at `now`: its instant, and the messages its send log still has to hand over."""

    issue: Issue
    at: dt.datetime  # the publication instant
    standing: Standing
    late: dt.timedelta  # how long ago its instant was (negative: still to come)
    left: int = 0  # messages a send would still hand over (RESUMABLE and UNFINISHED)
    logged: int = 0  # messages in its send log

    def is_due(self, *, late_ok: bool = False) -> bool:
        """Whether `send --due` sends it now (with `late_ok`, unfinished sends past max_late too)."""
        return self.standing in (Standing.DUE, Standing.RESUMABLE) or (late_ok and self.standing == Standing.UNFINISHED)


def schedule(settings: Settings, issues: Iterable[Issue], store: Store, now: dt.datetime) -> list[Scheduled]:
    """The standing of every issue at `now` (timezone-aware), oldest instant first.

    Issues whose time has not come and drafts cost no query; the others one count of their send log (and, when it
    has messages left, the query that a send's plan makes).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    entries = []
    for issue in issues:
        at = publication_instant(issue, settings)
        late = now - at
        if issue.default.draft:
            entries.append(Scheduled(issue, at, Standing.DRAFT, late))
            continue
        if late < dt.timedelta(0):
            entries.append(Scheduled(issue, at, Standing.SCHEDULED, late))
            continue
        counts = delivery_counts(store, issue.slug)
        logged = sum(counts.values())
        in_time = late <= settings.max_late
        if not logged:
            entries.append(Scheduled(issue, at, Standing.DUE if in_time else Standing.MISSED, late))
            continue
        left = _left(settings, store, issue) if any(counts[state] for state in TO_SEND) else 0
        if not left:
            standing = Standing.SENT
        else:
            standing = Standing.RESUMABLE if in_time else Standing.UNFINISHED
        entries.append(Scheduled(issue, at, standing, late, left, logged))
    entries.sort(key=lambda entry: (entry.at, entry.issue.slug))
    return entries


def _left(settings: Settings, store: Store, issue: Issue) -> int:
    """Messages a resumed send of `issue` would hand over: those left in its send log for active subscribers."""
    editions = [edition.lang for edition in issue.editions if not edition.draft]
    return plan_audience(store, issue.slug, editions, settings.language, resend=False, include_new=False).total


def load_schedulable(settings: Settings) -> tuple[list[Issue], list[NewsletterError]]:
    """Every issue whose files all parse, and the errors of the others: a broken file holds back only its own
    issue, so a half-written draft never stops another issue's scheduled send."""
    by_slug: dict[str, list[Edition]] = {}
    broken: set[str] = set()
    errors: list[NewsletterError] = []
    for path in find_issue_files(settings):
        try:
            edition = parse_issue(path, settings)
        except NewsletterError as err:
            errors.append(err)
            match = FILE_NAME.match(path.name)
            if match:
                broken.add(f"{match['date']}-{match['name']}")
            continue
        by_slug.setdefault(edition.slug, []).append(edition)
    issues: list[Issue] = []
    for slug, editions in by_slug.items():
        if slug in broken:
            continue
        try:
            issues.extend(group_editions(editions, settings))
        except NewsletterError as err:  # no default edition, two of one language, publish_at disagreeing
            errors.append(err)
    return issues, errors
