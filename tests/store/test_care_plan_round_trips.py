"""What an episode's first events cost care_plan's store, on a real server (issue 31): its intake assessment and the
measure intake publishes with it (on another topic: before or after it), each one write, whichever comes first, and
one write for both when the measure comes first in the same consumer batch; a second instance, holding nothing or a
document another changed since, reads and loses nothing; what the previous version kept apart (``pending_inputs``)
is taken by the timer pass."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.care_plan.changes import adopt_kept_apart
from services.care_plan.domain.model import CareInput
from services.care_plan.domain.policy import load_policy
from services.care_plan.handlers import Planning, on_assessment_completed, on_measure_recorded, on_safety_alert_raised
from services.care_plan.store import PENDING_INPUTS, PLANS, CarePlanStore
from services.common.bulk import EPISODE_RECORDS, EpisodeRecords
from services.common.outbox import no_relay
from services.common.utc import utc_now
from stepwise_contract import (
    AssessmentCompleted,
    CareLevel,
    CloudEvent,
    DimensionRatings,
    InstrumentMeasure,
    MeasureRecorded,
    Reason,
    SafetyAlertRaised,
    new_event,
)
from tests.store.conftest import CommandLog, Document

pytestmark = pytest.mark.second_server

DEFAULT = load_policy()
POLICY = DEFAULT.model_copy(update={"groups": [g.model_copy(update={"capacity": None}) for g in DEFAULT.groups]})
"""Roomy groups, as the benchmark's throughput runs: a plan takes a place without a seat or a waitlist read."""


async def instance(database: AsyncDatabase[Document]) -> Planning:
    store = CarePlanStore(database, no_relay)
    await store.create_indexes()
    return Planning(store, POLICY, "America/New_York")


def intake(data: Any) -> CloudEvent[Any]:
    return new_event(data, source="/stepwise/intake")


def assessed(episode_id: str) -> CloudEvent[AssessmentCompleted]:
    return intake(AssessmentCompleted(
        episode_id=episode_id, assessment_id=f"as-{episode_id}", kind="intake", program="adult", assessed_at=utc_now(),
        dimensions=DimensionRatings(withdrawal=1, biomedical=0, emotional=2, readiness=2, relapse=2, environment=1),
        recommended_level=CareLevel.IOP, policy_version="test",
        rationale=[Reason(code="recommended_level", text="Recommended level of care: iop.")],
    ))  # fmt: skip


def measured(episode_id: str) -> CloudEvent[MeasureRecorded]:
    """Intake's measure of the assessment (``source`` assessment), published with it."""
    phq9 = InstrumentMeasure(instrument="phq9", score=12, band="moderate", baseline_score=12, previous_score=None,
                             classification="baseline", recovered=False, response=False)  # fmt: skip
    return intake(MeasureRecorded(episode_id=episode_id, measure_id=f"as-{episode_id}", source="assessment",
                                  recorded_at=utc_now(), instruments=[phq9]))  # fmt: skip


def alerted(episode_id: str) -> CloudEvent[SafetyAlertRaised]:
    alert = SafetyAlertRaised(episode_id=episode_id, alert_id=f"al-{episode_id}", assessment_id="x", level="same_day",
                              reasons=["phq9_item9_positive"], raised_at=utc_now())  # fmt: skip
    return intake(alert)


async def inputs_of(planning: Planning, episode_id: str) -> list[str]:
    stored = await planning.store.get(episode_id)
    assert stored is not None
    return [learned.kind for learned in stored.plan.inputs]


def plan_commands(commands: CommandLog) -> list[str]:
    return [f"{name} {collection}" for name, collection, _ in commands.seen if collection in (PLANS, PENDING_INPUTS)]


async def test_an_assessment_and_its_measure_cost_one_write_each_in_either_order_and_a_redelivery_nothing(
    noted: tuple[AsyncDatabase[Document], CommandLog],
) -> None:
    database, commands = noted
    planning = await instance(database)
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    measure = measured(second)
    commands.seen.clear()
    await on_assessment_completed(assessed(first), planning)
    await on_measure_recorded(measured(first), planning)  # to the plan held: no read
    assert plan_commands(commands) == [f"insert {PLANS}", f"update {PLANS}"]
    commands.seen.clear()
    await on_measure_recorded(measure, planning)  # before its plan: kept in the plan's document
    await on_assessment_completed(assessed(second), planning)  # the plan written over it, taking it
    assert plan_commands(commands) == [f"update {PLANS}", f"update {PLANS}"]
    commands.seen.clear()
    await on_measure_recorded(measure, planning)  # a redelivery: applied, as the plan held says
    assert plan_commands(commands) == []
    assert await inputs_of(planning, first) == await inputs_of(planning, second) == ["measure"]
    assert await planning.store.pending(second) == []
    for episode_id in (first, second):  # what the store holds is what a read gives
        assert planning.store.held(episode_id) == await planning.store.get(episode_id)


