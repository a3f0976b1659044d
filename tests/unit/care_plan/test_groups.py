"""Program groups and a plan's calendar (domain/groups.py), services delivered and service days
(domain/services.py), and what groups changed in attendance, utilization and the policy."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from services.care_plan.domain.attendance_rules import UtilizationShortfall, utilization_shortfalls
from services.care_plan.domain.care_plan import (
    assign_care_level,
    change_level,
    graduate,
    record_attendance,
    set_calendar,
)
from services.care_plan.domain.groups import (
    APPOINTMENT_HORIZON,
    MOST_APPOINTMENTS_AHEAD,
    Joined,
    Placement,
    Waitlisted,
    book_appointment,
    build_schedule,
    calendar_with,
    cancel_appointment,
    change_track,
    first_meeting_after,
    join_from_waitlist,
    place,
)
from services.care_plan.domain.model import (
    AttendanceRecord,
    AttendanceStatus,
    CarePlan,
    CarePlanError,
    GroupPlace,
    LevelPeriod,
    ServiceDay,
    StepRecommendation,
    WaitlistPlace,
)
from services.care_plan.domain.policy import (
    DEFAULT_POLICY_FILE,
    BillingCode,
    CarePolicy,
    ProgramGroup,
    SessionKindPolicy,
    load_policy,
)
from services.care_plan.domain.services import billing_code, review_services
from services.common.policy_file import PolicyError
from stepwise_contract import (
    AssessmentCompleted,
    CareLevel,
    CareLevelAssigned,
    CareLevelChanged,
    DimensionRatings,
    EventData,
    GroupWaitlisted,
    Program,
    Reason,
    ScheduleChanged,
    ScheduledSession,
    ServiceDayCompleted,
    ServiceDelivered,
    SessionMissed,
)
from tests.unit.care_plan.test_care_plan import default_raw, raw_group

NEW_YORK = "America/New_York"
NY = ZoneInfo(NEW_YORK)
POLICY = load_policy()
ASSIGNED_AT = datetime(2026, 10, 20, 15, 0, tzinfo=UTC)  # Tuesday 11:00 in New York
LATER = datetime(2027, 6, 1, tzinfo=UTC)

# The IOP morning group (Mon, Wed, Fri 09:00-12:00 New York) from Tuesday 2026-10-20.
WED_21, FRI_23, MON_26, WED_28, FRI_30 = (
    "iop-am-20261021",
    "iop-am-20261023",
    "iop-am-20261026",
    "iop-am-20261028",
    "iop-am-20261030",
)


# --- helpers ------------------------------------------------------------------------------------------------


def group(group_id: str, policy: CarePolicy = POLICY) -> ProgramGroup:
    found = policy.group(group_id)
    assert found is not None, group_id
    return found


def ny(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A New York wall-clock time."""
    return datetime(year, month, day, hour, minute, tzinfo=NY)


def assessment(
    level: CareLevel = CareLevel.IOP, program: Program = "adult", episode_id: str = "ep-1"
) -> AssessmentCompleted:
    return AssessmentCompleted(
        episode_id=episode_id,
        assessment_id="as-1",
        kind="intake",
        program=program,
        assessed_at=ASSIGNED_AT - timedelta(hours=1),
        dimensions=DimensionRatings(withdrawal=0, biomedical=0, emotional=2, readiness=1, relapse=1, environment=0),
        recommended_level=level,
        rationale=[Reason(code="highest_dimension", text="Highest dimension rating is 2 (emotional): IOP.")],
        policy_version="placement-1",
    )


def new_plan(
    placement: Placement,
    now: datetime = ASSIGNED_AT,
    level: CareLevel = CareLevel.IOP,
    program: Program = "adult",
    policy: CarePolicy = POLICY,
) -> tuple[CarePlan, list[EventData]]:
    return assign_care_level(assessment(level, program), policy, NEW_YORK, now, placement)


def joined_plan(group_id: str = "iop-am", now: datetime = ASSIGNED_AT, policy: CarePolicy = POLICY) -> CarePlan:
    joined = group(group_id, policy)
    plan, _ = new_plan(Joined(joined), now, joined.level, policy=policy)
    return plan


def waiting_plan(now: datetime = ASSIGNED_AT, position: int = 1) -> CarePlan:
    plan, _ = new_plan(Waitlisted([group("iop-am")], CareLevel.IOP, "morning", position), now)
    return plan


def ids(plan: CarePlan) -> list[str]:
    assert plan.schedule is not None
    return [session.session_id for session in plan.schedule.sessions]


def sessions_of(plan: CarePlan) -> list[ScheduledSession]:
    assert plan.schedule is not None
    return plan.schedule.sessions


def session_of(plan: CarePlan, session_id: str) -> ScheduledSession:
    return next(session for session in sessions_of(plan) if session.session_id == session_id)


def attend(
    plan: CarePlan, session_id: str, status: AttendanceStatus, at: datetime, minutes: int | None = None
) -> CarePlan:
    attendance, _ = record_attendance(plan, session_id, status, at, minutes=minutes)
    return plan.model_copy(update={"attendance": attendance})


def book(plan: CarePlan, kind: str, starts_at: datetime, minutes: int | None = None) -> tuple[CarePlan, str]:
    booked, _, session_id = book_appointment(plan, kind, starts_at, minutes, POLICY, ASSIGNED_AT)
    return booked, session_id


def delivered_events(events: Sequence[EventData]) -> list[ServiceDelivered]:
    return [event for event in events if isinstance(event, ServiceDelivered)]


def day_events(events: Sequence[EventData]) -> list[ServiceDayCompleted]:
    return [event for event in events if isinstance(event, ServiceDayCompleted)]


def recommendation(to_level: CareLevel, at: datetime, direction: str = "up") -> StepRecommendation:
    return StepRecommendation.model_validate(
        {"recommendation_id": "rec-1", "direction": direction, "from_level": CareLevel.IOP, "to_level": to_level,
         "rationale": [], "policy_version": POLICY.version, "created_at": at, "status": "accepted"}
    )  # fmt: skip


