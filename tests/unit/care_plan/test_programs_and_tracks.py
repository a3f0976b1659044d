"""Programs and tracks (domain/groups.py): a plan joins only a group of its level, track and program."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.care_plan.domain.care_plan import assign_care_level, graduate
from services.care_plan.domain.groups import Joined, Waitlisted, change_track, join_from_waitlist
from services.care_plan.domain.measures import without_measures
from services.care_plan.domain.model import CarePlanError, GroupPlace
from services.care_plan.domain.policy import CarePolicy
from stepwise_contract import CareLevel, CareLevelAssigned, GroupWaitlisted, Reason, ScheduleChanged
from tests.unit.care_plan.helpers import (
    ASSIGNED_AT,
    FRI_23,
    LATER,
    MON_26,
    NEW_YORK,
    POLICY,
    WED_21,
    assessment,
    book,
    group,
    ids,
    joined_plan,
    new_plan,
    ny,
    sessions_of,
)
from tests.unit.care_plan.test_care_plan import default_raw


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
    return without_measures(CarePolicy.model_validate(raw))  # due measures: test_measures.py


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
