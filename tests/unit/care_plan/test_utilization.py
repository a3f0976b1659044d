"""Utilization by kind of session (domain/attendance_rules.py): a week's hours against the level's minimum."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from services.care_plan.domain.attendance_rules import UtilizationShortfall, utilization_shortfalls
from services.care_plan.domain.model import AttendanceStatus, CarePlan
from tests.unit.care_plan.helpers import (
    FRI_30,
    LATER,
    MON_26,
    WED_21,
    WED_28,
    attend,
    book,
    joined_plan,
    ny,
    waiting_plan,
)

WEEK_OF_26 = date(2026, 10, 26)  # Mon 26, Wed 28, Fri 30 October: a full week of the IOP group


def utilization(plan: CarePlan, own: bool = True) -> list[UtilizationShortfall]:
    assert plan.schedule is not None
    appointments = [a.session_id for a in plan.appointments] if own else []
    shortfalls = utilization_shortfalls(plan.schedule, plan.attendance, 9, [], LATER, appointments)
    return [week for week in shortfalls if week.week_start == WEEK_OF_26]


def week_with(individual_minutes: int, group_statuses: Sequence[AttendanceStatus]) -> CarePlan:
    plan, individual = book(joined_plan(), "individual", ny(2026, 10, 27, 14), minutes=individual_minutes)
    for session_id, status in zip([MON_26, WED_28, FRI_30], group_statuses, strict=True):
        plan = attend(plan, session_id, status, LATER)
    return attend(plan, individual, "attended", LATER)


def test_an_individual_hour_counts_toward_the_weekly_minimum() -> None:
    plan = week_with(60, ["attended", "attended", "missed"])
    assert utilization(plan) == [UtilizationShortfall(WEEK_OF_26, 7.0, 9.0, {"group": 6.0, "individual": 1.0})]
    assert utilization(week_with(180, ["attended", "attended", "missed"])) == []  # 6 group + 3 individual hours


def test_an_appointment_does_not_raise_the_weeks_minimum() -> None:
    plan, individual = book(joined_plan(), "individual", ny(2026, 10, 22, 14), minutes=60)  # Thu of the 1st week
    plan = attend(plan, WED_21, "attended", LATER)
    plan = attend(plan, individual, "attended", LATER)
    assert plan.schedule is not None
    first_week = date(2026, 10, 19)  # Wed 21 and Fri 23 only: 2 of 3 group days, 6 hours
    own = [individual]
    assert utilization_shortfalls(plan.schedule, plan.attendance, 9, [], LATER, own)[0] == UtilizationShortfall(
        first_week, 4.0, 6.0, {"group": 3.0, "individual": 1.0}
    )
    assert utilization_shortfalls(plan.schedule, plan.attendance, 9, [], LATER)[0].minimum_hours == 9.0


def test_a_week_of_own_appointments_only_is_judged_the_same_whatever_the_schedules_days_per_week() -> None:
    plan, individual = book(waiting_plan(), "individual", ny(2026, 10, 27, 14), minutes=60)
    plan = attend(plan, individual, "attended", LATER)
    assert plan.schedule is not None and plan.schedule.days_per_week == 0
    waiting_since_assignment = utilization_shortfalls(plan.schedule, plan.attendance, 9, [], LATER, [individual])
    moved_schedule = plan.schedule.model_copy(update={"days_per_week": 3})
    waiting_after_a_move = utilization_shortfalls(moved_schedule, plan.attendance, 9, [], LATER, [individual])
    assert waiting_since_assignment == waiting_after_a_move


def test_hours_by_kind_lists_only_the_kinds_attended() -> None:
    plan = week_with(60, ["missed", "missed", "excused"])
    [week] = utilization(plan)
    assert (week.hours_attended, week.minimum_hours, dict(week.hours_by_kind)) == (1.0, 9.0, {"individual": 1.0})


def test_partial_minutes_count_as_the_hours_attended() -> None:
    plan = week_with(60, ["attended", "attended", "attended"])
    plan = attend(plan, FRI_30, "late", LATER, minutes=90)
    [week] = utilization(plan)
    assert dict(week.hours_by_kind) == {"group": 7.5, "individual": 1.0}
    assert week.hours_attended == 8.5