def write(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


LEGACY_LEVELS: dict[str, dict[str, Any]] = {
    "OP": {"weeks": 12, "weekdays": ["tue"], "hours_per_session": 1.5,
           "tracks": {"morning": "10:00", "evening": "18:00"}},
    "IOP": {"weeks": 8, "weekdays": ["mon", "wed", "fri"], "hours_per_session": 3,
            "tracks": {"morning": "09:00", "evening": "18:00"}},
    "PHP": {"weeks": 4, "weekdays": ["mon", "tue", "wed", "thu", "fri"], "hours_per_session": 5,
            "tracks": {"morning": "09:00", "evening": "14:00"}},
}  # fmt: skip
"""The levels of the default policy before groups (default-2026.11)."""


def legacy_raw() -> dict[str, Any]:
    """The default policy written the older way: the calendar in the levels, no groups."""
    raw = default_raw()
    del raw["groups"]
    raw["levels"] = copy.deepcopy(LEGACY_LEVELS)
    return raw


def policy_with_group_closures(group_id: str, closures: list[str]) -> CarePolicy:
    raw = default_raw()
    raw_group(raw, group_id)["closures"] = closures
    return CarePolicy.model_validate(raw)


# --- joining a group ----------------------------------------------------------------------------------------


def test_joining_gives_the_groups_sessions_from_its_first_meeting_after_the_join_date_for_the_levels_weeks() -> None:
    plan = joined_plan("iop-am")
    assert plan.schedule is not None
    assert plan.schedule.weeks == POLICY.levels[CareLevel.IOP].weeks == 8
    assert (plan.schedule.track, plan.schedule.days_per_week, plan.schedule.hours_per_session) == ("morning", 3, 3)
    sessions = plan.schedule.sessions
    assert len(sessions) == 8 * 3
    assert sessions[0].starts_at == ny(2026, 10, 21, 9)  # the Wednesday after the Tuesday it joined
    assert sessions[-1].starts_at == ny(2026, 12, 14, 9)  # the Monday of its 8th week
    assert all(s.starts_at.astimezone(NY).strftime("%a") in ("Mon", "Wed", "Fri") for s in sessions)
    assert all(s.ends_at - s.starts_at == timedelta(hours=3) for s in sessions)
    assert all((s.kind, s.group_id) == ("group", "iop-am") for s in sessions)
    assert ids(plan) == [f"iop-am-{s.starts_at.astimezone(NY):%Y%m%d}" for s in sessions]
    assert ids(plan)[:3] == [WED_21, FRI_23, MON_26]


def test_joining_on_a_meeting_day_starts_at_the_next_meeting() -> None:
    monday = datetime(2026, 10, 26, 12, 0, tzinfo=UTC)  # 08:00 in New York, before that day's 09:00 meeting
    assert ids(joined_plan("iop-am", monday))[0] == WED_28
    assert first_meeting_after(group("op-am"), date(2026, 10, 20)) == date(2026, 10, 27)  # Tuesday to Tuesday


def test_the_clinics_and_the_groups_own_closures_are_skipped() -> None:
    policy = policy_with_group_closures("iop-am", ["2026-12-23"])
    joined_on = datetime(2026, 12, 20, 17, 0, tzinfo=UTC)  # Sunday
    plan = joined_plan("iop-am", joined_on, policy)
    days = [s.starts_at.astimezone(NY).date() for s in sessions_of(plan)]
    assert date(2026, 12, 23) not in days  # the group's own closure
    assert date(2026, 12, 25) not in days and date(2027, 1, 1) not in days  # the clinic's (both Fridays)
    assert days[:4] == [date(2026, 12, 21), date(2026, 12, 28), date(2026, 12, 30), date(2027, 1, 4)]
    # The calendar keeps its length in weeks: closed days are not made up at the end.
    assert days[-1] == date(2027, 2, 12)
    assert len(days) == 8 * 3 - 3
    assert plan.schedule is not None and plan.schedule.weeks == 8


def test_another_groups_closure_does_not_close_this_group() -> None:
    policy = policy_with_group_closures("iop-pm", ["2026-10-23"])
    assert FRI_23 in ids(joined_plan("iop-am", policy=policy))
    assert "iop-pm-20261023" not in ids(joined_plan("iop-pm", policy=policy))


def test_the_group_keeps_its_local_time_across_the_dst_changes() -> None:
    plan = joined_plan("iop-pm")  # 18:00-21:00, across 2026-11-01 (end of DST)
    sessions = sessions_of(plan)
    assert all(s.starts_at.astimezone(NY).time() == time(18, 0) for s in sessions)
    assert all(s.ends_at.astimezone(NY).time() == time(21, 0) for s in sessions)
    assert {s.starts_at.utcoffset() for s in sessions} == {timedelta(hours=-4), timedelta(hours=-5)}
    assert all(s.ends_at.astimezone(UTC) - s.starts_at.astimezone(UTC) == timedelta(hours=3) for s in sessions)
    spring = joined_plan("php-am", datetime(2027, 3, 8, 15, 0, tzinfo=UTC))  # DST begins 2027-03-14
    assert {s.starts_at.astimezone(NY).time() for s in sessions_of(spring)} == {time(9, 0)}
    assert {s.starts_at.astimezone(UTC).hour for s in sessions_of(spring)} == {13, 14}


def test_two_members_joining_on_different_days_share_the_same_meeting() -> None:
    first = joined_plan("iop-am", ASSIGNED_AT)  # Tuesday
    second = joined_plan("iop-am", datetime(2026, 10, 22, 15, 0, tzinfo=UTC))  # Thursday
    assert ids(first)[0] == WED_21 and ids(second)[0] == FRI_23
    assert session_of(first, FRI_23) == session_of(second, FRI_23)
    common = set(ids(first)) & set(ids(second))
    assert len(common) == 24 - 1
    assert all(session_of(first, sid) == session_of(second, sid) for sid in common)


@settings(max_examples=150, deadline=None)
@given(
    group_id=st.sampled_from([g.group_id for g in POLICY.groups]),
    first_day=st.dates(min_value=date(2026, 1, 1), max_value=date(2029, 12, 31)),
    days_later=st.integers(min_value=0, max_value=40),
)
def test_meetings_are_the_same_session_in_every_members_calendar(
    group_id: str, first_day: date, days_later: int
) -> None:
    meeting_group = group(group_id)
    weeks = POLICY.levels[meeting_group.level].weeks
    early = build_schedule(meeting_group, weeks, NEW_YORK, first_day, POLICY.closures)
    late = build_schedule(meeting_group, weeks, NEW_YORK, first_day + timedelta(days=days_later), POLICY.closures)
    by_id = {s.session_id: s for s in early.sessions}
    last_early = early.sessions[-1].starts_at
    for session in late.sessions:
        if session.starts_at <= last_early:
            assert by_id[session.session_id] == session  # same id, same times, same group
    for session in [*early.sessions, *late.sessions]:
        local = session.starts_at.astimezone(NY)
        assert session.session_id == f"{group_id}-{local:%Y%m%d}"
        assert local.time() == meeting_group.starts_at
        assert local.date() not in POLICY.closures
    assert len({s.session_id for s in early.sessions}) == len(early.sessions)


# --- place: joined or waitlisted ----------------------------------------------------------------------------


def test_place_joined_sets_the_group_clears_the_waitlist_and_publishes_nothing() -> None:
    waiting = waiting_plan()
    now = datetime(2026, 10, 22, 15, 0, tzinfo=UTC)
    placed, events = place(waiting, Joined(group("iop-am")), POLICY, now)
    assert events == []
    assert placed.group == GroupPlace(group_id="iop-am", joined_at=now)
    assert placed.waitlist is None
    assert ids(placed)[0] == FRI_23


def test_an_assignment_with_no_room_waits_and_says_so() -> None:
    plan, events = new_plan(Waitlisted([group("iop-am")], CareLevel.IOP, "morning", position=3))
    assert plan.status == "active"
    assert plan.group is None
    assert plan.waitlist == WaitlistPlace(level=CareLevel.IOP, track="morning", group_ids=["iop-am"], since=ASSIGNED_AT)
    assert plan.schedule is not None
    assert plan.schedule.sessions == []
    assert plan.schedule.track == "morning"
    assert plan.schedule.weeks == 8
    assigned, waitlisted = events
    assert isinstance(assigned, CareLevelAssigned) and assigned.schedule == plan.schedule
    assert waitlisted == GroupWaitlisted(
        episode_id="ep-1",
        level=CareLevel.IOP,
        track="morning",
        program="adult",
        group_ids=["iop-am"],
        position=3,
        waitlisted_at=ASSIGNED_AT,
    )


def test_the_waitlist_event_names_the_track_program_and_every_group_waited_for() -> None:
    evening = [group("iop-pm"), group("iop-pm").model_copy(update={"group_id": "iop-pm-2"})]
    plan, events = new_plan(Waitlisted(evening, CareLevel.IOP, "evening", position=1), program="adolescent")
    [waitlisted] = [event for event in events if isinstance(event, GroupWaitlisted)]
    assert (waitlisted.track, waitlisted.program, waitlisted.position) == ("evening", "adolescent", 1)
    assert waitlisted.group_ids == ["iop-pm", "iop-pm-2"]
    assert plan.schedule is not None and plan.schedule.track == "evening"
    assert plan.waitlist is not None and plan.waitlist.group_ids == ["iop-pm", "iop-pm-2"]


def test_a_plan_put_on_a_waitlist_keeps_its_past_and_its_appointments() -> None:
    plan, appointment = book(joined_plan(), "individual", ny(2026, 11, 3, 14))
    now = datetime(2026, 10, 27, 12, 0, tzinfo=UTC)
    waiting, events = place(plan, Waitlisted([group("iop-am")], CareLevel.IOP, "morning", 2), POLICY, now)
    assert ids(waiting) == [WED_21, FRI_23, MON_26, appointment]
    assert waiting.group is None
    assert waiting.waitlist is not None and waiting.waitlist.since == now
    [event] = events
    assert event.position == 2


# --- join_from_waitlist -------------------------------------------------------------------------------------


def test_a_waiting_plan_joins_the_group_from_its_next_meeting() -> None:
    waiting, appointment = book(waiting_plan(), "individual", ny(2026, 10, 27, 14))
    now = datetime(2026, 10, 26, 18, 0, tzinfo=UTC)  # Monday 14:00, after that day's meeting
    joined, events = join_from_waitlist(waiting, group("iop-am"), POLICY, now)
    [changed] = events
    assert changed == ScheduleChanged(episode_id="ep-1", level=CareLevel.IOP, changed_at=now,
                                      schedule=joined.schedule, reason="joined_group")  # fmt: skip
    assert joined.group == GroupPlace(group_id="iop-am", joined_at=now)
    assert joined.waitlist is None
    assert ids(joined)[:3] == [appointment, WED_28, FRI_30]
    assert len([s for s in sessions_of(joined) if s.group_id == "iop-am"]) == 24
    assert joined.appointments == waiting.appointments


def test_a_plan_no_longer_waiting_changes_nothing() -> None:
    plan = joined_plan()
    assert join_from_waitlist(plan, group("iop-pm"), POLICY, LATER) == (plan, [])
    ended, _ = graduate(waiting_plan(), ASSIGNED_AT + timedelta(days=1), "clinician")
    assert ended.waitlist is not None
    assert join_from_waitlist(ended, group("iop-am"), POLICY, LATER) == (ended, [])


def test_a_place_in_a_group_the_plan_no_longer_waits_for_is_not_taken() -> None:
    # A step-up put the waiting plan on the PHP waitlist after an IOP place was claimed for it.
    waiting = waiting_plan().model_copy(
        update={"level": CareLevel.PHP, "waitlist": WaitlistPlace(level=CareLevel.PHP, track="morning",
                                                                   group_ids=["php-am"], since=ASSIGNED_AT)}
    )  # fmt: skip
    assert join_from_waitlist(waiting, group("iop-am"), POLICY, LATER) == (waiting, [])


# --- calendar_with ------------------------------------------------------------------------------------------


def test_calendar_with_keeps_the_past_and_own_appointments_and_adds_only_new_sessions_ahead_in_order() -> None:
    plan, appointment = book(joined_plan(), "family", ny(2026, 10, 29, 14))
    now = ny(2026, 10, 26, 9)  # the start of Monday's meeting: it has begun, so it stays
    new = build_schedule(group("iop-pm"), 8, NEW_YORK, date(2026, 10, 19))  # from Wed 21 Oct, evenings
    calendar = calendar_with(plan, new.sessions, new, now)
    calendar_ids = [s.session_id for s in calendar.sessions]
    assert calendar_ids[:7] == [
        WED_21, FRI_23, MON_26,  # before now (MON_26 began at now)
        "iop-pm-20261026", "iop-pm-20261028", appointment, "iop-pm-20261030",  # in time order
    ]  # fmt: skip
    assert len(calendar_ids) == 3 + 1 + (24 - 2)  # the new group's Wed 21 and Fri 23 were before now
    assert "iop-pm-20261021" not in calendar_ids
    assert not [s for s in calendar.sessions if s.group_id == "iop-am" and s.starts_at > now]
    starts = [s.starts_at for s in calendar.sessions]
    assert starts == sorted(starts)
    assert (calendar.track, calendar.days_per_week) == ("evening", 3)  # the template's


def test_calendar_with_never_lists_a_session_twice() -> None:
    plan = joined_plan()
    again = build_schedule(group("iop-am"), 8, NEW_YORK, date(2026, 10, 20))
    calendar = calendar_with(plan, again.sessions, again, ny(2026, 10, 27))
    assert [s.session_id for s in calendar.sessions] == ids(plan)


@given(
    now_offset=st.integers(min_value=-3, max_value=70).map(lambda days: timedelta(days=days, hours=7)),
    new_start=st.dates(min_value=date(2026, 10, 1), max_value=date(2027, 1, 31)),
    new_group=st.sampled_from(["iop-pm", "php-am", "op-am"]),
)
def test_calendar_with_properties(now_offset: timedelta, new_start: date, new_group: str) -> None:
    plan, appointment = book(joined_plan(), "individual", ny(2026, 11, 19, 14))
    now = ASSIGNED_AT + now_offset
    template = build_schedule(group(new_group), 4, NEW_YORK, new_start)
    calendar = calendar_with(plan, template.sessions, template, now)
    result = {s.session_id: s for s in calendar.sessions}
    assert len(result) == len(calendar.sessions)
    assert [s.starts_at for s in calendar.sessions] == sorted(s.starts_at for s in calendar.sessions)
    assert appointment in result
    for session in sessions_of(plan):
        if session.starts_at <= now:
            assert result[session.session_id] == session
        elif session.session_id != appointment:
            assert session.session_id not in result
    for session in template.sessions:
        assert (session.session_id in result) == (session.starts_at > now)


# --- book_appointment and cancel_appointment ----------------------------------------------------------------


def test_an_appointment_is_named_by_its_kind_and_local_start_and_takes_the_kinds_length() -> None:
    plan = joined_plan()
    booked, changed, session_id = book_appointment(
        plan, "individual", datetime(2026, 11, 5, 19, 0, tzinfo=UTC), None, POLICY, ASSIGNED_AT
    )  # 14:00 EST
    assert session_id == "individual-20261105-1400"
    session = session_of(booked, session_id)
    assert session.ends_at - session.starts_at == timedelta(minutes=POLICY.session_kinds["individual"].minutes)
    assert (session.kind, session.group_id) == ("individual", None)
    assert booked.appointments == [session]
    assert ids(booked) == sorted(ids(booked), key=lambda sid: session_of(booked, sid).starts_at)
    assert len(ids(booked)) == len(ids(plan)) + 1
    assert changed == ScheduleChanged(episode_id="ep-1", level=CareLevel.IOP, changed_at=ASSIGNED_AT,
                                      schedule=booked.schedule, reason="appointment_booked")  # fmt: skip
    _, summer = book(plan, "family", datetime(2026, 10, 22, 18, 0, tzinfo=UTC))  # 14:00 EDT
    assert summer == "family-20261022-1400"


def test_an_appointment_may_be_given_its_own_length() -> None:
    booked, session_id = book(joined_plan(), "family", ny(2026, 10, 22, 14), minutes=90)
    session = session_of(booked, session_id)
    assert session.ends_at - session.starts_at == timedelta(minutes=90)


def test_an_appointment_may_begin_as_a_group_session_ends() -> None:
    booked, session_id = book(joined_plan(), "individual", ny(2026, 10, 21, 12))
    assert session_id == "individual-20261021-1200"
    assert ids(booked)[:2] == [WED_21, session_id]


def test_a_waiting_plan_can_book_appointments() -> None:
    booked, session_id = book(waiting_plan(), "individual", ny(2026, 10, 21, 10))
    assert ids(booked) == [session_id]


@pytest.mark.parametrize(
    ("kind", "starts_at", "code", "names"),
    [
        ("yoga", ny(2026, 10, 22, 14), "unknown_kind", "individual, family"),  # the kinds there are, never the value
        ("individual", ASSIGNED_AT, "appointment_in_past", None),
        ("individual", ny(2026, 10, 19, 14), "appointment_in_past", None),
        ("individual", ny(2026, 10, 21, 10), "overlapping_session", WED_21),
        ("family", ny(2026, 10, 21, 11, 30), "overlapping_session", WED_21),
        ("individual", ny(2026, 10, 22, 13, 30), "overlapping_session", "individual-20261022-1300"),
        ("individual", ASSIGNED_AT + APPOINTMENT_HORIZON + timedelta(hours=1), "appointment_too_far", "366 days"),
    ],
)
def test_an_appointment_that_cannot_be_booked(kind: str, starts_at: datetime, code: str, names: str | None) -> None:
    plan, _ = book(joined_plan(), "individual", ny(2026, 10, 22, 13))
    with pytest.raises(CarePlanError) as caught:
        book_appointment(plan, kind, starts_at, None, POLICY, ASSIGNED_AT)
    assert caught.value.code == code
    if names:
        assert names in str(caught.value)


def test_a_plan_keeps_at_most_so_many_appointments_ahead() -> None:
    plan = joined_plan()
    past = ScheduledSession(session_id="individual-past", starts_at=ASSIGNED_AT - timedelta(days=1),
                            ends_at=ASSIGNED_AT - timedelta(hours=23), kind="individual")  # fmt: skip
    ahead = [ScheduledSession(session_id=f"individual-{n}", starts_at=ASSIGNED_AT + timedelta(days=200, hours=n),
                              ends_at=ASSIGNED_AT + timedelta(days=200, hours=n, minutes=50), kind="individual")
             for n in range(MOST_APPOINTMENTS_AHEAD)]  # fmt: skip
    full = plan.model_copy(update={"appointments": [past, *ahead]})
    with pytest.raises(CarePlanError) as caught:
        book_appointment(full, "individual", ny(2026, 10, 22, 14), None, POLICY, ASSIGNED_AT)
    assert caught.value.code == "too_many_appointments" and f"{MOST_APPOINTMENTS_AHEAD} appointments" in str(
        caught.value
    )
    room = plan.model_copy(update={"appointments": [past, *ahead[1:]]})  # one that has passed does not count
    booked, _, _ = book_appointment(room, "individual", ny(2026, 10, 22, 14), None, POLICY, ASSIGNED_AT)
    assert len(booked.appointments) == MOST_APPOINTMENTS_AHEAD + 1


def test_two_appointments_never_share_a_session_id() -> None:
    """Clocks go back at 02:00 on 2026-11-01 in New York: 01:30 comes twice, an hour apart. Two appointments at
    the two 01:30s do not overlap: both are booked, and the second (fold 1) is told apart by ``-2``."""
    plan = joined_plan()
    edt, est = datetime(2026, 11, 1, 5, 30, tzinfo=UTC), datetime(2026, 11, 1, 6, 30, tzinfo=UTC)  # 01:30, twice
    first, first_id = book(plan, "individual", edt, minutes=50)
    second, second_id = book(first, "individual", est, minutes=50)
    assert (first_id, second_id) == ("individual-20261101-0130", "individual-20261101-0130-2")
    assert first_id != second_id
    assert len(set(ids(second))) == len(ids(second))
    assert second.schedule is not None
    starts = {session.session_id: session.starts_at for session in second.schedule.sessions}
    assert (starts[first_id], starts[second_id]) == (edt, est)


def test_no_appointment_on_a_plan_that_ended() -> None:
    ended, _ = graduate(joined_plan(), ASSIGNED_AT, "clinician")
    with pytest.raises(CarePlanError) as caught:
        book_appointment(ended, "individual", ny(2026, 10, 22, 14), None, POLICY, ASSIGNED_AT)
    assert caught.value.code == "plan_not_active"


def test_cancelling_an_appointment_takes_it_off_the_calendar() -> None:
    plan = joined_plan()
    booked, session_id = book(plan, "individual", ny(2026, 10, 22, 14))
    now = ASSIGNED_AT + timedelta(hours=1)
    cancelled, changed = cancel_appointment(booked, session_id, now)
    assert cancelled.schedule == plan.schedule
    assert cancelled.appointments == []
    assert changed == ScheduleChanged(episode_id="ep-1", level=CareLevel.IOP, changed_at=now,
                                      schedule=plan.schedule, reason="appointment_cancelled")  # fmt: skip


@pytest.mark.parametrize(
    ("session_id", "now", "recorded", "code"),
    [
        ("individual-20261023-1400", ASSIGNED_AT, False, "unknown_session"),
        (WED_21, ASSIGNED_AT, False, "unknown_session"),  # a group session is not an appointment
        ("individual-20261022-1400", ny(2026, 10, 22, 14), False, "appointment_in_past"),
        ("individual-20261022-1400", ASSIGNED_AT, True, "appointment_in_past"),
    ],
)
def test_an_appointment_that_cannot_be_cancelled(session_id: str, now: datetime, recorded: bool, code: str) -> None:
    booked, _ = book(joined_plan(), "individual", ny(2026, 10, 22, 14))
    if recorded:
        booked = attend(booked, "individual-20261022-1400", "excused", ASSIGNED_AT)
    with pytest.raises(CarePlanError) as caught:
        cancel_appointment(booked, session_id, now)
    assert caught.value.code == code


# --- set_calendar and change_level --------------------------------------------------------------------------


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


# --- the policy's groups ------------------------------------------------------------------------------------


def test_a_group_id_used_twice_is_rejected(tmp_path: Path) -> None:
    raw = default_raw()
    raw["groups"].append({**raw_group(raw, "iop-am"), "name": "IOP morning group 2"})
    with pytest.raises(PolicyError, match=r"groups: each group_id once"):
        load_policy(write(tmp_path, raw))


def test_a_group_says_which_programs_it_takes(tmp_path: Path) -> None:
    """A group without ``programs`` would take every program's plans: adolescents among adults. A policy must say."""
    raw = default_raw()
    del raw_group(raw, "iop-am")["programs"]
    with pytest.raises(PolicyError, match=r"groups\.0\.programs: Field required"):
        load_policy(write(tmp_path, raw))


def test_a_policy_written_before_groups_keeps_every_program_together_as_before() -> None:
    policy = CarePolicy.model_validate(legacy_raw())
    assert {tuple(g.programs) for g in policy.groups} == {("adult", "adolescent")}


def test_a_groups_kind_must_be_a_session_kind(tmp_path: Path) -> None:
    raw = default_raw()
    raw_group(raw, "iop-am")["kind"] = "yoga"
    with pytest.raises(PolicyError, match=r"groups\.iop-am\.kind: 'yoga' is not in session_kinds"):
        load_policy(write(tmp_path, raw))
    raw["session_kinds"]["yoga"] = {"minutes": 60, "codes": [{"code": "X1"}]}
    assert group("iop-am", load_policy(write(tmp_path, raw))).kind == "yoga"


@pytest.mark.parametrize(
    ("group_id", "weekdays", "programs", "message"),
    [
        ("iop-am", ["tue", "thu"], ["adult", "adolescent"], "groups.iop-am: 6 h/week is below the 9 h/week minimum "
                                                            "for IOP adult programs"),
        ("php-pm", ["mon", "tue", "wed"], ["adolescent"], "groups.php-pm: 15 h/week is below the 20 h/week minimum "
                                                          "for PHP adolescent programs"),
        ("iop-pm", ["tue", "thu"], ["adolescent"], None),  # 6 h/week is the adolescents' IOP minimum
    ],
)  # fmt: skip
def test_a_group_below_its_levels_minimum_hours_for_a_program_it_takes_is_rejected(
    tmp_path: Path, group_id: str, weekdays: list[str], programs: list[str], message: str | None
) -> None:
    raw = default_raw()
    raw_group(raw, group_id).update(weekdays=weekdays, programs=programs)
    if message is None:
        assert group(group_id, load_policy(write(tmp_path, raw))).weekly_hours == 6
        return
    with pytest.raises(PolicyError) as caught:
        load_policy(write(tmp_path, raw))
    assert message in str(caught.value)


def test_an_offered_level_needs_a_group_of_the_default_track_for_every_program(tmp_path: Path) -> None:
    raw = default_raw()
    raw_group(raw, "iop-am")["programs"] = ["adolescent"]
    with pytest.raises(PolicyError, match=r"groups: IOP has no morning group for adult programs"):
        load_policy(write(tmp_path, raw))
    raw["default_track"] = "evening"
    assert load_policy(write(tmp_path, raw)).groups_for(CareLevel.IOP, "morning", "adult") == []


def test_the_calendar_fields_of_a_level_go_with_groups_only_in_an_older_policy(tmp_path: Path) -> None:
    raw = default_raw()
    raw["levels"]["IOP"]["weekdays"] = ["mon", "wed", "fri"]
    with pytest.raises(PolicyError, match=r"levels: weekdays, hours_per_session and tracks are set by groups"):
        load_policy(write(tmp_path, raw))


def test_an_older_policy_without_groups_loads_with_one_group_per_level_and_track(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, legacy_raw()))
    assert sorted(g.group_id for g in policy.groups) == [
        "iop-evening", "iop-morning", "op-evening", "op-morning", "php-evening", "php-morning",
    ]  # fmt: skip
    iop = group("iop-morning", policy)
    assert (iop.level, iop.track, iop.weekdays, iop.starts_at, iop.minutes) == (
        CareLevel.IOP, "morning", ["mon", "wed", "fri"], time(9, 0), 180,
    )  # fmt: skip
    assert (iop.capacity, iop.kind, iop.programs) == (None, "group", ["adult", "adolescent"])
    assert group("op-evening", policy).minutes == 90
    assert group("php-evening", policy).starts_at == time(14, 0)
    plan = joined_plan("iop-morning", policy=policy)
    assert ids(plan)[:2] == ["iop-morning-20261021", "iop-morning-20261023"]
    assert len(ids(plan)) == 24


