"""care_plan's store on a real server: plans as aggregates, timers, rosters, the waitlist and group seats."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.care_plan.domain.care_plan import assign_care_level
from services.care_plan.domain.groups import Joined, Waitlisted
from services.care_plan.domain.model import CareInput, CarePlan, DeliveredService
from services.care_plan.domain.policy import ProgramGroup, load_policy
from services.care_plan.store import SEATS, STALE_SEAT, CarePlanStore
from services.common.outbox import no_relay
from services.common.utc import utc_now
from stepwise_contract import AssessmentCompleted, CareLevel, DimensionRatings, EventData, Reason, new_event
from tests.store.conftest import Document

pytestmark = pytest.mark.second_server

POLICY = load_policy()


def group_of(group_id: str) -> ProgramGroup:
    found = POLICY.group(group_id)
    assert found is not None, group_id
    return found


IOP_AM = group_of("iop-am")
assert IOP_AM is not None
SMALL = IOP_AM.model_copy(update={"group_id": "iop-small", "capacity": 2})


def plan_for(episode_id: str, group: ProgramGroup | None = IOP_AM) -> tuple[CarePlan, list[EventData]]:
    """A new IOP plan, joined to ``group`` (None: on the waitlist), with its events."""
    now = utc_now()
    assessment = AssessmentCompleted(
        episode_id=episode_id, assessment_id=f"as-{episode_id}", kind="intake", program="adult",
        assessed_at=now - timedelta(hours=1), recommended_level=CareLevel.IOP, policy_version="simple-1",
        dimensions=DimensionRatings(withdrawal=0, biomedical=0, emotional=2, readiness=1, relapse=1, environment=0),
        rationale=[Reason(code="highest_dimension", text="Highest dimension rating is 2 (emotional): IOP.")],
    )  # fmt: skip
    placement = Joined(group) if group else Waitlisted([IOP_AM], CareLevel.IOP, "morning", 1)
    plan, events = assign_care_level(assessment, POLICY, "America/New_York", now, placement)
    return plan, events


async def care_plan_store(database: AsyncDatabase[Document]) -> CarePlanStore:
    store = CarePlanStore(database, no_relay)
    await store.create_indexes()
    return store


async def test_a_plan_is_created_once_and_saved_from_its_version_with_its_timer(
    database: AsyncDatabase[Document],
) -> None:
    store = await care_plan_store(database)
    plan, events = plan_for("ep-1")
    cloud_events = [new_event(event, source="/test") for event in events]
    due_at = utc_now() - timedelta(minutes=1)
    assert await store.create(plan, cloud_events, "/intake#a-1", due_at)
    assert not await store.create(plan, cloud_events, "/intake#a-1", due_at)
    stored = await store.get("ep-1")
    assert stored is not None
    assert (stored.plan, stored.version, stored.applied_events, stored.next_check_at) == (
        plan, 1, frozenset({"/intake#a-1"}), due_at)  # fmt: skip
    assert await store.due(utc_now()) == ["ep-1"]
    assert await store.save(stored, plan, [], "/intake#a-2", None)
    assert not await store.save(stored, plan, [], "/intake#a-3", None)  # a second writer from the same version
    saved = await store.get("ep-1")
    assert saved is not None
    assert (saved.version, saved.applied_events, saved.next_check_at) == (
        2,
        frozenset({"/intake#a-1", "/intake#a-2"}),
        None,
    )
    assert await store.due(utc_now()) == []


async def test_a_roster_finds_every_plan_with_the_session_and_the_waitlist_its_plans(
    database: AsyncDatabase[Document],
) -> None:
    store = await care_plan_store(database)
    for episode_id, group in (("ep-1", IOP_AM), ("ep-2", IOP_AM), ("ep-3", None)):
        plan, _ = plan_for(episode_id, group)
        assert await store.create(plan, [], f"/intake#{episode_id}", None)
    joined, _ = plan_for("ep-1")
    assert joined.schedule is not None
    first_session = joined.schedule.sessions[0].session_id
    assert sorted(plan.episode_id for plan in await store.roster(first_session)) == ["ep-1", "ep-2"]
    assert await store.roster("no-such-session") == []
    assert await store.member_ids("iop-am") == {"ep-1", "ep-2"}
    assert [waiting.episode_id for waiting in await store.waitlisted()] == ["ep-3"]


async def test_a_group_has_as_many_seats_as_its_capacity_and_an_episode_one(database: AsyncDatabase[Document]) -> None:
    store = await care_plan_store(database)
    now = utc_now()
    assert await store.claim_seat(SMALL, "ep-1", now)
    assert await store.claim_seat(SMALL, "ep-1", now)  # kept
    assert await store.claim_seat(SMALL, "ep-2", now)
    assert not await store.claim_seat(SMALL, "ep-3", now)
    with pytest.raises(DuplicateKeyError):  # the unique index: one seat per episode and group
        await database[SEATS].insert_one({"_id": "iop-small#9", "group_id": "iop-small", "episode_id": "ep-1"})
    await store.release_seat("iop-small", "ep-1")
    assert not await store.holds_seat("iop-small", "ep-1")
    assert await store.claim_seat(SMALL, "ep-3", now)
    # Neither ep-2 nor ep-3 has a plan in the group: once stale, their seats are freed for a claim.
    assert await store.claim_seat(SMALL, "ep-4", now + STALE_SEAT)
    assert await store.holds_seat("iop-small", "ep-4")


async def test_what_came_before_the_plan_is_kept_once_until_dropped(database: AsyncDatabase[Document]) -> None:
    store = await care_plan_store(database)
    now = utc_now()
    for number in (2, 1):
        learned = CareInput(kind="safety_alert", at=now + timedelta(seconds=number), source_id=f"alert-{number}")
        await store.keep_pending("ep-1", learned, f"/intake#{number}")
        await store.keep_pending("ep-1", learned, f"/intake#{number}")  # redelivered
    assert sorted(pending.applied for pending in await store.pending("ep-1")) == ["/intake#1", "/intake#2"]
    await store.drop_pending("/intake#2")
    assert [pending.input.source_id for pending in await store.pending("ep-1")] == ["alert-1"]


async def test_the_services_of_some_days_are_found_by_episode_page_by_page(database: AsyncDatabase[Document]) -> None:
    store = await care_plan_store(database)
    day = utc_now().date()

    def line(session_id: str, on: date, revision: int = 1) -> DeliveredService:
        return DeliveredService(revision=revision, status="delivered", session_id=session_id, kind="group",
                                group_id="iop-am", service_date=on, minutes=180, code="90853", units=1,
                                level=CareLevel.IOP, attendance="attended")  # fmt: skip

    served = {"e1": [line("a", day)], "e2": [line("b", day + timedelta(days=3))], "e3": [line("c", day, 0)],
              "e4": [line("d", day), line("e", day + timedelta(days=40))]}  # fmt: skip
    for episode_id, lines in served.items():
        plan, events = plan_for(episode_id)
        with_services = plan.model_copy(update={"services": {one.session_id: one for one in lines}})
        assert await store.create(with_services, [new_event(event, source="/t") for event in events], "a", None)
    # A plan saved before the days of its services were kept is given them at the next start.
    await database["care_plans"].update_one({"_id": "e4"}, {"$unset": {"service_dates": ""}})
    await store.create_indexes()

    first = await store.services_on([day, day + timedelta(days=1)], None, 1)
    assert [(found.episode_id, [one.session_id for one in found.services]) for found in first] == [("e1", ["a"])]
    rest = await store.services_on([day, day + timedelta(days=1)], "e1", 10)
    assert [found.episode_id for found in rest] == ["e4"]  # e3's service was never published (revision 0)
    assert {one.session_id for one in rest[0].services} == {"d", "e"}  # every service: the caller keeps the days
