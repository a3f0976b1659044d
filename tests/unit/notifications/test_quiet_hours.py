"""Quiet hours in the recipient's zone: inside them a message waits for their end, outside it goes now."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from services.notifications.domain.quiet_hours import not_before

NY = "America/New_York"
START, END = time(21, 0), time(8, 0)


def at(local: str, zone: str = NY) -> datetime:
    return datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("2026-11-23T20:59", "2026-11-23T20:59"),  # just before: now
        ("2026-11-23T21:00", "2026-11-24T08:00"),  # evening: next morning
        ("2026-11-23T23:30", "2026-11-24T08:00"),
        ("2026-11-24T03:00", "2026-11-24T08:00"),  # small hours: this morning
        ("2026-11-24T07:59", "2026-11-24T08:00"),
        ("2026-11-24T08:00", "2026-11-24T08:00"),  # the end is allowed
        ("2026-11-24T13:00", "2026-11-24T13:00"),
    ],
)
def test_inside_quiet_hours_waits_for_their_end(local: str, expected: str) -> None:
    assert not_before(at(local), NY, START, END) == at(expected)


def test_the_end_is_local_time_across_a_dst_change() -> None:
    # Clocks fall back on 2026-11-01 at 02:00 in New York: 08:00 local is 13:00 UTC after, 12:00 UTC before.
    assert not_before(at("2026-10-31T22:00"), NY, START, END) == datetime(2026, 11, 1, 13, 0, tzinfo=UTC)


def test_a_window_within_one_day_and_no_window() -> None:
    assert not_before(at("2026-11-24T13:30"), NY, time(13), time(14)) == at("2026-11-24T14:00")
    assert not_before(at("2026-11-24T03:00"), NY, time(0), time(0)) == at("2026-11-24T03:00")


@given(
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2028, 1, 1)),
    st.sampled_from([NY, "Europe/Berlin", "Asia/Kolkata"]),
)
@example(datetime(2027, 11, 7, 1, 0), NY)  # 21:00 EDT, the night the clocks go back: 12 hours of quiet
def test_the_result_is_never_earlier_and_never_inside_quiet_hours(moment: datetime, zone: str) -> None:
    now = moment.replace(tzinfo=UTC)
    allowed = not_before(now, zone, START, END)
    # At most one night of quiet hours: 11 hours, 12 on the night the clocks go back (21:00 EDT to 08:00 EST).
    assert now <= allowed <= now + timedelta(hours=12)
    clock = allowed.astimezone(ZoneInfo(zone)).time()
    assert END <= clock < START or allowed == now
    if allowed > now:  # the first moment allowed: a second earlier is still inside quiet hours
        before = (allowed - timedelta(seconds=1)).astimezone(ZoneInfo(zone)).time()
        assert before >= START or before < END
