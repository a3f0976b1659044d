"""Quiet hours: when a non-urgent message may reach a recipient, in the recipient's own time zone."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo


def not_before(now: datetime, timezone: str, start: time, end: time) -> datetime:
    """``now``, or the end of the quiet hours it falls in (local ``start`` to ``end``, across midnight).

    Equal start and end mean no quiet hours.
    """
    if start == end:
        return now
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    wraps = start > end  # e.g. 21:00 to 08:00
    quiet = (clock >= start or clock < end) if wraps else (start <= clock < end)
    if not quiet:
        return now
    end_day = local.date() + timedelta(days=1) if wraps and clock >= start else local.date()
    return datetime.combine(end_day, end, tzinfo=zone).astimezone(now.tzinfo)