def test_an_older_policy_needs_every_calendar_field_of_a_level(tmp_path: Path) -> None:
    raw = legacy_raw()
    del raw["levels"]["OP"]["hours_per_session"]
    with pytest.raises(PolicyError, match=r"levels\.OP: give weekdays, hours_per_session and tracks, or list groups"):
        load_policy(write(tmp_path, raw))


def test_an_older_policy_still_needs_the_default_track_at_each_offered_level(tmp_path: Path) -> None:
    raw = legacy_raw()
    raw["levels"]["OP"]["tracks"] = {"evening": "18:00"}
    with pytest.raises(PolicyError, match=r"groups: OP has no morning group for adult programs"):
        load_policy(write(tmp_path, raw))


def test_a_policy_file_written_before_groups_loads_as_it_was(tmp_path: Path) -> None:
    raw = legacy_raw()
    raw["version"] = "default-2026.11"
    del raw["session_kinds"]
    policy = load_policy(write(tmp_path, raw))
    assert [g.group_id for g in policy.groups_for(CareLevel.IOP, "morning", "adult")] == ["iop-morning"]


# --- billing codes ------------------------------------------------------------------------------------------

GROUP_KIND = POLICY.session_kinds["group"]
INDIVIDUAL = POLICY.session_kinds["individual"]
EDUCATION = POLICY.session_kinds["education"]


