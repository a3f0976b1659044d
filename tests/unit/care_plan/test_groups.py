"""Program groups (domain/groups.py): joining a group, a place joined or waitlisted, joining from the waitlist, the
calendar a plan keeps, and the meetings left off for the plan's own appointments."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from services.care_plan.domain.care_plan import change_level, graduate, set_calendar
from services.care_plan.domain.groups import (
    Joined,
    Waitlisted,
    build_schedule,
    calendar_with,
    cancel_appointment,
    change_track,
    first_meeting_after,
    join_from_waitlist,
    place,
)
from services.care_plan.domain.model import GroupPlace, WaitlistPlace
from stepwise_contract import CareLevel, CareLevelAssigned, CareLevelChanged, GroupWaitlisted, ScheduleChanged
from tests.unit.care_plan.helpers import (
    ASSIGNED_AT,
    FRI_23,
    FRI_30,
    LATER,
    MON_26,
    NEW_YORK,
    NY,
    POLICY,
    WED_21,
    WED_28,
    book,
    group,
    ids,
    joined_plan,
    new_plan,
    ny,
    policy_with_group_closures,
    recommendation,
    session_of,
    sessions_of,
    waiting_plan,
)

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
