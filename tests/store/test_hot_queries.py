"""The reads made on every event and every timer pass, as the stand-in the benchmark measures serves them: from an
index, never a read of the whole collection (which grows with the clinic: every plan, message and alert ever kept).

Each store method runs on a client that notes the commands it sends; each command is then asked of the server
again as ``explain`` (an update's or a delete's filter as a find). nx-27017 answers with SQLite's plan, where a read
of the whole collection is ``SCAN <collection>``. It explains no update or delete, whose filters it reads apart from
its find: each is also checked as that path reads it (``_equality_it_can_look_up``). An ``aggregate`` (what
``count_documents`` sends) it runs in Python over every document of the collection, so it counts as such a read here
(``mongo.count`` sends ``count``). (MongoDB's planner follows the indexes' prefixes, which the index test checks from
the query shapes; the stand-in uses an index only where the filter's leading equality is written ``{"$eq": …}``:
``mongo.equals``.)
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.care_plan.domain.policy import load_policy
from services.care_plan.store import CarePlanStore, WaitlistKey
from services.common.auth import Principal, Role
from services.common.indexes import create_indexes
from services.common.outbox import OutboxRelay, ensure_outbox_index, no_relay
from services.common.utc import utc_now
from services.intake import changes as intake_changes
from services.intake import queries as intake_queries
from services.intake.schemas import AudienceIn
from services.intake.store import IntakeStore
from services.notifications.store import INDEXES, AlumniEnrolments, NotificationStore, SafetyAlerts
from stepwise_contract import CareLevel
from tests.store.conftest import CommandLog, Document, noted_client
from tools.dev.devstack import Backends

EXPLAINED = ("find", "findAndModify", "count", "update", "delete", "aggregate")


@pytest.fixture
async def noted(running_backends: Backends) -> AsyncIterator[tuple[AsyncDatabase[Document], CommandLog]]:
    async with noted_client(running_backends.mongodb_url) as (client, commands):
        if not await _is_stand_in(client):
            pytest.skip("asked of the stand-in only: MongoDB's plans follow the index prefixes the index test checks")
        name = f"stepwise_hot_{uuid.uuid4().hex[:12]}"
        yield client[name], commands
        await client.drop_database(name)


async def _is_stand_in(client: AsyncMongoClient[Document]) -> bool:
    """nx-27017 answers ``explain`` with SQLite's plan (``detail`` lines)."""
    plan = await client["probe"].command("explain", {"find": "probe", "filter": {}})
    return any("detail" in step for step in plan.get("queryPlanner", {}).get("winningPlan", []) or [])


async def scans(noted: tuple[AsyncDatabase[Document], CommandLog], run: Callable[[], Awaitable[Any]]) -> list[str]:
    """The commands ``run`` sent that the server answers by reading a whole collection."""
    database, commands = noted
    commands.seen.clear()
    await run()
    found = []
    for _, _, sent in [seen for seen in commands.seen if seen[0] in EXPLAINED]:
        if "aggregate" in sent:
            found.append(f"aggregate {sent['aggregate']} {sent['pipeline']}")
        writes: list[Document] = sent.get("updates") or sent.get("deletes") or []
        for statement in writes:
            if not _equality_it_can_look_up(statement.get("q", {})):
                found.append(f"{next(iter(sent))} {sent[next(iter(sent))]} {statement.get('q')}")
        for command in _as_finds(sent):
            name = next(iter(command))
            plan = await database.command("explain", command)
            details = [step.get("detail", "") for step in plan["queryPlanner"]["winningPlan"]]
            if any(detail == f"SCAN {command[name]}" for detail in details):
                found.append(f"{next(iter(sent))} {command[name]} {command['filter']}")
    return found


def _equality_it_can_look_up(filter: Document) -> bool:
    """Whether the stand-in's update and delete (which it does not explain, and which read their filter apart from its
    find) can look the filter up: by ``_id``, or by a field's equality written ``{"$eq": …}`` or ``$in``; a filter of
    bare values only it matches against every document (a ``mongo.equals`` filter: one index read)."""
    return any(
        name == "_id" or (isinstance(value, dict) and ("$eq" in value or "$in" in value))
        for name, value in filter.items()
    )


def _as_finds(command: Document) -> list[Document]:
    """What the stand-in explains: a find as sent; a findAndModify as the find of its filter and sort, a count as the
    find of its query, an update or a delete as the find of each statement's filter (it explains none of those)."""
    name = next(iter(command))
    collection = command[name]
    if name == "find":
        return [command]
    if name == "findAndModify":
        return [{"find": collection, "filter": command.get("query", {}), "sort": command.get("sort", {}), "limit": 1}]
    if name == "count":
        return [{"find": collection, "filter": command.get("query", {})}]
    statements: list[Document] = command.get("updates") or command.get("deletes") or []
    return [{"find": collection, "filter": statement.get("q", {})} for statement in statements]