@pytest.mark.parametrize("minutes", [1, 45, 180, 300])
def test_a_per_session_code_is_one_unit_whatever_the_length(minutes: int) -> None:
    assert billing_code(GROUP_KIND, minutes) == ("90853", 1)


@pytest.mark.parametrize(
    ("minutes", "expected"),
    [(0, (None, 0)), (7, (None, 0)), (8, ("H2027", 1)), (15, ("H2027", 1)), (22, ("H2027", 1)),
     (23, ("H2027", 2)), (37, ("H2027", 2)), (38, ("H2027", 3)), (60, ("H2027", 4))],
)  # fmt: skip
def test_per_15_minutes_counts_units_by_the_8_minute_rule(minutes: int, expected: tuple[str | None, int]) -> None:
    assert EDUCATION.units == "per_15_minutes"
    assert billing_code(EDUCATION, minutes) == expected


@pytest.mark.parametrize(
    ("minutes", "code"),
    [(120, "90837"), (53, "90837"), (52, "90834"), (38, "90834"), (37, "90832"), (16, "90832"), (15, None), (0, None)],
)
def test_time_based_individual_codes(minutes: int, code: str | None) -> None:
    assert billing_code(INDIVIDUAL, minutes) == (code, 1 if code else 0)


@given(minutes=st.integers(min_value=0, max_value=720))
def test_per_15_minutes_units_property(minutes: int) -> None:
    code, units = billing_code(EDUCATION, minutes)
    assert units == (0 if minutes < 8 else (minutes - 8) // 15 + 1)
    assert (code is None) == (minutes < 8)


@given(minutes=st.integers(min_value=0, max_value=720), order=st.permutations(range(3)))
def test_the_longest_code_reached_wins_in_whatever_order_the_codes_are_listed(minutes: int, order: list[int]) -> None:
    codes = [BillingCode(code="90837", min_minutes=53), BillingCode(code="90834", min_minutes=38),
             BillingCode(code="90832", min_minutes=16)]  # fmt: skip
    kind = SessionKindPolicy(minutes=53, codes=[codes[i] for i in order])
    expected = "90837" if minutes >= 53 else "90834" if minutes >= 38 else "90832" if minutes >= 16 else None
    assert billing_code(kind, minutes) == (expected, 1 if expected else 0)


# --- services delivered and service days --------------------------------------------------------------------

RECORDED = datetime(2026, 10, 21, 20, 0, tzinfo=UTC)  # Wednesday 16:00 in New York
WEEK_LATER = datetime(2026, 10, 28, 20, 0, tzinfo=UTC)  # Wednesday 28 16:00: WED_21 to WED_28 are over


def reviewed(plan: CarePlan, at: datetime = RECORDED) -> tuple[CarePlan, list[EventData]]:
    return review_services(plan, POLICY, at)


def test_an_attended_session_is_a_service_and_its_day_rolls_up() -> None:
    plan, events = reviewed(attend(joined_plan(), WED_21, "attended", RECORDED))
    service, day = events
    assert service == ServiceDelivered(
        episode_id="ep-1",
        service_id=WED_21,
        revision=1,
        status="delivered",
        session_id=WED_21,
        kind="group",
        group_id="iop-am",
        service_date=date(2026, 10, 21),
        minutes=180,
        code="90853",
        units=1,
        level=CareLevel.IOP,
        attendance="attended",
        recorded_at=RECORDED,
    )
    assert day == ServiceDayCompleted(
        episode_id="ep-1",
        service_date=date(2026, 10, 21),
        revision=1,
        level=CareLevel.IOP,
        services=1,
        minutes=180,
        service_ids=[WED_21],
        per_diem_code="H0015",
        completed_at=RECORDED,
    )
    assert plan.services[WED_21].revision == 1
    assert plan.service_days[date(2026, 10, 21)] == ServiceDay(
        revision=1, level=CareLevel.IOP, services=1, minutes=180, service_ids=[WED_21], per_diem_code="H0015"
    )


def test_a_late_arrival_is_a_service_of_the_minutes_attended() -> None:
    _, events = reviewed(attend(joined_plan(), WED_21, "late", RECORDED, minutes=150))
    [service] = delivered_events(events)
    assert (service.attendance, service.minutes, service.code, service.units) == ("late", 150, "90853", 1)
    [day] = day_events(events)
    assert (day.minutes, day.per_diem_code) == (150, None)  # under the 3 hours of the IOP per diem


def test_a_late_arrival_without_minutes_is_the_whole_session() -> None:
    _, events = reviewed(attend(joined_plan(), WED_21, "late", RECORDED))
    [service] = delivered_events(events)
    assert service.minutes == 180


@pytest.mark.parametrize("status", ["missed", "excused"])
def test_an_absence_publishes_nothing(status: AttendanceStatus) -> None:
    plan = attend(joined_plan(), WED_21, status, RECORDED)
    assert reviewed(plan) == (plan, [])


def test_the_same_attendance_reviewed_twice_publishes_nothing() -> None:
    plan, events = reviewed(attend(joined_plan(), WED_21, "attended", RECORDED))
    assert events
    assert reviewed(plan, RECORDED + timedelta(hours=1)) == (plan, [])
    same = attend(plan, WED_21, "attended", RECORDED + timedelta(hours=2))  # recorded again: no change
    assert reviewed(same, RECORDED + timedelta(hours=2)) == (same, [])


@pytest.mark.parametrize("absence", ["missed", "excused"])
def test_a_service_corrected_to_an_absence_is_voided_and_its_day_published_again(absence: AttendanceStatus) -> None:
    plan, _ = reviewed(attend(joined_plan(), WED_21, "attended", RECORDED))
    later = RECORDED + timedelta(days=1)
    plan, events = reviewed(attend(plan, WED_21, absence, later), later)
    service, day = events
    assert isinstance(service, ServiceDelivered)
    assert (service.service_id, service.revision, service.status, service.attendance) == (WED_21, 2, "voided", absence)
    assert (service.minutes, service.code, service.units, service.recorded_at) == (0, None, 0, later)
    assert isinstance(day, ServiceDayCompleted)
    assert (day.revision, day.services, day.minutes, day.service_ids, day.per_diem_code) == (2, 0, 0, [], None)
    plan, events = reviewed(attend(plan, WED_21, "attended", later), later)
    [again] = delivered_events(events)
    assert (again.revision, again.status) == (3, "delivered")
    assert [d.revision for d in day_events(events)] == [3]


def test_a_correction_of_the_minutes_is_a_new_revision() -> None:
    plan, _ = reviewed(attend(joined_plan(), WED_21, "attended", RECORDED))
    plan, events = reviewed(attend(plan, WED_21, "late", RECORDED, minutes=170))
    [service] = delivered_events(events)
    assert (service.revision, service.minutes, service.attendance) == (2, 170, "late")
    [day] = day_events(events)
    assert (day.revision, day.minutes, day.per_diem_code) == (2, 170, None)


def test_a_day_rolls_up_once_every_session_of_it_has_a_record() -> None:
    plan, individual = book(joined_plan(), "individual", ny(2026, 10, 21, 14))
    plan, events = reviewed(attend(plan, WED_21, "attended", RECORDED))
    assert [type(event) for event in events] == [ServiceDelivered]  # the individual session has no record yet
    plan, events = reviewed(attend(plan, individual, "attended", RECORDED))
    [service] = delivered_events(events)
    assert (service.kind, service.group_id, service.minutes, service.code) == ("individual", None, 53, "90837")
    [day] = day_events(events)
    assert (day.revision, day.services, day.minutes, day.service_ids) == (1, 2, 233, [WED_21, individual])
    assert day.per_diem_code == "H0015"


def test_a_missed_session_completes_its_day_without_counting() -> None:
    plan, individual = book(joined_plan(), "individual", ny(2026, 10, 21, 14))
    plan, _ = reviewed(attend(plan, individual, "attended", RECORDED, minutes=40))
    plan, events = reviewed(attend(plan, WED_21, "missed", RECORDED))
    [day] = day_events(events)
    assert (day.services, day.minutes, day.service_ids, day.per_diem_code) == (1, 40, [individual], None)
    assert plan.services[individual].code == "90834"


def test_a_level_without_a_per_diem_rolls_its_days_up_without_a_code() -> None:
    plan = joined_plan("op-am")  # Tuesdays 10:00-11:30
    plan, events = reviewed(attend(plan, "op-am-20261027", "attended", LATER), LATER)
    [service] = delivered_events(events)
    assert (service.level, service.minutes, service.code, service.units) == (CareLevel.OP, 90, "90853", 1)
    [day] = day_events(events)
    assert (day.level, day.services, day.per_diem_code) == (CareLevel.OP, 1, None)


def test_a_service_is_reported_at_the_level_the_episode_had_when_the_session_took_place() -> None:
    plan = attend(joined_plan(), WED_21, "attended", RECORDED)
    now = datetime(2026, 10, 27, 12, 0, tzinfo=UTC)
    plan, _ = change_level(plan, recommendation(CareLevel.PHP, now), POLICY, now, Joined(group("php-am")))
    plan = attend(plan, "php-am-20261028", "attended", datetime(2026, 10, 28, 20, 0, tzinfo=UTC))
    _, events = reviewed(plan, datetime(2026, 10, 28, 20, 0, tzinfo=UTC))
    levels = {event.session_id: (event.level, event.minutes) for event in delivered_events(events)}
    assert levels == {WED_21: (CareLevel.IOP, 180), "php-am-20261028": (CareLevel.PHP, 300)}
    per_diem = {day.service_date: (day.level, day.per_diem_code) for day in day_events(events)}
    assert per_diem == {date(2026, 10, 21): (CareLevel.IOP, "H0015"), date(2026, 10, 28): (CareLevel.PHP, "H0035")}


SERVICE_STATUSES: list[AttendanceStatus] = ["attended", "late", "missed", "excused"]


@settings(max_examples=120, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=4),
            st.sampled_from(SERVICE_STATUSES),
            st.one_of(st.none(), st.integers(min_value=0, max_value=200)),
        ),
        max_size=25,
    )
)
def test_published_services_follow_the_attendance_by_revisions(
    recordings: list[tuple[int, AttendanceStatus, int | None]],
) -> None:
    plan, individual = book(joined_plan(), "individual", ny(2026, 10, 21, 14))
    pool = [WED_21, individual, FRI_23, MON_26, WED_28]
    revisions: dict[str, int] = {}
    day_revisions: dict[date, int] = {}
    for step, (index, status, minutes) in enumerate(recordings):
        at = WEEK_LATER + timedelta(minutes=step)
        session = session_of(plan, pool[index])
        length = round((session.ends_at - session.starts_at).total_seconds() / 60)
        attended = min(minutes, length) if minutes is not None and status in ("attended", "late") else None
        plan = attend(plan, pool[index], status, at, attended)
        plan, events = review_services(plan, POLICY, at)
        assert review_services(plan, POLICY, at) == (plan, [])  # reviewing again publishes nothing
        for service in delivered_events(events):
            assert service.revision == revisions.get(service.service_id, 0) + 1
            revisions[service.service_id] = service.revision
        for completed in day_events(events):
            assert completed.revision == day_revisions.get(completed.service_date, 0) + 1
            day_revisions[completed.service_date] = completed.revision
        for session_id, record in plan.attendance.items():
            line = plan.services.get(session_id)
            if record.status in ("attended", "late"):
                assert line is not None and line.status == "delivered"
                assert line.attendance == record.status
                whole = round((session_of(plan, session_id).ends_at - session_of(plan, session_id).starts_at)
                              .total_seconds() / 60)  # fmt: skip
                assert line.minutes == (whole if record.minutes is None else record.minutes)
            else:
                assert line is None or line.status == "voided"
        for day, rolled in plan.service_days.items():
            same_day = [s.session_id for s in sessions_of(plan) if s.starts_at.astimezone(NY).date() == day]
            assert all(sid in plan.attendance for sid in same_day)
            delivered = [sid for sid in same_day if plan.attendance[sid].status in ("attended", "late")]
            assert rolled.service_ids == delivered
            assert rolled.services == len(delivered)


