"""Patients in intake in-process: registering, reading and changing them, without email or phone, registered
twice, and their phone numbers in E.164."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from services.common.auth import Principal, Role
from services.common.utc import utc_now
from services.intake import changes, migrations
from services.intake.store import EPISODES, IntakeStore
from tests.service.intake.helpers import (
    ADMIN,
    CLINICIAN,
    FAMILY,
    NOTIFICATIONS,
    PATIENT,
    STAFF,
    grant,
    new_episode,
    register,
)
from tests.service.memory_mongo import MemoryDatabase

# Patients


async def test_register_patient(http: httpx.AsyncClient, database: MemoryDatabase) -> None:
    patient_id = await register(http)
    stored = await database["patients"].find_one({"_id": patient_id})
    assert stored is not None and stored["email"] == "alex@example.org" and stored["date_of_birth"] == "1990-04-01"
    unborn = await http.post("/v1/patients", json=PATIENT | {"date_of_birth": "2999-01-01"}, headers=STAFF)
    assert unborn.status_code == 422 and unborn.json()["detail"][0]["loc"] == ["body", "date_of_birth"]
    no_role = await http.post("/v1/patients", json=PATIENT, headers=NOTIFICATIONS)
    assert no_role.status_code == 403
    assert await database["patients"].count_documents({}) == 1


async def test_a_refused_patient_is_not_echoed(http: httpx.AsyncClient, database: MemoryDatabase) -> None:
    """A 422 names each field at fault and its rule, and never carries what was submitted (PII)."""
    given = {
        "name": "Alexandra Confidential " * 20,
        "date_of_birth": "1990-04-01",
        "email": "alexandra@private_domain.org",
        "phone": "+15550100",
        "emergency_contact": {"name": "Samantha Private", "relationship": "aunt"},
        "timezone": "America/Chicgo",
    }
    refused = await http.post("/v1/patients", json=given, headers=STAFF)
    assert refused.status_code == 422
    assert sorted(tuple(entry["loc"]) for entry in refused.json()["detail"]) == [
        ("body", "email"), ("body", "emergency_contact", "phone"), ("body", "name"), ("body", "phone"),
        ("body", "timezone"),
    ]  # fmt: skip
    assert all(set(entry) == {"loc", "msg", "type"} for entry in refused.json()["detail"])
    for value in ("Alexandra", "private_domain", "Samantha", "aunt", "Chicgo", "5550100"):
        assert value not in refused.text, value
    assert await database["patients"].count_documents({}) == 0


async def test_read_patient(http: httpx.AsyncClient) -> None:
    patient_id = await register(http, timezone="America/Chicago")
    found = await http.get(f"/v1/patients/{patient_id}", headers=CLINICIAN)
    assert found.status_code == 200
    expected = PATIENT | {"patient_id": patient_id, "emergency_contact": None, "timezone": "America/Chicago"}
    assert {key: value for key, value in found.json().items() if key != "registered_at"} == expected
    missing = await http.get("/v1/patients/nobody", headers=CLINICIAN)
    assert missing.status_code == 404


async def test_update_patient(http: httpx.AsyncClient) -> None:
    patient_id = await register(http)
    path = f"/v1/patients/{patient_id}"
    updated = await http.patch(path, json={"phone": "+12025550199"}, headers=STAFF)
    assert updated.status_code == 200 and updated.json()["phone"] == "+12025550199"
    assert updated.json()["email"] == PATIENT["email"]  # fields left out stay as they are
    assert (await http.get(path, headers=STAFF)).json()["phone"] == "+12025550199"
    empty = await http.patch(path, json={}, headers=STAFF)
    assert empty.status_code == 422
    bad_zone = await http.patch(path, json={"timezone": "Mars/Olympus"}, headers=STAFF)
    assert bad_zone.status_code == 422 and bad_zone.json()["detail"][0]["loc"] == ["body", "timezone"]
    missing = await http.patch("/v1/patients/nobody", json={"phone": "+12025550199"}, headers=STAFF)
    assert missing.status_code == 404


async def test_open_episode(http: httpx.AsyncClient, store: IntakeStore) -> None:
    patient_id, episode_id = await new_episode(http)
    stored = await store.get(episode_id)
    assert stored is not None
    assert (stored.episode.patient_id, stored.episode.program, stored.episode.status) == (patient_id, "adult", "open")
    unknown = await http.post("/v1/patients/nobody/episodes", json={"program": "adult"}, headers=STAFF)
    assert unknown.status_code == 404
    bad_program = await http.post(f"/v1/patients/{patient_id}/episodes", json={"program": "kids"}, headers=STAFF)
    assert bad_program.status_code == 422


# Patients without email or phone, and patients registered twice


async def test_a_patient_without_email_or_phone_is_registered_and_says_so(http: httpx.AsyncClient) -> None:
    phone_only = await register(http, name="Pat Phoneonly", email=None)
    nothing = {"name": "Robin Unreachable", "date_of_birth": "1985-09-12"}
    created = await http.post("/v1/patients", json=nothing, headers=STAFF)
    assert created.status_code == 201, created.text
    unreachable = created.json()["patient_id"]
    read = await http.get(f"/v1/patients/{unreachable}", headers=CLINICIAN)
    assert (read.status_code, read.json()["email"], read.json()["phone"]) == (200, None, None)
    episodes = {}
    for patient_id in (phone_only, unreachable):
        opened = await http.post(f"/v1/patients/{patient_id}/episodes", json={"program": "adult"}, headers=STAFF)
        episodes[patient_id] = opened.json()["episode_id"]
    contact = await http.get(f"/v1/episodes/{episodes[unreachable]}/contact", headers=NOTIFICATIONS)
    assert contact.json() == {"email": None, "phone": None, "timezone": None}
    # What notifications asks at the welcome: which channels, never the addresses.
    asked = {"patient_channels": "true"}
    channels = {patient_id: await http.get(f"/v1/episodes/{episode_id}/audience", params=asked, headers=NOTIFICATIONS)
                for patient_id, episode_id in episodes.items()}  # fmt: skip
    assert channels[phone_only].json()["patient_channels"] == ["sms"]
    assert channels[unreachable].json()["patient_channels"] == []
    assert PATIENT["phone"] not in channels[phone_only].text


async def test_the_same_person_registered_twice_is_answered_with_their_patient_id(
    http: httpx.AsyncClient, database: MemoryDatabase
) -> None:
    first = await register(http)
    again = {**PATIENT, "name": "  alex   EXAMPLE ", "email": None}  # case and spaces aside: the same person
    duplicate = await http.post("/v1/patients", json=again, headers=STAFF)
    assert duplicate.status_code == 409, duplicate.text
    assert duplicate.json() == {"detail": "a patient with this name and date of birth is registered already",
                                "patient_id": first}  # fmt: skip
    other_day = await http.post("/v1/patients", json=again | {"date_of_birth": "1990-04-02"}, headers=STAFF)
    assert other_day.status_code == 201
    confirmed = await http.post("/v1/patients", json=again | {"confirm_new": True}, headers=STAFF)
    assert confirmed.status_code == 201 and confirmed.json()["patient_id"] != first
    stored = await database["patients"].find_one({"_id": confirmed.json()["patient_id"]})
    assert stored is not None and "confirm_new" not in stored
    key = {"Idempotency-Key": "registering-alex-again"}
    retried = [await http.post("/v1/patients", json=again | {"confirm_new": True}, headers=STAFF | key) for _ in "ab"]
    assert [r.status_code for r in retried] == [201, 201] and retried[0].json() == retried[1].json()
    assert await database["patients"].count_documents({}) == 4
    # A new name is found under it.
    renamed = await register(http, name="Sam Before")
    await http.patch(f"/v1/patients/{renamed}", json={"name": "Sam After"}, headers=STAFF)
    found = await http.post("/v1/patients", json=PATIENT | {"name": "SAM AFTER"}, headers=STAFF)
    assert (found.status_code, found.json()["patient_id"]) == (409, renamed)
    audit = await http.get("/v1/audit", params={"patient_id": first, "action": "match_patient"}, headers=ADMIN)
    assert [e["role"] for e in audit.json()] == ["intake_staff"]  # answering with the id told who is a patient here


async def test_registering_looks_the_person_up_by_an_index_not_a_scan(
    store: IntakeStore, database: MemoryDatabase
) -> None:
    await store.create_indexes()
    indexes = database["patients"].sync.index_information()
    assert any(index["key"] == [("match_key", 1)] for index in indexes.values())


# Phone numbers: stored in E.164, national numbers read in the clinic's region


async def test_phone_numbers_are_stored_in_e164_however_they_were_typed(
    http: httpx.AsyncClient, database: MemoryDatabase
) -> None:
    brother = {"name": "Lee", "phone": "202.555.0101", "relationship": "brother"}
    typed = PATIENT | {"phone": "(202) 555-0123", "emergency_contact": brother}
    patient_id = await register(http, **typed)
    stored = await database["patients"].find_one({"_id": patient_id})
    assert stored is not None and (stored["phone"], stored["emergency_contact"]["phone"]) == (
        "+12025550123",
        "+12025550101",
    )
    updated = await http.patch(f"/v1/patients/{patient_id}", json={"phone": "+44 20 7946 0958"}, headers=STAFF)
    assert updated.json()["phone"] == "+442079460958"
    opened = await http.post(f"/v1/patients/{patient_id}/episodes", json={"program": "adult"}, headers=STAFF)
    episode_id = opened.json()["episode_id"]
    family = FAMILY | {"recipient": {"name": "Sam Example", "phone": "1 202 555 0188"}}
    consent = await grant(http, episode_id, family)
    assert consent["recipient"]["phone"] == "+12025550188"
    contact = await http.get(f"/v1/episodes/{episode_id}/consents/{consent['consent_id']}/contact",
                             headers=NOTIFICATIONS)  # fmt: skip
    assert contact.json()["phone"] == "+12025550188"


@pytest.mark.parametrize(
    ("path", "body", "location"),
    [
        ("/v1/patients", PATIENT | {"phone": "555-0100"}, ["body", "phone"]),  # local: no area code
        ("/v1/patients", PATIENT | {"phone": "+15550100"}, ["body", "phone"]),
        ("/v1/patients", PATIENT | {"emergency_contact": {"name": "Lee", "phone": "0100", "relationship": "x"}},
         ["body", "emergency_contact", "phone"]),
    ],
)  # fmt: skip
async def test_a_number_that_is_not_a_full_number_is_refused_naming_the_field(
    http: httpx.AsyncClient, database: MemoryDatabase, path: str, body: dict[str, Any], location: list[str]
) -> None:
    refused = await http.post(path, json=body, headers=STAFF)
    assert refused.status_code == 422
    [error] = [error for error in refused.json()["detail"] if error["loc"] == location]
    assert "0100" not in error["msg"] and "full phone number" in error["msg"]
    assert await database["patients"].count_documents({}) == 0
    _, episode_id = await new_episode(http)
    local = FAMILY | {"recipient": {"name": "Sam", "phone": "555-0188"}}
    consent = await http.post(f"/v1/episodes/{episode_id}/consents", json=local, headers=STAFF)
    assert consent.status_code == 422 and consent.json()["detail"][0]["loc"] == ["body", "recipient", "phone"]


async def test_stored_numbers_are_normalised_once_by_the_migration(
    database: MemoryDatabase, store: IntakeStore, http: httpx.AsyncClient
) -> None:
    _, episode_id = await new_episode(http)
    consent = await grant(http, episode_id, FAMILY | {"recipient": {"name": "Sam", "phone": "+12025550188"}})
    await database["patients"].insert_many([
        {"_id": "typed", "name": "Typed Number", "phone": "555-773-2000",
         "emergency_contact": {"name": "Lee", "phone": "(202) 555-0101", "relationship": "brother"}},
        {"_id": "local", "name": "Local Number", "phone": "555-0100"},
        {"_id": "none", "name": "No Number", "phone": None},
    ])  # fmt: skip
    stored = await database[EPISODES].find_one({"_id": episode_id})
    assert stored is not None
    typed = [{**stored["consents"][0], "recipient": {**stored["consents"][0]["recipient"], "phone": "202 555 0188"}}]
    await database[EPISODES].update_one({"_id": episode_id}, {"$set": {"consents": typed}})

    outcome = await migrations.normalise_phones(database, "US")  # type: ignore[arg-type]
    assert outcome.changed == {"patients": 1, "episodes": 1}
    assert outcome.left == ["patient local: phone is not a full phone number"]  # kept, for staff to correct
    typed_patient = await database["patients"].find_one({"_id": "typed"})
    assert typed_patient is not None
    assert (typed_patient["phone"], typed_patient["emergency_contact"]["phone"]) == ("+15557732000", "+12025550101")
    assert (await database["patients"].find_one({"_id": "local"}) or {})["phone"] == "555-0100"
    migrated = await store.get(episode_id)
    assert migrated is not None and migrated.episode.consents[0].recipient is not None
    assert migrated.episode.consents[0].recipient.phone == "+12025550188" and migrated.version == stored["version"] + 1
    again = await migrations.normalise_phones(database, "US")  # type: ignore[arg-type]
    assert again.changed == {}  # idempotent
    entries = await http.get("/v1/audit", params={"patient_id": "typed"}, headers=ADMIN)
    assert [(e["action"], e["role"]) for e in entries.json()] == [("normalise_phones", "migration")]
    assert consent["consent_id"] == migrated.episode.consents[0].consent_id


async def test_patients_registered_before_get_their_match_key_from_the_migration(
    database: MemoryDatabase, http: httpx.AsyncClient
) -> None:
    await database["patients"].insert_one({"_id": "earlier", **PATIENT, "registered_at": utc_now()})
    outcome = await migrations.match_keys(database, "US")  # type: ignore[arg-type]
    assert outcome.changed == {"patients": 1}
    assert (await migrations.match_keys(database, "US")).changed == {}  # type: ignore[arg-type]
    duplicate = await http.post("/v1/patients", json=PATIENT, headers=STAFF)
    assert (duplicate.status_code, duplicate.json()["patient_id"]) == (409, "earlier")


async def test_registering_a_patient_costs_the_match_its_audit_entry_and_the_insert(
    store: IntakeStore, database: MemoryDatabase
) -> None:
    """No look-up first: the match is the insert's condition (an upsert on the match key), and a retried request
    finds its own patient once the insert found one."""
    by = Principal(Role.INTAKE_STAFF, "staff-token-id")
    details = {"name": "Alex Example", "date_of_birth": "1990-04-01"}
    database.calls.clear()
    assert await changes.register_patient(store, by, details, "p-1") == "p-1"
    assert database.calls == [("insert", "audit_log"), ("update", "patients")]
    database.calls.clear()
    assert await changes.register_patient(store, by, details, "p-1") == "p-1"  # the same request retried
    assert database.calls == [("insert", "audit_log"), ("update", "patients"), ("find", "patients")]
    with pytest.raises(changes.PatientExists):  # another request for the same person
        await changes.register_patient(store, by, details, "p-2")
