"""care_plan's change path (changes.py) driven directly: sheets, the waitlist, inputs before their plan."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from pymongo.errors import AutoReconnect

from services.care_plan.app import create_broker
from services.care_plan.changes import (
    Decision,
    SheetLine,
    admit_waitlisted,
    adopt_pending,
    book_appointment,
    cancel_appointment,
    change_plan,
    change_plan_placed,
    change_track,
    decide_recommendation,
    graduate,
    hold_place,
    learn,
    record_for_episode,
    record_session_attendance,
    record_sheet,
    start_plan,
)
from services.care_plan.domain.groups import Joined, Waitlisted
from services.care_plan.domain.model import CareInput, CarePlan, CarePlanError
from services.care_plan.domain.policy import CarePolicy
from services.care_plan.handlers import Planning
from services.care_plan.store import PLANS, SEATS, CarePlanStore
from services.common.consumer import HANDLER_CONTEXT
from services.common.utc import utc_now
from stepwise_contract import CareLevel, DrugScreenRecorded, ScreenResult, SheetEntry
from tests.service.care_plan.helpers import (
    POLICY,
    SETTINGS,
    active_plan,
    assessment,
    consents_answering,
    discharged,
    first_session_id,
    first_session_start,
    intake_event,
    once_the_first_session_began,
)
from tests.service.conftest import Clock, Events, queued, running
from tests.service.memory_mongo import MemoryDatabase


async def test_each_sheet_line_says_what_became_of_it_and_a_command_records_each_once(
    events: Events, store: CarePlanStore
) -> None:
    member, excused = await active_plan(events, store), await active_plan(events, store)
    session_id = first_session_id()
    notice = first_session_start() - timedelta(days=1)
    sheet = [SheetEntry(episode_id=member, status="attended"),
             SheetEntry(episode_id=excused, status="excused", notice_given_at=notice),
             SheetEntry(episode_id=member, status="missed"),
             SheetEntry(episode_id="stranger", status="attended")]  # fmt: skip
    with once_the_first_session_began():
        lines = await record_sheet(store, POLICY, "iop-am", session_id, sheet, applied="/ehr#sheet-1")
        assert [(line.episode_id, line.outcome) for line in lines[:2]] == [(member, "recorded"), (excused, "recorded")]
        assert lines[0].record is not None and lines[0].record.status == "attended"
        assert lines[1].record is not None and lines[1].record.notice_given_at == notice
        assert lines[2:] == [
            SheetLine(member, "rejected", code="listed_twice", detail="the member is on the sheet twice"),
            SheetLine("stranger", "rejected", code="not_a_member", detail="no care plan for this episode"),
        ]
        again = await record_sheet(store, POLICY, "iop-am", session_id, sheet, applied="/ehr#sheet-1")
        assert again[:2] == [SheetLine(member, "applied_before"), SheetLine(excused, "applied_before")]
        by_hand = await record_sheet(store, POLICY, "iop-am", session_id, sheet[:1])
        assert [(line.episode_id, line.outcome) for line in by_hand] == [(member, "unchanged")]
        other_group = await record_sheet(store, POLICY, "iop-pm", session_id, sheet[:1])
        assert other_group == [SheetLine(member, "rejected", code="not_a_member",
                                         detail=f"session {session_id!r} is not in this care plan")]  # fmt: skip


class CountedClaims:
    """The store, counting the seats it was asked to claim."""

    def __init__(self, store: CarePlanStore) -> None:
        self.store = store
        self.claims: list[str] = []

    async def claim_seat(self, group: Any, episode_id: str, now: datetime) -> bool:
        self.claims.append(group.group_id)
        return await self.store.claim_seat(group, episode_id, now)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def one_seat_in(*group_ids: str) -> CarePolicy:
    """The default policy with one place in each of these groups."""
    groups = [g.model_copy(update={"capacity": 1}) if g.group_id in group_ids else g for g in POLICY.groups]
    return POLICY.model_copy(update={"groups": groups})


async def test_freed_places_go_to_the_plans_waiting_longest_each_place_tried_once_a_pass(
    database: MemoryDatabase, store: CarePlanStore, shelf: Any
) -> None:
    small = one_seat_in("iop-am", "php-am")
    kafka = create_broker(SETTINGS)
    context = {HANDLER_CONTEXT: Planning(store, small, SETTINGS.clinic_timezone), "event_shelf": shelf}
    async for events in running("care_plan", kafka.broker, context):
        iop_member, php_member = await active_plan(events, store), await active_plan(events, store, CareLevel.PHP)
        iop_first, iop_second = await active_plan(events, store), await active_plan(events, store)
        php_first, php_second = [await active_plan(events, store, CareLevel.PHP) for _ in range(2)]
        await change_plan(store, small, php_member, lambda plan, now: (discharged(plan, now), [], None))
        counted = CountedClaims(store)
        assert await admit_waitlisted(counted, small) == 1  # type: ignore[arg-type]
        # iop-am's one seat is held: its waitlist is not read, nor a seat tried (php-am, once free, is tried for each
        # of its two in turn: once for the first, who takes it, and once for the second)
        assert counted.claims == ["php-am", "php-am"]
        assert await store.holds_seat("php-am", php_first) and not await store.holds_seat("php-am", php_second)
        seat = await database[SEATS].find_one({"episode_id": php_first})
        assert seat is not None and abs(seat["claimed_at"] - utc_now()) < timedelta(seconds=5)
        for ended in (iop_member, php_first):
            await change_plan(store, small, ended, lambda plan, now: (discharged(plan, now), [], None))
        assert await admit_waitlisted(store, small) == 2
        for joined, group in ((iop_first, "iop-am"), (php_second, "php-am")):
            stored = await store.get(joined)
            assert stored is not None and stored.plan.group is not None and stored.plan.group.group_id == group
        still = await store.get(iop_second)
        assert still is not None and still.plan.waitlist is not None


async def test_a_seat_claimed_for_a_plan_that_stopped_waiting_meanwhile_is_let_go(
    database: MemoryDatabase, store: CarePlanStore, shelf: Any
) -> None:
    small = POLICY.model_copy(update={"groups": [g.model_copy(update={"capacity": 1}) if g.group_id == "iop-am" else g
                                                 for g in POLICY.groups]})  # fmt: skip
    kafka = create_broker(SETTINGS)
    context = {HANDLER_CONTEXT: Planning(store, small, SETTINGS.clinic_timezone), "event_shelf": shelf}
    async for events in running("care_plan", kafka.broker, context):
        member, waiting = await active_plan(events, store), await active_plan(events, store)
        read_before = await store.waitlisted()  # the pass read the waitlist; then the plan ended
        await change_plan(store, small, waiting, lambda plan, now: (discharged(plan, now), [], None))
        await change_plan(store, small, member, lambda plan, now: (discharged(plan, now), [], None))

        async def stale_waitlist(read: list[Any] = read_before) -> list[Any]:
            return read

        store.waitlisted = stale_waitlist  # type: ignore[method-assign]
        assert await admit_waitlisted(store, small) == 0
        assert not await store.holds_seat("iop-am", waiting)


async def test_a_placed_change_lets_its_seat_go_when_the_change_is_refused_and_applies_an_event_once(
    events: Events, store: CarePlanStore
) -> None:
    episode_id = await active_plan(events, store)
    group = POLICY.group("iop-pm")
    assert group is not None and group.capacity is not None
    assert await store.claim_seat(group, episode_id, utc_now())

    def refused(plan: CarePlan, now: datetime) -> Decision[None]:
        raise CarePlanError("refused", "no")

    with pytest.raises(CarePlanError):
        await change_plan_placed(store, POLICY, episode_id, Joined(group), refused)
    assert not await store.holds_seat("iop-pm", episode_id)

    def noted(plan: CarePlan, now: datetime) -> Decision[bool]:
        return plan.model_copy(update={"inputs": plan.inputs}), [], True

    held = POLICY.group("iop-am")
    assert held is not None
    assert await change_plan_placed(store, POLICY, episode_id, Joined(held), noted, "/x#1") is True
    assert await change_plan_placed(store, POLICY, episode_id, Joined(held), noted, "/x#1") is None  # applied before
    assert await store.holds_seat("iop-am", episode_id)  # the plan is in iop-am: its seat stays


class CreatedMeanwhile:
    """The store, with the plan created by another instance just before the input is kept as pending."""

    def __init__(self, store: CarePlanStore, create: Any) -> None:
        self.store = store
        self.create = create
        self.kept: list[str] = []

    async def park(self, episode_id: str, learned: CareInput, applied: str) -> bool:
        self.kept.append(applied)
        await self.create()  # the plan, created and its pending inputs adopted, before this one is kept
        return await self.store.park(episode_id, learned, applied)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def test_an_input_goes_to_its_plan_and_one_before_its_plan_is_adopted_if_the_plan_came_meanwhile(
    events: Events, store: CarePlanStore
) -> None:
    alert = CareInput(kind="safety_alert", at=utc_now(), source_id="a1", alert_level="same_day")
    episode_id = await active_plan(events, store)
    counted = CreatedMeanwhile(store, create=None)
    await learn(counted, POLICY, episode_id, alert, "/stepwise/intake#a1")  # type: ignore[arg-type]
    stored = await store.get(episode_id)
    assert stored is not None and [i.kind for i in stored.plan.inputs] == ["safety_alert"] and counted.kept == []

    later = str(uuid.uuid4())

    async def create() -> None:
        await events.deliver(intake_event(assessment(later)))

    meanwhile = CreatedMeanwhile(store, create)
    await learn(meanwhile, POLICY, later, alert, "/stepwise/intake#a2")  # type: ignore[arg-type]
    stored = await store.get(later)
    assert stored is not None and [i.kind for i in stored.plan.inputs] == ["safety_alert"]
    assert meanwhile.kept == ["/stepwise/intake#a2"] and await store.pending(later) == []


async def test_a_change_stores_the_plans_next_timer_and_a_change_that_changes_nothing_writes_nothing(
    events: Events, store: CarePlanStore, database: MemoryDatabase
) -> None:
    episode_id = await active_plan(events, store)
    stored = await store.get(episode_id)
    assert stored is not None and stored.next_check_at is not None
    due = stored.next_check_at
    await database[PLANS].update_one({"_id": episode_id}, {"$set": {"next_check_at": due + timedelta(days=9)}})
    nothing = await change_plan(store, POLICY, episode_id, lambda plan, now: (plan, [], "same"))
    assert nothing == "same"
    timer_only = await store.get(episode_id)
    assert timer_only is not None and timer_only.next_check_at == due  # the timer alone was out of step: stored
    assert timer_only.version == stored.version + 1
    assert await change_plan(store, POLICY, episode_id, lambda plan, now: (plan, [], "same")) == "same"
    unchanged = await store.get(episode_id)
    assert unchanged is not None and unchanged.version == timer_only.version  # nothing to write: no write
    noted = CareInput(kind="drug_screen", at=utc_now(), source_id="s1", unexpected_positive=False)
    await change_plan(store, POLICY, episode_id, lambda plan, now: (plan.model_copy(update={"inputs": [noted]}), [], 1))
    changed = await store.get(episode_id)
    assert changed is not None and changed.plan.inputs == [noted] and changed.version == unchanged.version + 1


async def test_a_change_that_lost_its_write_is_decided_again_on_what_won(
    events: Events, store: CarePlanStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    episode_id = await active_plan(events, store)
    real_save = store.save
    saves: list[bool] = []

    async def first_loses(*args: Any) -> bool:
        saved = bool(saves) and await real_save(*args)
        saves.append(saved)
        return saved

    monkeypatch.setattr(store, "save", first_loses)
    noted = CareInput(kind="drug_screen", at=utc_now(), source_id="s1", unexpected_positive=False)
    assert await change_plan(store, POLICY, episode_id, lambda plan, now: (plan.model_copy(update={"inputs": [noted]}),
                                                                           [], "done")) == "done"  # fmt: skip
    stored = await store.get(episode_id)
    assert saves == [False, True] and stored is not None and stored.plan.inputs == [noted]


async def test_a_plan_that_leaves_its_group_frees_its_seat_and_says_so_when_it_cannot(
    events: Events, store: CarePlanStore, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    episode_id, other = await active_plan(events, store), await active_plan(events, store)
    assert await store.holds_seat("iop-am", episode_id)
    await change_plan(store, POLICY, episode_id, lambda plan, now: (discharged(plan, now), [], None))
    assert not await store.holds_seat("iop-am", episode_id)

    async def store_gone(*_: Any) -> None:
        raise AutoReconnect("store down")

    monkeypatch.setattr(store, "release_seat", store_gone)
    caplog.set_level(logging.WARNING, logger="services.care_plan.changes")
    await change_plan(store, POLICY, other, lambda plan, now: (discharged(plan, now), [], None))
    ended = await store.get(other)
    assert ended is not None and ended.plan.status == "discharged"  # the plan's write stands
    assert [r.getMessage() for r in caplog.records if r.name == "services.care_plan.changes"] == [
        f"episode {other}: seat in iop-am not released (AutoReconnect): freed when the group is next full"
    ]


async def test_a_seat_held_before_is_the_plans_even_while_others_wait_for_the_group(
    database: MemoryDatabase, store: CarePlanStore, shelf: Any
) -> None:
    small = POLICY.model_copy(update={"groups": [g.model_copy(update={"capacity": 1}) if g.group_id == "iop-am" else g
                                                 for g in POLICY.groups]})  # fmt: skip
    kafka = create_broker(SETTINGS)
    context = {HANDLER_CONTEXT: Planning(store, small, SETTINGS.clinic_timezone), "event_shelf": shelf}
    async for events in running("care_plan", kafka.broker, context):
        member = await active_plan(events, store)
        await active_plan(events, store)  # waits for iop-am
        again = await hold_place(store, small, member, CareLevel.IOP, "morning", "adult")  # a retry, say
        assert isinstance(again, Joined) and again.group.group_id == "iop-am"


async def test_attendance_recorded_by_staff_may_be_corrected_by_default(events: Events, store: CarePlanStore) -> None:
    episode_id = await active_plan(events, store)
    session_id = first_session_id()
    with once_the_first_session_began():
        first = await record_session_attendance(store, POLICY, episode_id, session_id, "missed")
        corrected = await record_session_attendance(store, POLICY, episode_id, session_id, "attended")
    assert first is not None and first.record.status == "missed"
    assert corrected is not None and corrected.changed and corrected.record.status == "attended"


async def test_an_assessment_starts_one_plan_and_a_late_repeat_holds_no_seat(store: CarePlanStore) -> None:
    episode_id = str(uuid.uuid4())
    first = assessment(episode_id)
    plan = await start_plan(store, POLICY, first, "/stepwise/intake#1", SETTINGS.clinic_timezone)
    assert plan is not None and plan.group is not None and await store.holds_seat(plan.group.group_id, episode_id)
    assert await start_plan(store, POLICY, first, "/stepwise/intake#1", SETTINGS.clinic_timezone) is None
    assert await store.holds_seat(plan.group.group_id, episode_id)  # the plan's own seat stays
    await change_plan(store, POLICY, episode_id, lambda plan, now: (discharged(plan, now), [], None))
    assert await start_plan(store, POLICY, first, "/stepwise/intake#1", SETTINGS.clinic_timezone) is None
    assert not await store.holds_seat(plan.group.group_id, episode_id)  # the seat claimed for the repeat is let go


async def test_a_plan_joins_the_waitlist_behind_the_others_waiting_for_its_place(
    database: MemoryDatabase, store: CarePlanStore, shelf: Any
) -> None:
    small = one_seat_in("iop-am", "php-am")
    kafka = create_broker(SETTINGS)
    context = {HANDLER_CONTEXT: Planning(store, small, SETTINGS.clinic_timezone), "event_shelf": shelf}
    async for events in running("care_plan", kafka.broker, context):
        await active_plan(events, store)  # takes iop-am's seat
        await active_plan(events, store, CareLevel.PHP)  # takes php-am's seat
        for _ in range(2):
            await active_plan(events, store)  # wait for iop-am
        await active_plan(events, store, CareLevel.PHP)  # waits for php-am: another place
        itself = await active_plan(events, store)  # waits for iop-am too, third
        placed = await hold_place(store, small, itself, CareLevel.IOP, "morning", "adult")  # asked again
        assert isinstance(placed, Waitlisted) and placed.position == 3  # behind the two before it, not itself
        episode_id = str(uuid.uuid4())
        joined = await hold_place(store, small, episode_id, CareLevel.IOP, "evening", "adult")  # iop-pm has room
        assert isinstance(joined, Joined)
        seat = await database[SEATS].find_one({"episode_id": episode_id})
        assert seat is not None and abs(seat["claimed_at"] - utc_now()) < timedelta(seconds=5)
        early = str(uuid.uuid4())
        await store.keep_pending(early, CareInput(kind="safety_alert", at=utc_now(), source_id="a1"), "/x#1")
        assert await adopt_pending(store, small, early) == 0  # no plan yet: nothing adopted, the input waits
        assert len(await store.pending(early)) == 1


async def _step_up_recommended(events: Events, store: CarePlanStore, episode_id: str) -> str:
    for n in range(2):  # two unexpected positive screens within 14 days recommend a step-up (the policy's rule)
        screen = DrugScreenRecorded(episode_id=episode_id, screen_id=f"d{n}", collected_at=utc_now(),
                                    recorded_at=utc_now(), unexpected_positive=True,
                                    results=[ScreenResult(substance="fentanyl", result="positive")])  # fmt: skip
        await events.deliver(intake_event(screen))
    stored = await store.get(episode_id)
    assert stored is not None and stored.plan.open_recommendation is not None
    assert stored.plan.open_recommendation.to_level == CareLevel.PHP
    return stored.plan.open_recommendation.recommendation_id


class SeatClaims:
    """The store, counting the seats claimed through it (a seat held even for a moment is one a waiting plan
    being admitted meanwhile does not get)."""

    def __init__(self, store: CarePlanStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.claimed: list[tuple[str, str]] = []
        claim = store.claim_seat

        async def counted(group: Any, episode_id: str, now: datetime) -> bool:
            self.claimed.append((group.group_id, episode_id))
            return await claim(group, episode_id, now)

        monkeypatch.setattr(store, "claim_seat", counted)


async def test_an_accepted_step_up_joins_the_new_levels_group_of_the_plans_track_and_program(
    events: Events, store: CarePlanStore
) -> None:
    teen = str(uuid.uuid4())
    await events.deliver(intake_event(assessment(teen, track="evening").model_copy(update={"program": "adolescent"})))
    recommendation_id = await _step_up_recommended(events, store, teen)
    decided = await decide_recommendation(store, POLICY, teen, recommendation_id, True, None, "clinician-1")
    assert (decided.status, decided.decided_by) == ("accepted", "clinician-1")
    stored = await store.get(teen)
    assert stored is not None and stored.plan.level == CareLevel.PHP
    assert stored.plan.group is not None and stored.plan.group.group_id == "php-teen-pm"  # adolescents, evening
    assert await store.holds_seat("php-teen-pm", teen) and not await store.holds_seat("iop-teen-pm", teen)


async def test_a_declined_recommendation_keeps_its_reason_and_holds_no_seat_even_for_a_moment(
    events: Events, store: CarePlanStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    episode_id = await active_plan(events, store)
    recommendation_id = await _step_up_recommended(events, store, episode_id)
    seats = SeatClaims(store, monkeypatch)
    declined = await decide_recommendation(store, POLICY, episode_id, recommendation_id, False, "stable at work",
                                           "clinician-1")  # fmt: skip
    assert (declined.status, declined.decision_reason) == ("declined", "stable at work")
    stored = await store.get(episode_id)
    assert stored is not None and stored.plan.recommendations[-1].decision_reason == "stable at work"
    with pytest.raises(CarePlanError) as closed:  # accepting it now: refused, and no seat taken for it
        await decide_recommendation(store, POLICY, episode_id, recommendation_id, True, None, "clinician-1")
    assert closed.value.code == "recommendation_closed"
    assert seats.claimed == []


async def test_a_recommendation_decided_for_an_episode_without_a_plan_is_no_care_plan(store: CarePlanStore) -> None:
    with pytest.raises(CarePlanError) as refused:
        await decide_recommendation(store, POLICY, "nobody", "r-1", True, None, "clinician-1")
    assert refused.value.code == "no_care_plan"


async def test_a_seat_held_for_a_change_that_fails_is_let_go(
    events: Events, store: CarePlanStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    moving, stepping = await active_plan(events, store), await active_plan(events, store)
    recommendation_id = await _step_up_recommended(events, store, stepping)

    async def refused(*_: Any) -> bool:
        raise AutoReconnect("the store went away mid-write")

    monkeypatch.setattr(store, "save", refused)
    with pytest.raises(AutoReconnect):
        await change_track(store, POLICY, moving, "evening")
    with pytest.raises(AutoReconnect):
        await decide_recommendation(store, POLICY, stepping, recommendation_id, True, None, "clinician-1")
    assert not await store.holds_seat("iop-pm", moving) and not await store.holds_seat("php-am", stepping)


async def test_a_track_change_holds_the_seat_in_the_episodes_name_and_one_that_moves_nothing_holds_none(
    events: Events, store: CarePlanStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    episode_id = await active_plan(events, store)
    moved = await change_track(store, POLICY, episode_id, "evening")
    assert moved.group is not None and moved.group.group_id == "iop-pm"
    assert await store.holds_seat("iop-pm", episode_id)
    seats = SeatClaims(store, monkeypatch)
    assert await change_track(store, POLICY, episode_id, "evening") == moved  # the same track: nothing moves
    await change_plan(store, POLICY, episode_id, lambda plan, now: (discharged(plan, now), [], None))
    with pytest.raises(CarePlanError):  # an ended plan changes track no more
        await change_track(store, POLICY, episode_id, "morning")
    assert seats.claimed == []


async def test_a_track_change_decided_again_on_a_plan_changed_meanwhile_waits_for_a_group_of_the_track(
    events: Events, store: CarePlanStore, database: MemoryDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan was on the evening track when the change was asked for, and back on the morning one when it was
    decided (another clinician): no seat was held, so it waits, first, for a group of its level and the track."""
    episode_id = await active_plan(events, store)
    await change_track(store, POLICY, episode_id, "evening")
    as_asked = await store.get(episode_id)
    await change_track(store, POLICY, episode_id, "morning")
    real_get = store.get
    reads: list[str] = []

    async def first_read_as_asked(wanted: str) -> Any:
        reads.append(wanted)
        return as_asked if len(reads) == 1 else await real_get(wanted)

    monkeypatch.setattr(store, "get", first_read_as_asked)
    waiting = await change_track(store, POLICY, episode_id, "evening")
    assert waiting.group is None and waiting.waitlist is not None
    assert (waiting.waitlist.level, waiting.waitlist.track) == (CareLevel.IOP, "evening")
    assert waiting.waitlist.group_ids == ["iop-pm"]  # the policy's IOP evening group for adults
    assert "no_group_for_program" not in [reason.code for reason in waiting.rationale]
    assert waiting.schedule is not None and waiting.schedule.track == "evening"
    [*_, (topic, data)] = [(t, d) for t, d in await queued(database[PLANS]) if d["episode_id"] == episode_id]
    assert topic == "iop.group.waitlisted"
    assert (data["level"], data["track"], data["position"]) == ("IOP", "evening", 1)