def ahead(plan: CarePlan, session_id: str, at: datetime) -> CarePlan:
    """Attendance recorded ahead of the session, as a plan stored before that was refused may hold it."""
    record = AttendanceRecord(status="attended", recorded_at=at)
    return plan.model_copy(update={"attendance": {**plan.attendance, session_id: record}})


def test_a_service_recorded_ahead_and_taken_off_the_calendar_is_voided_and_its_day_emptied() -> None:
    plan = ahead(joined_plan(), FRI_30, RECORDED)  # recorded ahead of the session
    plan, _ = reviewed(plan)
    now = datetime(2026, 10, 27, 12, 0, tzinfo=UTC)  # Tuesday: a step-up takes Friday's IOP session away
    moved, _ = change_level(plan, recommendation(CareLevel.PHP, now), POLICY, now, Joined(group("php-am")))
    moved = ahead(moved, "php-am-20261030", now)  # the day's new session, recorded ahead too
    moved, events = review_services(moved, POLICY, now)
    [voided] = [e for e in delivered_events(events) if e.service_id == FRI_30]
    assert (voided.status, voided.revision, voided.minutes, voided.code) == ("voided", 2, 0, None)
    [day] = [e for e in day_events(events) if e.service_date == date(2026, 10, 30)]
    assert (day.revision, day.service_ids, day.level) == (2, ["php-am-20261030"], CareLevel.PHP)


