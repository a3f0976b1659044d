"""care_plan in-process: each handler applying its event, and a malformed event set aside."""

from __future__ import annotations

import uuid

import pytest

from services.care_plan.handlers import EVENT_HANDLERS
from services.care_plan.store import PLANS, CarePlanStore
from services.common.utc import utc_now
from stepwise_contract import (
    AttendanceReported,
    CareLevel,
    DrugScreenRecorded,
    SafetyAlertRaised,
    ScreenResult,
    new_event,
)
from tests.service.care_plan.helpers import (
    active_plan,
    assessment,
    first_session_id,
    intake_event,
    once_the_first_session_began,
)
from tests.service.conftest import Events, queued, set_aside
from tests.service.memory_mongo import MemoryDatabase


async def test_an_intake_assessment_starts_a_plan_and_announces_it(
    events: Events, store: CarePlanStore, database: MemoryDatabase
) -> None:
    episode_id = await active_plan(events, store)
    stored = await store.get(episode_id)
    assert stored is not None and stored.plan.status == "active" and stored.plan.level == CareLevel.IOP
    assert stored.plan.schedule is not None and stored.plan.schedule.sessions
    assert [topic for topic, _ in await queued(database[PLANS])] == ["iop.care_level.assigned"]


async def test_a_redelivered_intake_assessment_changes_nothing(
    events: Events, store: CarePlanStore, database: MemoryDatabase
) -> None:
    episode_id = str(uuid.uuid4())
    event = intake_event(assessment(episode_id))
    await events.deliver(event)
    first = await store.get(episode_id)
    await events.deliver(event)
    assert await store.get(episode_id) == first
    assert len(await queued(database[PLANS])) == 1


async def test_a_level_not_offered_refers_out(events: Events, store: CarePlanStore) -> None:
    episode_id = await active_plan(events, store, CareLevel.RESIDENTIAL)
    stored = await store.get(episode_id)
    assert stored is not None and stored.plan.status == "referred_out" and stored.plan.schedule is None


async def test_a_reassessment_feeds_the_plans_review(events: Events, store: CarePlanStore) -> None:
    episode_id = await active_plan(events, store)
    await events.deliver(intake_event(assessment(episode_id, kind="reassessment")))
    stored = await store.get(episode_id)
    assert stored is not None and [i.kind for i in stored.plan.inputs] == ["assessment"]


async def test_a_safety_alert_feeds_the_plans_review(events: Events, store: CarePlanStore) -> None:
    episode_id = await active_plan(events, store)
    alert = SafetyAlertRaised(episode_id=episode_id, alert_id="a1", assessment_id="x", level="immediate",
                              reasons=["cssrs_high_risk"], raised_at=utc_now())  # fmt: skip
    await events.deliver(intake_event(alert))
    stored = await store.get(episode_id)
    assert stored is not None
    assert [(i.kind, i.alert_level) for i in stored.plan.inputs] == [("safety_alert", "immediate")]


async def test_a_drug_screen_feeds_the_plans_review(events: Events, store: CarePlanStore) -> None:
    episode_id = await active_plan(events, store)
    screen = DrugScreenRecorded(episode_id=episode_id, screen_id="d1", collected_at=utc_now(),
                                recorded_at=utc_now(), unexpected_positive=True,
                                results=[ScreenResult(substance="fentanyl", result="positive")])  # fmt: skip
    await events.deliver(intake_event(screen))
    stored = await store.get(episode_id)
    assert stored is not None
    assert [(i.kind, i.unexpected_positive) for i in stored.plan.inputs] == [("drug_screen", True)]


async def test_reported_attendance_is_recorded(events: Events, store: CarePlanStore) -> None:
    episode_id = await active_plan(events, store)
    report = AttendanceReported(episode_id=episode_id, session_id=first_session_id(), status="attended",
                                reported_at=utc_now())  # fmt: skip
    with once_the_first_session_began():
        await events.deliver(new_event(report, source="/ehr"))
    stored = await store.get(episode_id)
    assert stored is not None and stored.plan.attendance[first_session_id()].status == "attended"


async def test_attendance_for_an_unknown_session_is_set_aside_with_its_reason(
    events: Events, store: CarePlanStore, database: MemoryDatabase
) -> None:
    episode_id = await active_plan(events, store)
    report = AttendanceReported(episode_id=episode_id, session_id="s999", status="attended",
                                reported_at=utc_now())  # fmt: skip
    await events.deliver(new_event(report, source="/ehr"))
    [shelved] = await set_aside(database)
    assert shelved["topic"] == "iop.attendance.reported" and shelved["reason"].startswith("rejected: unknown_session")


@pytest.mark.parametrize("topic", sorted(model.event_type for model in EVENT_HANDLERS))
async def test_a_malformed_event_is_set_aside_naming_the_field(
    events: Events, database: MemoryDatabase, topic: str
) -> None:
    await events.deliver_missing_data(topic)
    [shelved] = await set_aside(database)
    assert shelved["topic"] == topic and shelved["reason"].startswith("malformed:")
