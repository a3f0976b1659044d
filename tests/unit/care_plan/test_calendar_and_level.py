"""A custom calendar and a change of level (domain/groups.py): leaving a group, keeping the past."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from services.care_plan.domain.care_plan import change_level, set_calendar
from services.care_plan.domain.groups import Joined, Waitlisted
from services.care_plan.domain.model import CarePlanError, GroupPlace, LevelPeriod
from stepwise_contract import CareLevel, CareLevelChanged, GroupWaitlisted
from tests.unit.care_plan.helpers import (
    ASSIGNED_AT,
    FRI_23,
    MON_26,
    NY,
    POLICY,
    WED_21,
    book,
    group,
    ids,
    joined_plan,
    ny,
    policy_with_group_closures,
    recommendation,
    sessions_of,
)


def test_a_custom_calendar_leaves_the_group_and_keeps_the_past_and_the_appointments() -> None:
    plan, appointment = book(joined_plan(), "individual", ny(2026, 11, 3, 15))
    now = datetime(2026, 10, 27, 12, 0, tzinfo=UTC)  # Tuesday 08:00
    custom, changed = set_calendar(plan, "morning", ["tue", "thu", "sat"], 3, 4, POLICY, now)
    assert custom.group is None and custom.waitlist is None
    assert changed.reason == "custom_calendar" and changed.schedule == custom.schedule
    assert ids(custom)[:6] == [WED_21, FRI_23, MON_26, "custom-20261029", "custom-20261031", "custom-20261103"]
    assert appointment in ids(custom)
    fresh = [s for s in sessions_of(custom) if s.session_id.startswith("custom-")]
    assert len(fresh) == 4 * 3
    assert all(s.group_id is None and s.starts_at.astimezone(NY).time() == time(9, 0) for s in fresh)
    assert not [s for s in sessions_of(custom) if s.group_id == "iop-am" and s.starts_at > now]


def test_a_custom_calendar_is_not_closed_on_the_days_its_former_group_alone_does_not_meet() -> None:
    policy = policy_with_group_closures("iop-am", ["2026-10-29"])  # a Thursday: the group never meets on it
    plan = joined_plan("iop-am", policy=policy)
    now = datetime(2026, 10, 27, 12, 0, tzinfo=UTC)
    custom, _ = set_calendar(plan, "morning", ["tue", "thu", "sat"], 3, 4, policy, now)
    assert "custom-20261029" in ids(custom)


def test_a_custom_calendar_below_the_minimum_hours_is_refused() -> None:
    with pytest.raises(CarePlanError) as caught:
        set_calendar(joined_plan(), "morning", ["tue", "thu"], 3, 4, POLICY, ASSIGNED_AT)
    assert caught.value.code == "below_minimum_hours"
    assert "6 h/week is below the 9 h/week minimum" in str(caught.value)


def test_a_step_up_moves_the_plan_from_its_iop_group_to_a_php_group() -> None:
    plan, appointment = book(joined_plan(), "individual", ny(2026, 10, 29, 16))
    now = datetime(2026, 10, 27, 12, 0, tzinfo=UTC)  # Tuesday 08:00 in New York
    moved, events = change_level(plan, recommendation(CareLevel.PHP, now), POLICY, now, Joined(group("php-am")))
    assert moved.level is CareLevel.PHP
    assert moved.group == GroupPlace(group_id="php-am", joined_at=now)
    assert moved.level_history == [
        LevelPeriod(level=CareLevel.IOP, since=ASSIGNED_AT, reason="assigned"),
        LevelPeriod(level=CareLevel.PHP, since=now, reason="step_up", recommendation_id="rec-1"),
    ]
    assert ids(moved)[:4] == [WED_21, FRI_23, MON_26, "php-am-20261028"]  # the IOP sessions before now stay
    assert not [s for s in sessions_of(moved) if s.group_id == "iop-am" and s.starts_at > now]
    assert appointment in ids(moved)
    php = [s for s in sessions_of(moved) if s.group_id == "php-am"]
    assert len(php) == 4 * 5
    assert all(s.ends_at - s.starts_at == timedelta(hours=5) for s in php)
    assert moved.schedule is not None
    assert (moved.schedule.weeks, moved.schedule.days_per_week, moved.schedule.hours_per_session) == (4, 5, 5)
    [changed] = events
    assert isinstance(changed, CareLevelChanged)
    assert (changed.from_level, changed.to_level, changed.direction, changed.status) == (
        CareLevel.IOP, CareLevel.PHP, "up", "active",
    )  # fmt: skip
    assert changed.schedule == moved.schedule


def test_a_step_up_with_no_room_waits_for_the_new_levels_groups() -> None:
    now = datetime(2026, 10, 27, 12, 0, tzinfo=UTC)
    waiting = Waitlisted([group("php-am")], CareLevel.PHP, "morning", 1)
    moved, events = change_level(joined_plan(), recommendation(CareLevel.PHP, now), POLICY, now, waiting)
    assert moved.group is None
    assert moved.waitlist is not None and moved.waitlist.level is CareLevel.PHP
    assert ids(moved) == [WED_21, FRI_23, MON_26]
    assert [type(event) for event in events] == [CareLevelChanged, GroupWaitlisted]