def test_a_plan_stored_before_services_were_reported_is_not_billed_again() -> None:
    plan = attend(attend(joined_plan(), WED_21, "attended", RECORDED), FRI_23, "missed", WEEK_LATER)
    legacy = plan.model_copy(update={"services_tracked": False})
    baseline, events = reviewed(legacy)
    assert events == [] and baseline.services_tracked
    assert baseline.services[WED_21].revision == 0 and baseline.service_days[date(2026, 10, 21)].revision == 0
    assert reviewed(baseline) == (baseline, [])
    corrected, events = reviewed(attend(baseline, WED_21, "late", RECORDED, minutes=120))
    assert [(e.service_id, e.revision, e.minutes) for e in delivered_events(events)] == [(WED_21, 1, 120)]
    assert corrected.services[WED_21].revision == 1


def test_minutes_attended_cannot_exceed_the_session() -> None:
    with pytest.raises(CarePlanError) as caught:
        record_attendance(joined_plan(), WED_21, "late", RECORDED, minutes=181)
    assert caught.value.code == "minutes_over_session"


def test_no_group_may_take_the_custom_calendars_id(tmp_path: Path) -> None:
    raw = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    raw["groups"][0]["group_id"] = "custom"
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(PolicyError, match=r"groups\.0\.group_id"):
        load_policy(path)


