"""Moments and spans of time in the words the CLI prints: `2026-12-02 09:00 KST`, `3 h 5 min`, `24 h`.

Light on purpose (no sending, no rendering): `build`, `status` and `send --due` all print these.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo


def on_clock(moment: dt.datetime, zone: zoneinfo.ZoneInfo) -> str:
    """`moment` on the publication's clock: 2026-12-02 09:00 KST (or +05:30 where the zone has no abbreviation)."""
    local = moment.astimezone(zone)
    name = local.tzname() or ""
    if not name.isalpha():
        offset = local.strftime("%z")
        name = f"{offset[:3]}:{offset[3:]}"
    return f"{local:%Y-%m-%d %H:%M} {name}"


def setting_span(delta: dt.timedelta) -> str:
    """A setting's span as one would write it: 24 h, 3 d, 90 min."""
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0 and (unit != "d" or seconds >= 2 * size):
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def span(delta: dt.timedelta) -> str:
    """A length of time, rounded down to what a reader needs: 40 s, 12 min, 3 h 5 min, 6 d 14 h."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        hours, minutes = divmod(seconds // 60, 60)
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    days, hours = divmod(seconds // 3600, 24)
    return f"{days} d" + (f" {hours} h" if hours else "")