async def test_a_care_plan_timer_pass_and_a_placement_read_from_indexes(
    noted: tuple[AsyncDatabase[Document], CommandLog],
) -> None:
    store = CarePlanStore(noted[0], no_relay)
    await store.create_indexes()
    place: WaitlistKey = (CareLevel.IOP, "morning", "adult")
    assert await scans(noted, lambda: store.due(utc_now())) == []
    assert await scans(noted, lambda: store.waiting(place, other_than="e-1")) == []
    assert await scans(noted, lambda: store.waiting_first([place, (CareLevel.PHP, "evening", "adult")], 100)) == []
    assert await scans(noted, store.anyone_waiting) == []
    assert await scans(noted, lambda: store.pending("e-1")) == []


async def test_a_place_in_a_capped_group_is_claimed_and_released_from_indexes(
    noted: tuple[AsyncDatabase[Document], CommandLog],
) -> None:
    store = CarePlanStore(noted[0], no_relay)
    await store.create_indexes()
    group = load_policy().groups[0].model_copy(update={"group_id": "capped", "capacity": 2})
    assert await scans(noted, lambda: store.holds_seat(group.group_id, "e-1")) == []
    assert await scans(noted, lambda: store.claim_seat(group, "e-1", utc_now())) == []
    assert await scans(noted, lambda: store.member_ids(group.group_id)) == []
    assert await scans(noted, lambda: store.release_seat(group.group_id, "e-1")) == []


async def test_the_dispatchers_claims_the_escalation_timer_and_the_alumni_check_read_from_indexes(
    noted: tuple[AsyncDatabase[Document], CommandLog],
) -> None:
    database = noted[0]
    messages, alerts, alumni = NotificationStore(database, no_relay), SafetyAlerts(database, no_relay), \
        AlumniEnrolments(database, no_relay)  # fmt: skip
    await create_indexes(database, INDEXES)
    lease = timedelta(seconds=30)
    assert await scans(noted, lambda: messages.claim_due(lease, channel="email", urgent=True)) == []
    assert await scans(noted, lambda: alerts.claim_due(lease)) == []
    assert await scans(noted, lambda: alumni.enrolled(patient_id="p-1")) == []
    assert await scans(noted, messages.counts) == []
    assert await scans(noted, alerts.open_count) == []


async def test_what_waits_is_cancelled_and_a_channel_back_releases_its_messages_from_indexes(
    noted: tuple[AsyncDatabase[Document], CommandLog],
) -> None:
    """An episode's reminders (a new calendar, an ended episode), its alumni messages, a recipient's and a withdrawn
    consent's messages, and a channel's messages waiting out its failures: each on its own index."""
    messages = NotificationStore(noted[0], no_relay)
    await create_indexes(noted[0], INDEXES)
    assert await scans(noted, lambda: messages.cancel_session_reminders("e-1", "ended", keep_series="s-2")) == []
    assert await scans(noted, lambda: messages.cancel_alumni_messages("e-1", "left")) == []
    assert await scans(noted, lambda: messages.cancel_for_recipient("e-1", "family", "c-1", "opted out")) == []
    assert await scans(noted, lambda: messages.cancel_for_consent("c-1", "revoked")) == []
    assert await scans(noted, lambda: messages.retry_now("email")) == []
    assert await scans(noted, lambda: messages.probe("email")) == []


async def test_a_relay_pass_reads_from_the_outbox_index(noted: tuple[AsyncDatabase[Document], CommandLog]) -> None:
    plans = noted[0]["care_plans"]
    await ensure_outbox_index(plans)

    async def publish(_: Document) -> None:
        """Nothing waits."""

    assert await scans(noted, OutboxRelay([plans], publish).work_once) == []


async def test_registering_and_opening_an_episode_read_from_indexes(
    noted: tuple[AsyncDatabase[Document], CommandLog],
) -> None:
    """Registration's upsert is filtered by the match key (the patients of one name and birth date), the opening's
    count by the patient's id: neither reads every patient."""
    store = IntakeStore(noted[0], no_relay)
    await store.create_indexes()
    staff = Principal(Role.INTAKE_STAFF, "tok-1", subject="sub-1", username="casey")
    details = {"name": "Alex Example", "date_of_birth": "1990-04-01"}
    assert await scans(noted, lambda: intake_changes.register_patient(store, staff, details, "pt-1")) == []
    assert await scans(noted, lambda: intake_changes.open_episode(store, "pt-1", "adult", "ep-1")) == []


async def test_a_batch_of_audience_questions_reads_from_indexes(
    noted: tuple[AsyncDatabase[Document], CommandLog],
) -> None:
    """The questions of a batch of welcomes (``POST /v1/audiences``): the episodes asked, their patients' contact
    points and their patients' other episodes, each collection looked up by id or by patient, never read whole."""
    store = IntakeStore(noted[0], no_relay)
    await store.create_indexes()
    staff = Principal(Role.INTAKE_STAFF, "tok-1", subject="sub-1", username="casey")
    service = Principal(Role.NOTIFICATIONS, "tok-2")
    for n in range(2):
        await intake_changes.register_patient(store, staff, {"name": f"Alex Example{n}", "date_of_birth": "1990-04-01"},
                                              f"pt-{n}")  # fmt: skip
        await intake_changes.open_episode(store, f"pt-{n}", "adult", f"ep-{n}")
    asked = [AudienceIn(episode_id=f"ep-{n}", patient_channels=True, patient_contact=True) for n in range(2)]
    assert await scans(noted, lambda: intake_queries.audiences(store, service, asked)) == []