# --- record_attendance: sheets, corrections, minutes --------------------------------------------------------


def test_a_sheet_line_must_name_the_sessions_group() -> None:
    plan, individual = book(joined_plan(), "individual", ny(2026, 10, 22, 14))
    attendance, _ = record_attendance(plan, WED_21, "attended", RECORDED, group_id="iop-am")
    assert attendance[WED_21].status == "attended"
    for session_id, group_id in [(WED_21, "iop-pm"), (individual, "iop-am"), ("iop-pm-20261021", "iop-pm")]:
        with pytest.raises(CarePlanError) as caught:
            record_attendance(plan, session_id, "attended", RECORDED, group_id=group_id)
        assert caught.value.code == "unknown_session"


def test_a_sheet_does_not_overwrite_a_different_record_made_by_staff() -> None:
    plan = attend(joined_plan(), WED_21, "excused", RECORDED)
    with pytest.raises(CarePlanError) as caught:
        record_attendance(plan, WED_21, "missed", RECORDED, group_id="iop-am", correction=False)
    assert caught.value.code == "recorded_differently"
    assert "excused" in str(caught.value)
    unchanged, event = record_attendance(plan, WED_21, "excused", RECORDED, group_id="iop-am", correction=False)
    assert (unchanged, event) == (plan.attendance, None)
    corrected, _ = record_attendance(plan, WED_21, "attended", RECORDED)  # the episode's own call corrects
    assert corrected[WED_21].status == "attended"


def test_a_sheet_replaces_a_miss_detected_by_no_record() -> None:
    plan = joined_plan()
    attendance, missed = record_attendance(plan, WED_21, "missed", RECORDED, detected="no_record")
    assert isinstance(missed, SessionMissed)
    plan = plan.model_copy(update={"attendance": attendance})
    later = RECORDED + timedelta(hours=3)
    attendance, event = record_attendance(plan, WED_21, "attended", later, group_id="iop-am", correction=False)
    assert event is None
    assert attendance[WED_21] == AttendanceRecord(status="attended", recorded_at=later)


@pytest.mark.parametrize("status", ["missed", "excused"])
def test_minutes_go_only_with_attended_or_late(status: AttendanceStatus) -> None:
    with pytest.raises(CarePlanError) as caught:
        record_attendance(joined_plan(), WED_21, status, RECORDED, minutes=30)
    assert caught.value.code == "minutes_without_attendance"


def test_minutes_are_kept_and_a_change_of_minutes_is_a_correction() -> None:
    plan = attend(joined_plan(), WED_21, "late", RECORDED, minutes=120)
    assert plan.attendance[WED_21].minutes == 120
    attendance, _ = record_attendance(plan, WED_21, "late", RECORDED + timedelta(hours=1), minutes=120)
    assert attendance == plan.attendance
    attendance, _ = record_attendance(plan, WED_21, "late", RECORDED + timedelta(hours=1), minutes=150)
    assert attendance[WED_21].minutes == 150


# --- utilization by kind ------------------------------------------------------------------------------------

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


# --- programs and tracks ------------------------------------------------------------------------------------


def test_the_default_policy_has_a_group_of_every_level_and_track_for_each_program_apart() -> None:
    for level in POLICY.offered_levels:
        for track in ("morning", "evening"):
            adults = POLICY.groups_for(level, track, "adult")
            teens = POLICY.groups_for(level, track, "adolescent")
            assert adults and teens, (level, track)
            assert not {g.group_id for g in adults} & {g.group_id for g in teens}
    assert [g.group_id for g in POLICY.groups_for(CareLevel.IOP, "morning", "adolescent")] == ["iop-teen-am"]
    assert [g.group_id for g in POLICY.groups_for(CareLevel.IOP, "evening", "adult")] == ["iop-pm"]


def test_a_plan_joins_only_a_group_that_lists_its_program() -> None:
    with pytest.raises(CarePlanError) as caught:
        new_plan(Joined(group("iop-am")), program="adolescent")
    assert caught.value.code == "wrong_program" and "adolescent" in str(caught.value)
    teen, _ = new_plan(Joined(group("iop-teen-am")), program="adolescent")
    assert teen.group is not None and teen.group.group_id == "iop-teen-am"


def policy_without(group_id: str) -> CarePolicy:
    raw = default_raw()
    raw["groups"] = [g for g in raw["groups"] if g["group_id"] != group_id]
    return CarePolicy.model_validate(raw)