async def test_graduating_names_the_clinician_who_graduated(events: Events, store: CarePlanStore) -> None:
    episode_id = await active_plan(events, store)
    ended = await graduate(store, POLICY, episode_id, "clinician-7", "moving away: care continues nearer home")
    assert (ended.status, ended.ended_by) == ("graduated", "clinician-7")


async def test_an_appointment_is_booked_for_the_minutes_asked_and_one_begun_is_not_cancelled(
    events: Events, store: CarePlanStore, clock: Clock
) -> None:
    episode_id = await active_plan(events, store)
    at = (utc_now() + timedelta(days=2)).replace(second=0, microsecond=0)
    booked = await book_appointment(store, POLICY, consents_answering([]), episode_id, "individual", at, 38)
    assert booked.ends_at - booked.starts_at == timedelta(minutes=38)  # the policy's individual session is 53
    with pytest.raises(CarePlanError) as refused:
        await book_appointment(store, POLICY, consents_answering([]), episode_id, "family", at + timedelta(days=1))
    assert (refused.value.code, str(refused.value)) == (
        "no_family_consent",
        "no consent in force names a family member or support for appointments: record one at intake",
    )
    clock.at(at + timedelta(minutes=5))
    with pytest.raises(CarePlanError) as begun:
        await cancel_appointment(store, POLICY, episode_id, booked.session_id)
    assert (begun.value.code, str(begun.value), begun.value.field) == (
        "appointment_in_past",
        "an appointment that has begun or has a record stays",
        ("path", "session_id"),
    )


async def test_staff_record_an_excused_absence_with_the_notice_given(events: Events, store: CarePlanStore) -> None:
    episode_id = await active_plan(events, store)
    notice = utc_now() - timedelta(hours=2)
    recorded = await record_for_episode(store, POLICY, episode_id, first_session_id(), "excused", notice)
    assert recorded.changed and (recorded.record.status, recorded.record.notice_given_at) == ("excused", notice)
