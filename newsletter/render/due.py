"""Which issues' time has come: their publication instants, read from the build's light records of editions
(issues.publication_instant reads only the slug, date and publish_at of an issue)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from ..config import Settings
from ..issues import Edition, Issue, agreed_publish_at, publication_instant
from .build_cache import ListedEdition


def instant_of(slug: str, date: dt.date, publish_at: dt.datetime | None, settings: Settings) -> dt.datetime:
    """The publication instant of the issue `slug` of `date` with `publish_at`, without its full editions."""
    return publication_instant(Issue(slug=slug, date=date, editions=(), publish_at=publish_at), settings)


def issue_instant(
    issue: list[ListedEdition], settings: Settings, full: Callable[[ListedEdition], Edition]
) -> dt.datetime:
    """When `issue` (its editions' records) is published. Editions that disagree on publish_at are refused with
    the error `check` and `send` give (issues.agreed_publish_at, which reads the full editions)."""
    given = [e.publish_at for e in issue if e.publish_at is not None]
    if any(other != given[0] for other in given[1:]):
        agreed_publish_at(full(e) for e in issue)
    return instant_of(issue[0].slug, issue[0].date, given[0] if given else None, settings)


def split_by_time(
    issues: list[list[ListedEdition]], settings: Settings, now: dt.datetime, full: Callable[[ListedEdition], Edition]
) -> tuple[list[list[ListedEdition]], dict[str, dt.datetime], list[tuple[str, dt.datetime]]]:
    """(the issues whose time has come at `now`, in the order given; every issue's instant by slug; (slug,
    instant) of the others, soonest first)."""
    instants = {issue[0].slug: issue_instant(issue, settings, full) for issue in issues}
    come = [issue for issue in issues if instants[issue[0].slug] <= now]
    later = sorted(((slug, at) for slug, at in instants.items() if at > now), key=lambda item: (item[1], item[0]))
    return come, instants, later