@asynccontextmanager
async def one_batch() -> AsyncIterator[None]:
    """An episode's records in a consumer batch, as ``EventBatch`` applies them: what handlers held is stored at the
    end."""
    episode = EpisodeRecords()
    token = EPISODE_RECORDS.set(episode)
    try:
        yield
        await episode.finish()
    finally:
        EPISODE_RECORDS.reset(token)


async def test_a_measure_and_its_assessment_in_one_batch_are_one_write_and_a_measure_alone_is_kept_at_its_end(
    noted: tuple[AsyncDatabase[Document], CommandLog],
) -> None:
    database, commands = noted
    planning = await instance(database)
    together, apart = str(uuid.uuid4()), str(uuid.uuid4())
    measure = measured(together)
    commands.seen.clear()
    async with one_batch():
        await on_measure_recorded(measure, planning)  # held for the batch's end
        await on_assessment_completed(assessed(together), planning)  # the plan made with it
    assert plan_commands(commands) == [f"insert {PLANS}"]
    assert await inputs_of(planning, together) == ["measure"]
    commands.seen.clear()
    async with one_batch():
        await on_measure_recorded(measure, planning)  # a redelivery: applied, as the plan held says
    assert plan_commands(commands) == []
    async with one_batch():
        await on_measure_recorded(measured(apart), planning)  # no assessment in the batch: kept at its end
    assert [kept.input.kind for kept in await planning.store.pending(apart)] == ["measure"]
    await on_assessment_completed(assessed(apart), planning)
    assert await inputs_of(planning, apart) == ["measure"]
    for episode_id in (together, apart):  # what the store holds is what a read gives
        assert planning.store.held(episode_id) == await planning.store.get(episode_id)


async def test_a_measure_held_in_a_batch_goes_to_the_plan_another_instance_made_meanwhile(
    noted: tuple[AsyncDatabase[Document], CommandLog],
) -> None:
    database, _ = noted
    one, other = await instance(database), await instance(database)
    episode_id = str(uuid.uuid4())
    assessment = assessed(episode_id)
    await on_assessment_completed(assessment, other)  # ``one`` holds nothing of it
    async with one_batch():
        await on_measure_recorded(measured(episode_id), one)  # held for the batch's end
        await on_assessment_completed(assessment, one)  # a redelivery: the plan is there, and is given the input
    assert await inputs_of(one, episode_id) == ["measure"]


async def test_another_instance_reads_what_it_does_not_hold_and_loses_no_input(
    noted: tuple[AsyncDatabase[Document], CommandLog],
) -> None:
    database, _ = noted
    one, other = await instance(database), await instance(database)
    episode_id = str(uuid.uuid4())
    assessment, alert = assessed(episode_id), alerted(episode_id)
    await on_measure_recorded(measured(episode_id), one)  # kept: ``one`` holds the document
    await on_safety_alert_raised(alert, other)  # not held: read, kept too
    await on_assessment_completed(assessment, one)  # ``one``'s is stale: its write loses, it reads
    await on_assessment_completed(assessment, other)  # a redelivery elsewhere: the plan is there
    await on_safety_alert_raised(alert, other)  # ``other`` held the inputs: the plan took it already
    assert await inputs_of(one, episode_id) == ["measure", "safety_alert"]
    stored = await one.store.get(episode_id)
    assert stored is not None and stored.version == 3  # two inputs kept, the plan written over them, nothing more


async def test_inputs_the_previous_version_kept_apart_are_taken_by_the_timer_pass(
    noted: tuple[AsyncDatabase[Document], CommandLog],
) -> None:
    database, _ = noted
    planning = await instance(database)
    planned, unplanned = str(uuid.uuid4()), str(uuid.uuid4())
    alert = CareInput(kind="safety_alert", at=utc_now(), source_id="a1", alert_level="same_day")
    for episode_id in (planned, unplanned):  # as the previous version kept them, before the upgrade
        await planning.store.keep_pending(episode_id, alert, f"/stepwise/intake#a1-{episode_id}")
    await on_assessment_completed(assessed(planned), planning)
    assert await adopt_kept_apart(planning.store, POLICY) == 2
    assert await inputs_of(planning, planned) == ["safety_alert"]
    assert [kept.input for kept in await planning.store.pending(unplanned)] == [alert]  # in the plan's document now
    assert await database[PENDING_INPUTS].count_documents({}) == 0
    await on_assessment_completed(assessed(unplanned), planning)
    assert await inputs_of(planning, unplanned) == ["safety_alert"]
    assert await adopt_kept_apart(planning.store, POLICY) == 0