def test_with_no_group_of_its_level_track_and_program_a_plan_waits_saying_why() -> None:
    policy = policy_without("iop-teen-pm")
    assert policy.groups_for(CareLevel.IOP, "evening", "adolescent") == []
    plan, events = new_plan(Waitlisted([], CareLevel.IOP, "evening", 1), program="adolescent", policy=policy)
    assert plan.group is None and plan.waitlist is not None and plan.waitlist.group_ids == []
    assert plan.rationale[-1] == Reason(
        code="no_group_for_program",
        text="No IOP evening group in the care-plan policy takes adolescent programs: the plan waits without group "
        "sessions until one does (a custom calendar or another track gives it sessions meanwhile).",
    )
    assigned, waitlisted = events
    assert isinstance(assigned, CareLevelAssigned) and assigned.rationale == plan.rationale
    assert isinstance(waitlisted, GroupWaitlisted) and waitlisted.group_ids == []
    # The clinic adds such a group: the waiting plan joins it when it has room.
    joined, [changed] = join_from_waitlist(plan, group("iop-teen-pm"), POLICY, ASSIGNED_AT + timedelta(days=1))
    assert joined.group is not None and joined.group.group_id == "iop-teen-pm" and changed.reason == "joined_group"
    assert join_from_waitlist(plan, group("iop-pm"), POLICY, LATER) == (plan, [])  # never the adults' group


def test_the_episodes_track_starts_its_calendar() -> None:
    evening = assessment().model_copy(update={"track": "evening"})
    plan, _ = assign_care_level(evening, POLICY, NEW_YORK, ASSIGNED_AT, Joined(group("iop-pm")))
    assert plan.schedule is not None and plan.schedule.track == "evening"
    assert {s.group_id for s in sessions_of(plan)} == {"iop-pm"}


def test_a_track_change_moves_the_plan_to_a_group_of_the_new_track_from_now_on() -> None:
    plan, appointment = book(joined_plan(), "individual", ny(2026, 11, 3, 14))
    now = datetime(2026, 10, 27, 12, 0, tzinfo=UTC)  # Tuesday 08:00
    moved, events = change_track(plan, "evening", Joined(group("iop-pm")), POLICY, now)
    assert moved.group == GroupPlace(group_id="iop-pm", joined_at=now)
    assert ids(moved)[:4] == [WED_21, FRI_23, MON_26, "iop-pm-20261028"]  # the past stays
    assert appointment in ids(moved)
    assert not [s for s in sessions_of(moved) if s.group_id == "iop-am" and s.starts_at > now]
    [changed] = events
    assert changed == ScheduleChanged(episode_id="ep-1", level=CareLevel.IOP, changed_at=now,
                                      schedule=moved.schedule, reason="track_changed")  # fmt: skip
    assert moved.schedule is not None and moved.schedule.track == "evening"
    assert change_track(moved, "evening", Joined(group("iop-pm")), POLICY, LATER) == (moved, [])


def test_a_track_change_with_no_room_waits_for_the_new_tracks_groups() -> None:
    now = datetime(2026, 10, 27, 12, 0, tzinfo=UTC)
    moved, events = change_track(joined_plan(), "evening", Waitlisted([group("iop-pm")], CareLevel.IOP,
                                                                      "evening", 2), POLICY, now)  # fmt: skip
    assert moved.group is None and moved.waitlist is not None and moved.waitlist.track == "evening"
    assert [type(e) for e in events] == [ScheduleChanged, GroupWaitlisted]


def test_a_track_without_a_group_for_the_program_or_an_ended_plan_is_refused() -> None:
    policy = policy_without("iop-teen-pm")
    teen, _ = new_plan(Joined(group("iop-teen-am", policy)), program="adolescent", policy=policy)
    with pytest.raises(CarePlanError) as caught:
        change_track(teen, "evening", Waitlisted([], CareLevel.IOP, "evening", 1), policy, LATER)
    assert caught.value.code == "no_group_for_track"
    assert str(caught.value) == "no IOP evening group takes adolescent programs"
    ended, _ = graduate(joined_plan(), ASSIGNED_AT, "clinician")
    with pytest.raises(CarePlanError) as caught:
        change_track(ended, "evening", Joined(group("iop-pm")), POLICY, LATER)
    assert caught.value.code == "plan_not_active"


# --- joining a group keeps the plan's own appointments ------------------------------------------------------

EVENING_FAMILY = ny(2026, 10, 28, 19)  # Wednesday 19:00: during the evening group's meeting of that day


def test_a_meeting_that_overlaps_an_own_appointment_is_left_off_named_and_back_when_it_is_cancelled() -> None:
    plan, family = book(joined_plan(), "family", EVENING_FAMILY)
    now = datetime(2026, 10, 27, 12, 0, tzinfo=UTC)
    moved, [changed] = change_track(plan, "evening", Joined(group("iop-pm")), POLICY, now)
    assert "iop-pm-20261028" not in ids(moved) and family in ids(moved)
    assert "iop-pm-20261030" in ids(moved)  # only the meeting that overlaps
    [skipped] = moved.skipped_meetings
    assert (skipped.session.session_id, skipped.clashes_with) == ("iop-pm-20261028", family)
    assert isinstance(changed, ScheduleChanged) and changed.skipped_meetings == ["iop-pm-20261028"]
    calendar = sessions_of(moved)
    assert all(a.ends_at <= b.starts_at for a, b in pairwise(calendar))  # no overlap left
    cancelled, _ = cancel_appointment(moved, family, now)
    assert "iop-pm-20261028" in ids(cancelled) and cancelled.skipped_meetings == []
    assert ids(cancelled) == sorted(ids(cancelled), key=lambda sid: session_of(cancelled, sid).starts_at)


def test_every_way_of_joining_leaves_off_the_meetings_that_overlap_an_appointment() -> None:
    now = datetime(2026, 10, 27, 12, 0, tzinfo=UTC)
    waiting, family = book(waiting_plan(), "family", ny(2026, 10, 28, 10))  # Wednesday 10:00: in iop-am
    joined, [changed] = join_from_waitlist(waiting, group("iop-am"), POLICY, now)
    assert WED_28 not in ids(joined) and changed.skipped_meetings == [WED_28]
    plan, family = book(joined_plan(), "family", ny(2026, 10, 29, 10))  # Thursday 10:00: in php-am
    moved, [level_changed] = change_level(plan, recommendation(CareLevel.PHP, now), POLICY, now,
                                          Joined(group("php-am")))  # fmt: skip
    assert isinstance(level_changed, CareLevelChanged) and level_changed.skipped_meetings == ["php-am-20261029"]
    assert "php-am-20261029" not in ids(moved) and family in ids(moved)
    custom, custom_changed = set_calendar(plan, "morning", ["tue", "thu", "sat"], 3, 4, POLICY, now)
    assert custom_changed.skipped_meetings == ["custom-20261029"] and family in ids(custom)


def test_a_meeting_back_from_a_cancelled_appointment_stays_off_while_another_overlaps_it() -> None:
    plan, first = book(joined_plan(), "family", EVENING_FAMILY)
    plan, second = book(plan, "individual", ny(2026, 10, 28, 20, 30), minutes=30)
    now = datetime(2026, 10, 27, 12, 0, tzinfo=UTC)
    moved, _ = change_track(plan, "evening", Joined(group("iop-pm")), POLICY, now)
    cancelled, _ = cancel_appointment(moved, first, now)
    assert "iop-pm-20261028" not in ids(cancelled)
    [skipped] = cancelled.skipped_meetings
    assert (skipped.session.session_id, skipped.clashes_with) == ("iop-pm-20261028", second)
