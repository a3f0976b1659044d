"""intake's store on a real server: patients with the PII audit log, episodes as aggregates."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.common.auth import Principal, Role
from services.common.idempotency import IdempotencyKeys, KeyReused, RequestKey, request_fields
from services.common.outbox import no_relay
from services.common.utc import utc_now
from services.intake import changes
from services.intake.domain.episode import AssessmentRequest, open_episode
from services.intake.domain.measures import load_measures_policy
from services.intake.domain.placement import load_placement_policy
from services.intake.store import IntakeStore
from stepwise_contract import AlumniLeft, DimensionRatings, new_event
from tests.store.conftest import Document, noted_client
from tools.dev.devstack import Backends

pytestmark = pytest.mark.second_server

STAFF = Principal(Role.INTAKE_STAFF, "tok-1", subject="sub-1", username="casey")
SERVICE = Principal(Role.NOTIFICATIONS, "tok-2")
RATINGS = DimensionRatings(withdrawal=1, biomedical=0, emotional=2, readiness=2, relapse=2, environment=1)


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
    registered = {**patient, **request_fields(None, "pt-1", began)}
    assert await store.register(registered, STAFF, unless_matched=False)
    assert not await store.register(registered, STAFF, unless_matched=False)  # the same request retried: no second
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


async def noted_store(client: AsyncMongoClient[Document], name: str) -> tuple[IntakeStore, IdempotencyKeys]:
    """intake's store and keys over ``client`` (whose commands a test counts), as its start-up makes them."""
    database = client[name]
    store = await intake_store(database)
    keys = IdempotencyKeys(database)
    await keys.note_keys_kept_in_records(store.patients, store.episodes)
    return store, keys


async def test_an_intake_costs_two_audit_entries_and_a_round_trip_or_two_per_step(
    running_backends: Backends, database: AsyncDatabase[Document]
) -> None:
    """Register (its key kept in the patient: the match is the insert's condition), open (counted in the patient,
    which is also the look for it; the key kept in the episode), assess (the episode as this instance wrote it: a
    hint, the write version-checked), the welcome's audience (the episode, the contact read audited): then each
    retried."""
    async with noted_client(running_backends.mongodb_url) as (client, log):
        store, keys = await noted_store(client, database.name)
        details = {"name": "Alex Example", "date_of_birth": "1990-04-01", "email": "a@example.org"}
        registering, opening = RequestKey("k-register", "body-1"), RequestKey("k-open", "body-2")
        request = AssessmentRequest(dimensions=RATINGS, results=[])
        placement, measures = load_placement_policy(), load_measures_policy()
        log.seen.clear()
        patient_id = await changes.register_patient(store, STAFF, details, "pt-1", key=registering)
        await changes.open_episode(store, patient_id, "adult", "ep-1", key=opening)
        await changes.record_assessment(store, placement, measures, "ep-1", request, changes.Keyed(opening, keys))
        stored = await store.get("ep-1")  # the audience's read, for the consents
        assert stored is not None
        contact = {"email": "a@example.org", "phone": None, "timezone": None}
        assert await store.contact_of(stored.episode.patient_id, "ep-1", SERVICE) == contact
        assert await store.contact_for_episode("ep-1", SERVICE) == contact  # its patient known: no episode read
        assert [(name, collection) for name, collection, _ in log.seen] == [
            ("insert", "audit_log"), ("update", "patients"), ("update", "patients"), ("insert", "episodes"),
            ("update", "episodes"), ("find", "episodes"), ("insert", "audit_log"), ("find", "patients"),
            ("insert", "audit_log"), ("find", "patients"),
        ]  # fmt: skip
        assert await changes.register_patient(store, STAFF, details, "pt-2", key=registering) == patient_id
        assert (await changes.open_episode(store, patient_id, "adult", "ep-2", key=opening)).episode_id == "ep-1"
        with pytest.raises(KeyReused):
            await changes.open_episode(store, patient_id, "adult", "ep-3", key=RequestKey("k-open", "body-3"))
        with pytest.raises(KeyReused):
            await changes.register_patient(store, STAFF, details, "pt-3", key=RequestKey("k-register", "body-3"))
        assert "idempotency_keys" not in {collection for _, collection, _ in log.seen}
    assert await database["patients"].count_documents({}) == 1
    assert await database["episodes"].count_documents({}) == 1


async def test_keys_kept_apart_by_the_version_before_answer_a_retry_while_it_may_come(
    running_backends: Backends, database: AsyncDatabase[Document]
) -> None:
    """A registration and an opening made by the version before (their keys in ``idempotency_keys``), retried: the
    same patient and episode, while requests of then may be retried; on a database empty at the first start of
    this version, no read of ``idempotency_keys`` at all."""
    async with noted_client(running_backends.mongodb_url) as (client, log):
        _, fresh_keys = await noted_store(client, database.name)
        log.seen.clear()
        assert await fresh_keys.kept_apart(RequestKey("k-any", "body"), utc_now()) is None
        assert log.seen == []
    await database.drop_collection("meta")
    fresh = await intake_store(database)
    now = utc_now()
    await database["idempotency_keys"].insert_many([
        {"_id": "k-register", "fingerprint": "body-1", "record_id": "pt-old", "at": now},
        {"_id": "k-open", "fingerprint": "body-2", "record_id": "ep-old", "at": now},
    ])  # fmt: skip
    details = {"name": "Alex Example", "date_of_birth": "1990-04-01"}
    await changes.register_patient(fresh, STAFF, details, "pt-old")  # as the version before stored them
    await fresh.open_episode(open_episode("pt-old", "adult", now, "ep-old"))
    store, keys = await noted_store(database.client, database.name)  # the first start of this version
    registering, opening = RequestKey("k-register", "body-1"), RequestKey("k-open", "body-2")
    patient_id = await keys.kept_apart(registering, utc_now()) or "pt-new"
    assert await changes.register_patient(store, STAFF, details, patient_id, key=registering) == "pt-old"
    episode_id = await keys.kept_apart(opening, utc_now()) or "ep-new"
    assert (await changes.open_episode(store, "pt-old", "adult", episode_id, key=opening)).episode_id == "ep-old"
    with pytest.raises(KeyReused):
        await keys.kept_apart(RequestKey("k-open", "body-3"), utc_now())
    assert await keys.kept_apart(opening, utc_now() + timedelta(hours=49)) is None  # the window closed
    assert await database["patients"].count_documents({}) == 1
    assert await database["episodes"].count_documents({}) == 1
