"""care_plan in-process with the default policy's due measures: a window opens on the plan's timer and publishes
iop.measure.due; iop.measure.recorded settles it (done) or, with a reliable deterioration, feeds the step-up
review; GET measures-due shows both."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from services.care_plan.app import create_broker
from services.care_plan.changes import Decision, change_plan
from services.care_plan.domain.care_plan import graduate
from services.care_plan.domain.model import CarePlan
from services.care_plan.domain.policy import load_policy
from services.care_plan.handlers import Planning
from services.care_plan.store import PLANS, CarePlanStore
from services.care_plan.timers import DueChecks
from services.common.consumer import HANDLER_CONTEXT
from services.common.utc import utc_now
from stepwise_contract import InstrumentMeasure, InstrumentResult, MeasureClassification, MeasureRecorded
from tests.service.care_plan.helpers import (
    APP,
    CLINICIAN,
    FAMILY_CONSENT,
    SETTINGS,
    assessment,
    clock_at,
    consents_answering,
    intake_event,
)
from tests.service.conftest import Events, queued, running
from tests.service.conftest import api as client_of
from tests.service.memory_mongo import MemoryDatabase

FULL = load_policy(SETTINGS.care_plan_policy_file)
BASELINE = [InstrumentResult(instrument="phq9", total=8, band="mild"),
            InstrumentResult(instrument="gad7", total=6, band="mild")]  # fmt: skip


@pytest.fixture
async def measured_events(database: MemoryDatabase, store: CarePlanStore, shelf: Any) -> AsyncIterator[Events]:
    context = {HANDLER_CONTEXT: Planning(store, FULL, SETTINGS.clinic_timezone), "event_shelf": shelf}
    async for running_events in running("care_plan", create_broker(SETTINGS).broker, context):
        yield running_events


@pytest.fixture
async def measured_http(database: MemoryDatabase, store: CarePlanStore) -> AsyncIterator[httpx.AsyncClient]:
    state = {"store": store, "policy": FULL, "kafka": create_broker(SETTINGS),
             "clinic_timezone": SETTINGS.clinic_timezone, "consents": consents_answering(FAMILY_CONSENT)}  # fmt: skip
    async with await client_of("care_plan", APP, database, state) as client:
        yield client


def recorded(
    episode_id: str, at: datetime, phq9: int = 7, classification: MeasureClassification = "no_reliable_change"
) -> Any:
    instruments = [
        InstrumentMeasure(instrument="phq9", score=phq9, band="mild", baseline_score=8, previous_score=8,
                           classification=classification, recovered=False, response=False),
        InstrumentMeasure(instrument="gad7", score=5, band="mild", baseline_score=6, previous_score=6,
                           classification="no_reliable_change", recovered=False, response=False),
    ]  # fmt: skip
    data = MeasureRecorded(episode_id=episode_id, measure_id=str(uuid.uuid4()), source="measure", recorded_at=at,
                           instruments=instruments)  # fmt: skip
    return intake_event(data)


async def started(events: Events, store: CarePlanStore) -> tuple[str, datetime]:
    """An IOP plan whose intake scored PHQ-9 and GAD-7 (the admission measure), and when its first weekly
    window opens (local midnight two days before the seventh day)."""
    episode_id = str(uuid.uuid4())
    await events.deliver(intake_event(assessment(episode_id, instruments=BASELINE)))
    stored = await store.get(episode_id)
    assert stored is not None and stored.plan.measures == []  # the intake assessment was the admission measure
    zone = ZoneInfo(SETTINGS.clinic_timezone)
    day = stored.plan.assigned_at.astimezone(zone).date() + timedelta(days=5)
    return episode_id, datetime.combine(day, datetime.min.time(), tzinfo=zone)


async def test_a_window_opens_on_the_plans_timer_and_a_recorded_measure_settles_it(
    measured_events: Events, measured_http: httpx.AsyncClient, store: CarePlanStore, database: MemoryDatabase
) -> None:
    episode_id, opens = await started(measured_events, store)
    stored = await store.get(episode_id)
    assert stored is not None and stored.next_check_at is not None and stored.next_check_at <= opens
    with clock_at(opens + timedelta(minutes=1)):
        await DueChecks(store, FULL, 1).work_once()
        due = [data for topic, data in await queued(database[PLANS]) if topic == "iop.measure.due"]
        assert [(d["reason"], d["instruments"]) for d in due] == [("schedule", ["phq9", "gad7"])]
        answered = utc_now()
        await measured_events.deliver(recorded(episode_id, answered))
        found = await measured_http.get(f"/v1/episodes/{episode_id}/measures-due", headers=CLINICIAN)
    assert found.status_code == 200
    [measure] = found.json()["measures"]
    assert measure["due_id"] == due[0]["due_id"] and measure["status"] == "done"
    assert [u["reason"] for u in found.json()["upcoming"]][:1] == ["schedule"]
    missing = await measured_http.get("/v1/episodes/nobody/measures-due", headers=CLINICIAN)
    assert missing.status_code == 404


async def test_a_reliable_deterioration_recommends_a_step_up_with_its_rationale(
    measured_events: Events, store: CarePlanStore, database: MemoryDatabase
) -> None:
    episode_id, opens = await started(measured_events, store)
    with clock_at(opens + timedelta(hours=1)):
        await measured_events.deliver(recorded(episode_id, utc_now(), phq9=16, classification="reliable_deterioration"))
    [step_up] = [data for topic, data in await queued(database[PLANS]) if topic == "iop.care_level.step_up_recommended"]
    assert [r["code"] for r in step_up["rationale"]] == ["reliable_deterioration"]
    assert "PHQ-9 16" in step_up["rationale"][0]["text"]
    stored = await store.get(episode_id)
    assert stored is not None and [i.kind for i in stored.plan.inputs] == ["measure"]


async def test_a_graduates_follow_up_has_its_own_timer_which_the_timer_pass_takes(
    measured_events: Events, store: CarePlanStore, database: MemoryDatabase
) -> None:
    episode_id, _ = await started(measured_events, store)

    def graduating(plan: CarePlan, now: datetime) -> Decision[None]:
        ended, event = graduate(plan, now, by="completion")
        return ended, [event], None

    await change_plan(store, FULL, episode_id, graduating)
    stored = await store.get(episode_id)
    assert stored is not None and stored.next_check_at is None  # the episode's timer ended with it
    follow_up = stored.plan.follow_up_at
    assert follow_up is not None and follow_up - stored.plan.assigned_at > timedelta(days=27)
    with clock_at(follow_up + timedelta(minutes=1)):
        assert episode_id in await store.due(utc_now())
        await DueChecks(store, FULL, 1).work_once()
    due = [data for topic, data in await queued(database[PLANS]) if topic == "iop.measure.due"]
    assert [d["reason"] for d in due] == ["alumni"]
