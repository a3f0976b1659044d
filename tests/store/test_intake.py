"""intake's store on a real server: patients with the PII audit log, episodes as aggregates."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.common.auth import Principal, Role
from services.common.idempotency import IdempotencyKeys, KeyReused, RequestKey
from services.common.outbox import no_relay
from services.common.utc import utc_now
from services.intake import changes
from services.intake.domain.episode import AssessmentRequest, open_episode
from services.intake.domain.measures import load_measures_policy
from services.intake.domain.placement import load_placement_policy
from services.intake.store import IntakeStore
from stepwise_contract import AlumniLeft, DimensionRatings, new_event
from tests.store.conftest import Document

pytestmark = pytest.mark.second_server

STAFF = Principal(Role.INTAKE_STAFF, "tok-1", subject="sub-1", username="casey")
SERVICE = Principal(Role.NOTIFICATIONS, "tok-2")


async def intake_store(database: AsyncDatabase[Document]) -> IntakeStore:
    """The store as intake's start-up makes it, with the idempotency keys' index."""
    store = IntakeStore(database, no_relay)
    await store.create_indexes()
    await IdempotencyKeys(database).create_indexes()
    return store


async def test_every_read_and_write_of_pii_is_audited_and_listed_newest_first(
    database: AsyncDatabase[Document],
) -> None:
    store = await intake_store(database)
    began = utc_now()
    patient = {"_id": "pt-1", "name": "Testpatient", "email": "p@example.org", "phone": "+15550000001"}
    await store.add_patient(patient, STAFF)
    await store.add_patient(patient, STAFF)  # the same request retried: no second patient
    assert await store.read_patient("pt-1", STAFF) == patient
    assert await store.update_patient("pt-1", {"phone": "+15550000002"}, STAFF) == patient | {"phone": "+15550000002"}
    assert await store.read_patient("pt-unknown", STAFF) is None
    episode = await store.open_episode(open_episode("pt-1", "adult", utc_now(), "ep-1"))
    contact = await store.contact_for_episode(episode.episode_id, SERVICE)
    assert contact == {"email": "p@example.org", "phone": "+15550000002", "timezone": None}

    entries = await store.audit_entries(patient_id="pt-1", action=None, since=began, until=None, limit=10)
    assert [entry["action"] for entry in entries] == ["read_contact", "update_patient", "read_patient",
                                                       "create_patient", "create_patient"]  # fmt: skip
    assert entries[1]["fields"] == ["phone"]
    assert all("_id" not in entry for entry in entries)
    by_casey = await store.audit_entries(patient_id=None, action="read_patient", since=None, until=None, limit=10,
                                         person="casey")  # fmt: skip
    assert [(entry["action"], entry["username"]) for entry in by_casey] == [("read_patient", "casey")]
    later = await store.audit_entries(patient_id=None, action=None, since=utc_now() + timedelta(seconds=1),
                                      until=None, limit=10)  # fmt: skip
    assert later == []


async def test_an_episode_is_opened_once_and_saved_from_its_version_only(database: AsyncDatabase[Document]) -> None:
    store = await intake_store(database)
    episode = open_episode("pt-1", "adult", utc_now(), "ep-1")
    assert await store.open_episode(episode) == episode
    assert await store.open_episode(open_episode("pt-1", "adolescent", utc_now(), "ep-1")) == episode
    stored = await store.get("ep-1")
    assert stored is not None and (stored.episode, stored.version) == (episode, 1)
    closed = episode.model_copy(update={"status": "closed"})
    event = new_event(AlumniLeft(episode_id="ep-1", left_at=utc_now(), reason_code="new_episode"), source="/test")
    assert await store.save(stored, closed, [event])
    assert not await store.save(stored, episode)  # a second writer from the same version
    again = await store.get("ep-1")
    assert again is not None and (again.episode.status, again.version) == ("closed", 2)
    document = await store.episodes.find_one({"_id": "ep-1"})
    assert document is not None and document["outbox_pending"] == 1


async def test_an_assessments_key_kept_in_its_episode_finds_the_first_assessment(
    database: AsyncDatabase[Document],
) -> None:
    store = await intake_store(database)
    keys = IdempotencyKeys(database)
    await store.open_episode(open_episode("pt-1", "adult", utc_now(), "ep-1"))
    ratings = DimensionRatings(withdrawal=1, biomedical=0, emotional=2, readiness=2, relapse=2, environment=1)
    key = changes.Keyed(RequestKey("key-1", "body-1"), keys)
    placement, measures = load_placement_policy(), load_measures_policy()

    async def record(key: changes.Keyed) -> str:
        request = AssessmentRequest(dimensions=ratings, results=[])
        return (await changes.record_assessment(store, placement, measures, "ep-1", request, key)).assessment_id

    first = await record(key)
    assert await record(key) == first  # the retry: the key read back from the store with the episode
    with pytest.raises(KeyReused):
        await record(changes.Keyed(RequestKey("key-1", "body-2"), keys))
    stored = await store.get("ep-1")
    assert stored is not None and [a.assessment_id for a in stored.episode.assessments] == [first]
    assert await database["idempotency_keys"].count_documents({}) == 0
