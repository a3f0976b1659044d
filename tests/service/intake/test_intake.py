"""intake in-process: each endpoint's success and main error, the events each change queues in its outbox, and
the events it consumes (an episode's end)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pymongo.errors import DocumentTooLarge, WriteError

from services.common.auth import Role
from services.common.consumer import HANDLER_CONTEXT
from services.common.idempotency import IdempotencyKeys
from services.common.kafka import ServiceBroker
from services.common.outbox import no_relay
from services.common.utc import utc_now
from services.intake import api, migrations
from services.intake.app import create_broker
from services.intake.domain.model import MOST_ASSESSMENTS
from services.intake.domain.placement import load_placement_policy
from services.intake.settings import IntakeSettings
from services.intake.store import EPISODES, IntakeStore
from stepwise_contract import CareLevel, EpisodeDischarged, EpisodeGraduated, new_event
from tests.service.conftest import Events, as_role, queued, running, service_app, set_aside
from tests.service.conftest import api as client_of
from tests.service.memory_mongo import MemoryDatabase

SETTINGS = IntakeSettings(_env_file=None)
POLICY = load_placement_policy(SETTINGS.intake_placement_policy_file)
STAFF = as_role(Role.INTAKE_STAFF)
CLINICIAN = as_role(Role.CLINICIAN)
NOTIFICATIONS = as_role(Role.NOTIFICATIONS)
ADMIN = as_role(Role.ADMIN)

PATIENT = {"name": "Alex Example", "date_of_birth": "1990-04-01", "email": "alex@example.org", "phone": "+12025550100"}
IOP_DIMENSIONS = {"withdrawal": 1, "biomedical": 0, "emotional": 2, "readiness": 2, "relapse": 2, "environment": 1}
PHQ9_MODERATE = [1, 2, 1, 2, 1, 1, 2, 1, 0]  # total 11, item 9 = 0: no alert
CSSRS_HIGH = {"q1": True, "q2": True, "q3": True, "q4": True, "q5": False, "q6": False}
FAMILY_EMAIL = "sam@example.org"
FAMILY = {
    "recipient_kind": "family",
    "recipient": {"name": "Sam Example", "email": FAMILY_EMAIL, "relationship": "sister"},
    "scopes": ["appointments", "attendance"],
}
ALUMNI = {"recipient_kind": "alumni_group", "scopes": ["alumni_program"]}
APP = service_app("intake", [api.router], consumes=True)
"""One app for the module (each test sets its state): recording an answer reads the app's OpenAPI document,
which FastAPI builds once per app."""


@pytest.fixture
async def store(database: MemoryDatabase) -> IntakeStore:
    store = IntakeStore(database, wake_relay=no_relay)  # type: ignore[arg-type]
    await store.create_indexes()  # as the service's start-up does
    return store


@pytest.fixture
async def keys(database: MemoryDatabase) -> IdempotencyKeys:
    keys = IdempotencyKeys(database)  # type: ignore[arg-type]
    await keys.create_indexes()  # the TTL index too: the in-memory store expires keys by the tier's clock
    return keys


@pytest.fixture
def kafka() -> ServiceBroker:
    return create_broker(SETTINGS)


@pytest.fixture
async def http(
    database: MemoryDatabase, store: IntakeStore, keys: IdempotencyKeys, kafka: ServiceBroker
) -> AsyncIterator[httpx.AsyncClient]:
    state = {"store": store, "placement_policy": POLICY, "idempotency_keys": keys, "kafka": kafka}
    async with await client_of("intake", APP, database, state) as client:
        yield client


@pytest.fixture
async def events(store: IntakeStore, shelf: Any, kafka: ServiceBroker) -> AsyncIterator[Events]:
    async for running_events in running("intake", kafka.broker, {HANDLER_CONTEXT: store, "event_shelf": shelf}):
        yield running_events


async def register(http: httpx.AsyncClient, **changes: Any) -> str:
    response = await http.post("/v1/patients", json=PATIENT | changes, headers=STAFF)
    assert response.status_code == 201, response.text
    return str(response.json()["patient_id"])


async def new_episode(http: httpx.AsyncClient, **patient: Any) -> tuple[str, str]:
    """A registered patient with an open episode: (patient_id, episode_id)."""
    patient_id = await register(http, **patient)
    response = await http.post(f"/v1/patients/{patient_id}/episodes", json={"program": "adult"}, headers=STAFF)
    assert response.status_code == 201, response.text
    return patient_id, str(response.json()["episode_id"])


async def assess(http: httpx.AsyncClient, episode_id: str, instruments: dict[str, Any]) -> dict[str, Any]:
    body = {"dimensions": IOP_DIMENSIONS, "instruments": instruments}
    response = await http.post(f"/v1/episodes/{episode_id}/assessments", json=body, headers=STAFF)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def grant(http: httpx.AsyncClient, episode_id: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post(f"/v1/episodes/{episode_id}/consents", json=body, headers=STAFF)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def topics(database: MemoryDatabase) -> list[str]:
    return [topic for topic, _ in await queued(database[EPISODES])]


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


# Assessments


async def test_record_assessment(http: httpx.AsyncClient, database: MemoryDatabase) -> None:
    _, episode_id = await new_episode(http)
    assessment = await assess(http, episode_id, {"phq9": PHQ9_MODERATE})
    assert (assessment["kind"], assessment["recommended_level"], assessment["refer_out"]) == ("intake", "IOP", False)
    assert [(r["instrument"], r["total"], r["band"]) for r in assessment["instruments"]] == [("phq9", 11, "moderate")]
    assert assessment["safety_alert"] is None and assessment["rationale"][-1]["code"] == "recommended_level"
    [(topic, data)] = await queued(database[EPISODES])
    assert topic == "iop.assessment.completed" and data["assessment_id"] == assessment["assessment_id"]
    path = f"/v1/episodes/{episode_id}/assessments"
    out_of_range = {"dimensions": IOP_DIMENSIONS, "instruments": {"phq9": [4] * 9}}
    refused = await http.post(path, json=out_of_range, headers=STAFF)
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"][:3] == ["body", "instruments", "phq9"]
    unknown = await http.post("/v1/episodes/nobody/assessments", json={"dimensions": IOP_DIMENSIONS}, headers=STAFF)
    assert unknown.status_code == 404
    assert len(await queued(database[EPISODES])) == 1


async def test_a_high_risk_cssrs_answer_queues_the_safety_alert_before_the_assessment(
    http: httpx.AsyncClient, database: MemoryDatabase
) -> None:
    _, episode_id = await new_episode(http)
    assessment = await assess(http, episode_id, {"phq9": PHQ9_MODERATE, "cssrs": CSSRS_HIGH})
    assert assessment["safety_alert"]["level"] == "immediate"
    assert assessment["safety_alert"]["reasons"] == ["cssrs_high_risk"]
    assert assessment["recommended_level"] == "INPATIENT" and assessment["refer_out"] is True
    (alert_topic, alert), (completed_topic, completed) = await queued(database[EPISODES])
    assert (alert_topic, completed_topic) == ("iop.safety.alert_raised", "iop.assessment.completed")
    assert (alert["assessment_id"], alert["level"]) == (assessment["assessment_id"], "immediate")
    assert alert["alert_id"] == assessment["safety_alert"]["alert_id"]
    assert "q4" not in str(alert) and "q4" not in str(completed)  # reason codes, never the answers


async def test_a_reassessment_carries_the_changes_since_the_previous_one(
    http: httpx.AsyncClient, database: MemoryDatabase
) -> None:
    _, episode_id = await new_episode(http)
    first = await assess(http, episode_id, {"phq9": [2] * 8 + [0]})
    second = await assess(http, episode_id, {"phq9": [1] * 8 + [0], "gad7": [1] * 7})
    assert (second["kind"], second["previous_assessment_id"]) == ("reassessment", first["assessment_id"])
    [change] = second["changes"]
    assert (change["instrument"], change["previous_total"], change["total"], change["delta"]) == ("phq9", 16, 8, -8)
    assert change["meaningful_change"] == "improvement"
    published = [data for topic, data in await queued(database[EPISODES]) if topic == "iop.assessment.completed"]
    assert [data["kind"] for data in published] == ["intake", "reassessment"]
    assert published[1]["changes"][0]["delta"] == -8


async def test_a_clinician_may_choose_a_level_other_than_the_recommendation(
    http: httpx.AsyncClient, database: MemoryDatabase
) -> None:
    _, episode_id = await new_episode(http)
    path = f"/v1/episodes/{episode_id}/assessments"
    placement = {"chosen_level": "OP", "reason_code": "patient_declined_higher_level", "note": "prefers evenings"}
    staff = await http.post(path, json={"dimensions": IOP_DIMENSIONS, "placement": placement}, headers=STAFF)
    assert staff.status_code == 403
    recommended = {"dimensions": IOP_DIMENSIONS, "placement": placement | {"chosen_level": "IOP"}}
    same = await http.post(path, json=recommended, headers=CLINICIAN)
    assert same.status_code == 422 and same.json()["detail"][0]["loc"] == ["body", "placement", "chosen_level"]
    assert await queued(database[EPISODES]) == []  # refused: nothing stored, nothing queued
    chosen = await http.post(path, json={"dimensions": IOP_DIMENSIONS, "placement": placement}, headers=CLINICIAN)
    assert chosen.status_code == 201, chosen.text
    assert (chosen.json()["recommended_level"], chosen.json()["placement"]["chosen_level"]) == ("IOP", "OP")
    [(_, completed)] = await queued(database[EPISODES])
    assert completed["placement"]["reason_code"] == "patient_declined_higher_level"
    assert "prefers evenings" not in str(completed)  # the note stays in intake


async def test_assessment_history(http: httpx.AsyncClient) -> None:
    _, episode_id = await new_episode(http)
    first = await assess(http, episode_id, {"phq9": [2] * 8 + [0]})
    second = await assess(http, episode_id, {"phq9": [1] * 8 + [0], "gad7": [1] * 7})
    history = await http.get(f"/v1/episodes/{episode_id}/assessments", headers=as_role(Role.INTEGRATION))
    assert history.status_code == 200
    body = history.json()
    assert [a["assessment_id"] for a in body["assessments"]] == [first["assessment_id"], second["assessment_id"]]
    trends = {t["instrument"]: t for t in body["trends"]}
    assert [p["total"] for p in trends["phq9"]["points"]] == [16, 8] and trends["phq9"]["direction"] == "improving"
    assert trends["gad7"]["direction"] == "stable"
    assert "recorded_by" not in body["assessments"][0]  # kept for intake alone
    missing = await http.get("/v1/episodes/nobody/assessments", headers=CLINICIAN)
    assert missing.status_code == 404
    forbidden = await http.get(f"/v1/episodes/{episode_id}/assessments", headers=NOTIFICATIONS)
    assert forbidden.status_code == 403


# Drug screens


async def test_record_drug_screen(http: httpx.AsyncClient, database: MemoryDatabase) -> None:
    _, episode_id = await new_episode(http)
    path = f"/v1/episodes/{episode_id}/drug-screens"
    body = {
        "collected_at": "2026-01-20T14:05:00Z",
        "results": [
            {"substance": "fentanyl", "result": "positive"},
            {"substance": "buprenorphine", "result": "positive", "expected": True},
        ],
    }
    recorded = await http.post(path, json=body, headers=as_role(Role.INTEGRATION))
    assert recorded.status_code == 201, recorded.text
    assert recorded.json()["unexpected_positive"] is True and "recorded_by" not in recorded.json()
    [(topic, data)] = await queued(database[EPISODES])
    assert topic == "iop.drug_screen.recorded" and data["screen_id"] == recorded.json()["screen_id"]
    assert data["unexpected_positive"] is True
    future = await http.post(path, json=body | {"collected_at": "2999-01-01T00:00:00Z"}, headers=CLINICIAN)
    assert future.status_code == 422 and future.json()["detail"][0]["loc"] == ["body", "collected_at"]
    twice = await http.post(path, json=body | {"results": [body["results"][0]] * 2}, headers=CLINICIAN)
    assert twice.status_code == 422
    unknown = await http.post("/v1/episodes/nobody/drug-screens", json=body, headers=CLINICIAN)
    assert unknown.status_code == 404
    assert len(await queued(database[EPISODES])) == 1


async def test_an_expected_positive_is_not_unexpected(http: httpx.AsyncClient, database: MemoryDatabase) -> None:
    _, episode_id = await new_episode(http)
    prescribed = {"substance": "buprenorphine", "result": "positive", "expected": True}
    body = {"collected_at": "2026-01-20T14:05:00Z", "results": [prescribed]}
    recorded = await http.post(f"/v1/episodes/{episode_id}/drug-screens", json=body, headers=CLINICIAN)
    assert recorded.status_code == 201 and recorded.json()["unexpected_positive"] is False
    [(_, data)] = await queued(database[EPISODES])
    assert data["unexpected_positive"] is False


async def test_an_episode_that_is_not_open_takes_no_new_records(
    http: httpx.AsyncClient, store: IntakeStore, database: MemoryDatabase
) -> None:
    _, episode_id = await new_episode(http)
    stored = await store.get(episode_id)
    assert stored is not None
    assert await store.save(stored, stored.episode.model_copy(update={"status": "closed"}))  # nothing in intake closes
    screen = {"collected_at": "2026-01-20T14:05:00Z", "results": [{"substance": "fentanyl", "result": "negative"}]}
    refused = [
        await http.post(f"/v1/episodes/{episode_id}/assessments", json={"dimensions": IOP_DIMENSIONS}, headers=STAFF),
        await http.post(f"/v1/episodes/{episode_id}/drug-screens", json=screen, headers=CLINICIAN),
        await http.post(f"/v1/episodes/{episode_id}/consents", json=FAMILY, headers=STAFF),
    ]
    assert [response.status_code for response in refused] == [409, 409, 409]
    assert refused[0].json()["detail"] == "episode is closed"
    assert await queued(database[EPISODES]) == []


# Consents


async def test_grant_consent(http: httpx.AsyncClient, database: MemoryDatabase) -> None:
    _, episode_id = await new_episode(http)
    consent = await grant(http, episode_id, FAMILY)
    assert (consent["status"], consent["recipient"]["email"], consent["expires_on"]) == ("granted", FAMILY_EMAIL, None)
    [(topic, data)] = await queued(database[EPISODES])
    assert topic == "iop.consent.changed" and data["consent_id"] == consent["consent_id"]
    assert (data["recipient_kind"], data["status"]) == ("family", "granted")
    assert FAMILY_EMAIL not in str(data) and "Sam Example" not in str(data)  # the event names no one
    path = f"/v1/episodes/{episode_id}/consents"
    unreachable = await http.post(path, json=FAMILY | {"recipient": {"name": "No Contact"}}, headers=STAFF)
    assert unreachable.status_code == 422
    nobody = await http.post(path, json={"recipient_kind": "family", "scopes": ["appointments"]}, headers=STAFF)
    assert nobody.status_code == 422
    unknown = await http.post("/v1/episodes/nobody/consents", json=FAMILY, headers=STAFF)
    assert unknown.status_code == 404
    assert len(await queued(database[EPISODES])) == 1


async def test_a_consent_with_an_expiry_date_is_stored_and_read_back(
    http: httpx.AsyncClient, database: MemoryDatabase, store: IntakeStore
) -> None:
    _, episode_id = await new_episode(http)
    consent = await grant(http, episode_id, FAMILY | {"expires_on": "2030-12-31"})
    assert consent["expires_on"] == "2030-12-31"
    document = await database[EPISODES].find_one({"_id": episode_id})
    assert document is not None and document["consents"][0]["expires_on"] == "2030-12-31"  # ISO text: BSON has no date
    stored = await store.get(episode_id)
    assert stored is not None and str(stored.episode.consents[0].expires_on) == "2030-12-31"
    listed = await http.get(f"/v1/episodes/{episode_id}/consents", headers=STAFF)
    assert [c["expires_on"] for c in listed.json()] == ["2030-12-31"]
    expired = FAMILY | {"expires_on": "2020-01-01"}
    past = await http.post(f"/v1/episodes/{episode_id}/consents", json=expired, headers=STAFF)
    assert past.status_code == 422 and past.json()["detail"][0]["loc"] == ["body", "expires_on"]


async def test_revoke_consent(http: httpx.AsyncClient, database: MemoryDatabase) -> None:
    _, episode_id = await new_episode(http)
    consent = await grant(http, episode_id, FAMILY)
    path = f"/v1/episodes/{episode_id}/consents/{consent['consent_id']}/revoke"
    revoked = await http.post(path, headers=STAFF)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked" and revoked.json()["revoked_at"]
    assert revoked.json()["revoked_by"].startswith("token:") and revoked.json()["granted_by"].startswith("token:")
    [*_, (_, event)] = await queued(database[EPISODES])
    assert "token:" not in str(event)  # who revoked it stays in intake: the event names no one
    again = await http.post(path, headers=CLINICIAN)
    assert again.status_code == 200 and again.json() == revoked.json()
    changed = [data["status"] for topic, data in await queued(database[EPISODES]) if topic == "iop.consent.changed"]
    assert changed == ["granted", "revoked"]  # revoking twice queues one revoked event
    unknown = await http.post(f"/v1/episodes/{episode_id}/consents/nope/revoke", headers=STAFF)
    assert unknown.status_code == 404
    no_episode = await http.post(f"/v1/episodes/nobody/consents/{consent['consent_id']}/revoke", headers=STAFF)
    assert no_episode.status_code == 404


async def test_list_consents(http: httpx.AsyncClient) -> None:
    _, episode_id = await new_episode(http)
    family = await grant(http, episode_id, FAMILY)
    alumni = await grant(http, episode_id, ALUMNI)
    await http.post(f"/v1/episodes/{episode_id}/consents/{family['consent_id']}/revoke", headers=STAFF)
    listed = await http.get(f"/v1/episodes/{episode_id}/consents", headers=CLINICIAN)
    assert listed.status_code == 200
    statuses = [(c["consent_id"], c["status"]) for c in listed.json()]
    assert statuses == [(family["consent_id"], "revoked"), (alumni["consent_id"], "granted")]
    assert listed.json()[1]["recipient"] is None
    missing = await http.get("/v1/episodes/nobody/consents", headers=CLINICIAN)
    assert missing.status_code == 404


# For the notifications service


async def test_episode_contact(http: httpx.AsyncClient) -> None:
    _, episode_id = await new_episode(http, timezone="America/Chicago")
    contact = await http.get(f"/v1/episodes/{episode_id}/contact", headers=NOTIFICATIONS)
    assert contact.status_code == 200
    assert contact.json() == {"email": "alex@example.org", "phone": "+12025550100", "timezone": "America/Chicago"}
    clinician = await http.get(f"/v1/episodes/{episode_id}/contact", headers=CLINICIAN)
    assert clinician.status_code == 403
    missing = await http.get("/v1/episodes/nobody/contact", headers=NOTIFICATIONS)
    assert missing.status_code == 404


async def test_consented_recipients(http: httpx.AsyncClient) -> None:
    _, episode_id = await new_episode(http)
    family = await grant(http, episode_id, FAMILY)
    await grant(http, episode_id, ALUMNI)
    path = f"/v1/episodes/{episode_id}/recipients"
    listed = await http.get(path, params={"scope": "appointments"}, headers=NOTIFICATIONS)
    assert listed.status_code == 200  # a listing carries no contact data
    assert listed.json() == [
        {"consent_id": family["consent_id"], "recipient_kind": "family", "email": None, "phone": None, "timezone": None}
    ]
    alumni = await http.get(path, params={"scope": "alumni_program"}, headers=NOTIFICATIONS)
    assert [r["recipient_kind"] for r in alumni.json()] == ["alumni_group"]
    assert (await http.get(path, params={"scope": "level_of_care"}, headers=NOTIFICATIONS)).json() == []
    await http.post(f"/v1/episodes/{episode_id}/consents/{family['consent_id']}/revoke", headers=STAFF)
    assert (await http.get(path, params={"scope": "appointments"}, headers=NOTIFICATIONS)).json() == []
    bad_scope = await http.get(path, params={"scope": "gossip"}, headers=NOTIFICATIONS)
    assert bad_scope.status_code == 422 and bad_scope.json()["detail"][0]["loc"] == ["query", "scope"]
    clinician = await http.get(path, params={"scope": "appointments"}, headers=CLINICIAN)
    assert clinician.status_code == 403
    missing = await http.get("/v1/episodes/nobody/recipients", params={"scope": "appointments"}, headers=NOTIFICATIONS)
    assert missing.status_code == 404


async def test_consented_contact(http: httpx.AsyncClient) -> None:
    _, episode_id = await new_episode(http, timezone="America/Chicago")
    family = await grant(http, episode_id, FAMILY)
    alumni = await grant(http, episode_id, ALUMNI)
    path = f"/v1/episodes/{episode_id}/consents/{family['consent_id']}/contact"
    support = await http.get(path, headers=NOTIFICATIONS)
    assert support.status_code == 200
    assert (support.json()["email"], support.json()["phone"]) == (FAMILY_EMAIL, None)
    graduate = await http.get(path.replace(family["consent_id"], alumni["consent_id"]), headers=NOTIFICATIONS)
    assert graduate.status_code == 200  # the alumni group reaches the graduate at their own contact points
    assert (graduate.json()["email"], graduate.json()["timezone"]) == ("alex@example.org", "America/Chicago")
    clinician = await http.get(path, headers=CLINICIAN)
    assert clinician.status_code == 403
    await http.post(f"/v1/episodes/{episode_id}/consents/{family['consent_id']}/revoke", headers=STAFF)
    gone = await http.get(path, headers=NOTIFICATIONS)
    assert gone.status_code == 410
    unknown = await http.get(f"/v1/episodes/{episode_id}/consents/nope/contact", headers=NOTIFICATIONS)
    assert unknown.status_code == 404
    no_episode = await http.get(f"/v1/episodes/nobody/consents/{family['consent_id']}/contact", headers=NOTIFICATIONS)
    assert no_episode.status_code == 404


async def test_episode_audience(http: httpx.AsyncClient) -> None:
    patient_id, episode_id = await new_episode(http)
    family = await grant(http, episode_id, FAMILY)
    path = f"/v1/episodes/{episode_id}/audience"
    asked = await http.get(path, params=[("scope", "appointments"), ("scope", "level_of_care")], headers=NOTIFICATIONS)
    assert asked.status_code == 200  # one answer: the patient, and per scope asked its recipients (no contact data)
    assert asked.json() == {"episode_id": episode_id, "patient_id": patient_id, "recipients": {
        "appointments": [{"consent_id": family["consent_id"], "recipient_kind": "family", "email": None,
                          "phone": None, "timezone": None}],
        "level_of_care": []}}  # fmt: skip
    only_patient = await http.get(path, headers=NOTIFICATIONS)
    assert only_patient.json() == {"episode_id": episode_id, "patient_id": patient_id, "recipients": {}}
    bad_scope = await http.get(path, params={"scope": "gossip"}, headers=NOTIFICATIONS)
    assert bad_scope.status_code == 422 and bad_scope.json()["detail"][0]["loc"] == ["query", "scope", 0]
    assert (await http.get(path, headers=CLINICIAN)).status_code == 403
    assert (await http.get("/v1/episodes/nobody/audience", headers=NOTIFICATIONS)).status_code == 404


async def test_episode_patient(http: httpx.AsyncClient) -> None:
    patient_id, episode_id = await new_episode(http)
    found = await http.get(f"/v1/episodes/{episode_id}/patient", headers=NOTIFICATIONS)
    assert found.status_code == 200 and found.json() == {"episode_id": episode_id, "patient_id": patient_id}
    clinician = await http.get(f"/v1/episodes/{episode_id}/patient", headers=CLINICIAN)
    assert clinician.status_code == 403
    missing = await http.get("/v1/episodes/nobody/patient", headers=NOTIFICATIONS)
    assert missing.status_code == 404


# Audit


async def test_reads_and_changes_of_pii_are_in_the_audit_log(http: httpx.AsyncClient) -> None:
    patient_id, episode_id = await new_episode(http)
    other_patient = await register(http, name="Other Example", email="other@example.org")
    family = await grant(http, episode_id, FAMILY)
    await http.get(f"/v1/patients/{patient_id}", headers=CLINICIAN)
    await http.patch(f"/v1/patients/{patient_id}", json={"phone": "+12025550199"}, headers=CLINICIAN)
    await http.get(f"/v1/episodes/{episode_id}/consents", headers=STAFF)
    await http.get(f"/v1/episodes/{episode_id}/contact", headers=NOTIFICATIONS)
    await http.get(f"/v1/episodes/{episode_id}/consents/{family['consent_id']}/contact", headers=NOTIFICATIONS)

    entries = await http.get("/v1/audit", params={"patient_id": patient_id}, headers=ADMIN)
    assert entries.status_code == 200
    assert [(e["action"], e["role"]) for e in reversed(entries.json())] == [
        ("create_patient", "intake_staff"),
        ("grant_consent", "intake_staff"),
        ("read_patient", "clinician"),
        ("update_patient", "clinician"),
        ("read_consents", "intake_staff"),
        ("read_contact", "notifications"),
        ("read_recipient", "notifications"),
    ]
    assert {e["patient_id"] for e in entries.json()} == {patient_id}
    assert {e["episode_id"] for e in entries.json() if e["action"] == "read_contact"} == {episode_id}
    assert "alex@example.org" not in entries.text  # the log says who and what, not the data
    reads = await http.get("/v1/audit", params={"patient_id": patient_id, "action": "read_patient"}, headers=ADMIN)
    assert [e["action"] for e in reads.json()] == ["read_patient"]
    latest = await http.get("/v1/audit", params={"limit": 1}, headers=ADMIN)
    assert len(latest.json()) == 1 and latest.json()[0]["action"] == "read_recipient"
    other = await http.get("/v1/audit", params={"patient_id": other_patient}, headers=ADMIN)
    assert [e["action"] for e in other.json()] == ["create_patient"]
    forbidden = await http.get("/v1/audit", params={"patient_id": patient_id}, headers=CLINICIAN)
    assert forbidden.status_code == 403
    too_many = await http.get("/v1/audit", params={"limit": 1001}, headers=ADMIN)
    assert too_many.status_code == 422


# Probes


async def test_health_live(http: httpx.AsyncClient) -> None:
    live = await http.get("/health/live")
    assert live.status_code == 200 and live.json() == {"status": "live"}


async def _up() -> bool:
    return True


async def _down() -> bool:
    raise ConnectionError("broker unreachable")


@pytest.mark.parametrize(
    ("checks", "expected"),
    [
        ({"mongodb": _up, "kafka": _up}, (200, "ready", {"mongodb": True, "kafka": True})),
        ({"mongodb": _up, "kafka": _down}, (503, "not_ready", {"mongodb": True, "kafka": False})),
    ],
    ids=["all_up", "one_raises"],
)
async def test_health_ready(
    database: MemoryDatabase,
    store: IntakeStore,
    checks: dict[str, Callable[[], Awaitable[bool]]],
    expected: tuple[int, str, dict[str, bool]],
) -> None:
    state = {"store": store, "placement_policy": POLICY, "readiness_checks": checks,
             "idempotency_keys": IdempotencyKeys(database)}  # type: ignore[arg-type]  # fmt: skip
    async with await client_of("intake", APP, database, state) as probe:
        ready = await probe.get("/health/ready")
    assert (ready.status_code, ready.json()["status"], ready.json()["checks"]) == expected


# Idempotency-Key: a retried POST gets the first answer again and creates nothing


async def test_a_retried_episode_post_with_the_same_key_opens_one_episode(
    http: httpx.AsyncClient, database: MemoryDatabase
) -> None:
    patient_id = await register(http)
    path, key = f"/v1/patients/{patient_id}/episodes", {"Idempotency-Key": str(uuid.uuid4())}
    first = await http.post(path, json={"program": "adult"}, headers=STAFF | key)
    retried = await http.post(path, json={"program": "adult"}, headers=STAFF | key)
    assert first.status_code == retried.status_code == 201 and first.json() == retried.json()
    assert await database[EPISODES].count_documents({"patient_id": patient_id}) == 1
    other_body = await http.post(path, json={"program": "adolescent"}, headers=STAFF | key)
    assert other_body.status_code == 422 and other_body.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    without_key = await http.post(path, json={"program": "adult"}, headers=STAFF)
    assert without_key.status_code == 201 and without_key.json() != first.json()


@pytest.mark.parametrize(
    ("path", "body", "id_field", "topic"),
    [
        ("assessments", {"dimensions": IOP_DIMENSIONS}, "assessment_id", "iop.assessment.completed"),
        ("drug-screens", {"collected_at": "2026-11-20T14:05:00Z",
                          "results": [{"substance": "fentanyl", "result": "negative"}]}, "screen_id",
         "iop.drug_screen.recorded"),
        ("consents", {"recipient_kind": "alumni_group", "scopes": ["alumni_program"]}, "consent_id",
         "iop.consent.changed"),
    ],
)  # fmt: skip
async def test_a_retried_record_with_the_same_key_is_recorded_and_published_once(
    http: httpx.AsyncClient, database: MemoryDatabase, path: str, body: dict[str, Any], id_field: str, topic: str
) -> None:
    _, episode_id = await new_episode(http)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    answers = [await http.post(f"/v1/episodes/{episode_id}/{path}", json=body, headers=CLINICIAN | key) for _ in "ab"]
    assert [a.status_code for a in answers] == [201, 201] and answers[0].json() == answers[1].json()
    assert [t for t, _ in await queued(database[EPISODES]) if t == topic] == [topic]
    assert answers[0].json()[id_field]


async def test_a_retried_patient_post_registers_one_patient(http: httpx.AsyncClient, database: MemoryDatabase) -> None:
    key = {"Idempotency-Key": "retry-after-a-timeout"}
    answers = [await http.post("/v1/patients", json=PATIENT, headers=STAFF | key) for _ in "ab"]
    assert answers[0].json() == answers[1].json()
    assert await database["patients"].count_documents({}) == 1


async def test_date_time_query_parameters_take_a_date_time_with_its_offset_only(http: httpx.AsyncClient) -> None:
    admin = as_role(Role.ADMIN)
    for wrong in ("1700000000", "2026-11-23T14:00:00"):  # a bare number; a time without its offset
        refused = await http.get("/v1/audit", params={"since": wrong}, headers=admin)
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["query", "since"], wrong
    assert (await http.get("/v1/audit", params={"since": "2026-11-23T14:00:00Z"}, headers=admin)).status_code == 200


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


# Drug screens and assessments are read by name: audited with the person, like contact data


SCREEN = {"collected_at": "2026-01-20T14:05:00Z", "results": [{"substance": "fentanyl", "result": "negative"}]}


async def test_drug_screens_are_read_by_clinicians_and_audited(http: httpx.AsyncClient) -> None:
    patient_id, episode_id = await new_episode(http)
    path = f"/v1/episodes/{episode_id}/drug-screens"
    recorded = [(await http.post(path, json=SCREEN, headers=as_role(Role.INTEGRATION))).json() for _ in "ab"]
    read = await http.get(path, headers=CLINICIAN)
    assert read.status_code == 200, read.text
    assert [s["screen_id"] for s in read.json()] == [s["screen_id"] for s in recorded]
    assert read.json()[0]["results"] == [{"substance": "fentanyl", "result": "negative", "expected": False}]
    assert "recorded_by" not in read.json()[0]  # kept for intake alone
    assert (await http.get(path, headers=STAFF)).status_code == 403
    assert (await http.get("/v1/episodes/nobody/drug-screens", headers=CLINICIAN)).status_code == 404
    entries = await http.get("/v1/audit", params={"patient_id": patient_id, "action": "read_drug_screens"},
                             headers=ADMIN)  # fmt: skip
    [entry] = entries.json()
    assert (entry["role"], entry["episode_id"]) == ("clinician", episode_id) and entry["token_id"]


async def test_reading_assessment_history_is_audited_with_the_person(http: httpx.AsyncClient) -> None:
    patient_id, episode_id = await new_episode(http)
    await assess(http, episode_id, {"phq9": PHQ9_MODERATE, "cssrs": CSSRS_HIGH})
    history = await http.get(f"/v1/episodes/{episode_id}/assessments", headers=CLINICIAN)
    assert history.status_code == 200
    refused = await http.get("/v1/episodes/nobody/assessments", headers=CLINICIAN)
    assert refused.status_code == 404
    entries = await http.get("/v1/audit", params={"patient_id": patient_id, "action": "read_assessments"},
                             headers=ADMIN)  # fmt: skip
    [entry] = entries.json()
    assert (entry["role"], entry["episode_id"]) == ("clinician", episode_id) and entry["token_id"]


# Every list a request takes is bounded; a store refusing a write is answered, never a 500


@pytest.mark.parametrize(
    ("path", "body", "location"),
    [
        ("consents", FAMILY | {"scopes": ["appointments"] * 10_000}, ["body", "scopes"]),
        ("consents", FAMILY | {"scopes": ["appointments", "attendance", "appointments"]}, ["body", "scopes"]),
        ("drug-screens", SCREEN | {"results": SCREEN["results"] * 17}, ["body", "results"]),
    ],
    ids=["scopes_10000", "scopes_twice", "results_beyond_the_substances"],
)
async def test_every_request_list_is_bounded(
    http: httpx.AsyncClient, database: MemoryDatabase, path: str, body: dict[str, Any], location: list[str]
) -> None:
    _, episode_id = await new_episode(http)
    refused = await http.post(f"/v1/episodes/{episode_id}/{path}", json=body, headers=CLINICIAN)
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == location
    assert await queued(database[EPISODES]) == []


async def test_the_audience_takes_each_scope_at_most_once(http: httpx.AsyncClient) -> None:
    _, episode_id = await new_episode(http)
    many = [("scope", "appointments")] * 6
    refused = await http.get(f"/v1/episodes/{episode_id}/audience", params=many, headers=NOTIFICATIONS)
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["query", "scope"]


async def test_a_full_episode_refuses_a_new_assessment_with_409_saying_why(
    http: httpx.AsyncClient, store: IntakeStore, database: MemoryDatabase
) -> None:
    _, episode_id = await new_episode(http)
    await assess(http, episode_id, {"phq9": PHQ9_MODERATE})
    stored = await store.get(episode_id)
    assert stored is not None
    full = stored.episode.model_copy(update={"assessments": stored.episode.assessments * MOST_ASSESSMENTS})
    assert await store.save(stored, full)
    refused = await http.post(f"/v1/episodes/{episode_id}/assessments", json={"dimensions": IOP_DIMENSIONS},
                              headers=STAFF)  # fmt: skip
    assert refused.status_code == 409
    assert refused.json()["detail"].startswith(f"the episode holds {MOST_ASSESSMENTS} assessments")
    assert len(await queued(database[EPISODES])) == 1  # the first assessment's event only


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (WriteError("Resulting document after update is larger than 16777216", 17419), (409, "16 MB")),
        (DocumentTooLarge("BSON document too large"), (409, "16 MB")),
        (WriteError("Document failed validation", 121), (409, "the store refused the change (code 121)")),
        (WriteError("Not writable primary", 10107), (503, "the store could not take the change now (code 10107)")),
    ],
    ids=["update_result_too_large", "document_too_large", "another_write_error", "a_transient_write_error"],
)
async def test_a_store_refusing_a_write_is_answered_naming_the_cause(
    http: httpx.AsyncClient,
    database: MemoryDatabase,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    expected: tuple[int, str],
) -> None:
    _, episode_id = await new_episode(http)

    async def refuse(*_: Any, **__: Any) -> None:
        raise error

    monkeypatch.setattr(database[EPISODES], "update_one", refuse)
    body = {"dimensions": IOP_DIMENSIONS, "instruments": {"phq9": [3] * 9, "cssrs": CSSRS_HIGH}}  # the alert too
    for path, sent in (("assessments", body), ("drug-screens", SCREEN), ("consents", FAMILY)):
        answer = await http.post(f"/v1/episodes/{episode_id}/{path}", json=sent, headers=CLINICIAN)
        assert answer.status_code == expected[0] and expected[1] in answer.json()["detail"], answer.text
        assert "nothing was changed" in answer.json()["detail"]
        assert (answer.headers.get("Retry-After") == "5") == (expected[0] == 503)


# Graduation and discharge close the episode here


def ended(data: EpisodeGraduated | EpisodeDischarged) -> Any:
    return new_event(data, source="/stepwise/care-plan")


async def test_a_graduation_or_a_discharge_closes_the_episode_once(
    http: httpx.AsyncClient, events: Events, store: IntakeStore, database: MemoryDatabase
) -> None:
    _, graduating = await new_episode(http)
    _, leaving = await new_episode(http, name="Other Example")
    at = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    graduation = ended(EpisodeGraduated(episode_id=graduating, graduated_at=at, level=CareLevel.IOP, by="clinician"))
    await events.deliver(graduation)
    await events.deliver(graduation)  # a redelivery changes nothing
    await events.deliver(ended(EpisodeDischarged(episode_id=leaving, discharged_at=at + timedelta(days=1),
                                                 level=CareLevel.IOP, reason_code="non_attendance")))  # fmt: skip
    for episode_id, how in ((graduating, "graduated"), (leaving, "discharged")):
        stored = await store.get(episode_id)
        assert stored is not None and (stored.episode.status, stored.episode.ended) == ("closed", how)
    closed = await store.get(graduating)
    assert closed is not None and closed.episode.closed_at == at and closed.version == 2  # closed once
    assert await queued(database[EPISODES]) == [] and await set_aside(database) == []


async def test_a_closed_episode_refuses_a_new_assessment_saying_why_and_still_takes_a_revocation(
    http: httpx.AsyncClient, events: Events
) -> None:
    _, episode_id = await new_episode(http)
    consent = await grant(http, episode_id, FAMILY)
    at = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    await events.deliver(ended(EpisodeGraduated(episode_id=episode_id, graduated_at=at, level=CareLevel.IOP,
                                                by="completion")))  # fmt: skip
    refused = await http.post(f"/v1/episodes/{episode_id}/assessments", json={"dimensions": IOP_DIMENSIONS},
                              headers=STAFF)  # fmt: skip
    assert refused.status_code == 409
    assert refused.json()["detail"] == "episode is closed (graduated on 2026-12-01): record it in a new episode"
    revoked = await http.post(f"/v1/episodes/{episode_id}/consents/{consent['consent_id']}/revoke", headers=STAFF)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"  # a patient may withdraw any time
    assert (await http.get(f"/v1/episodes/{episode_id}/assessments", headers=CLINICIAN)).status_code == 200


async def test_the_end_of_an_episode_intake_never_opened_is_set_aside_and_can_be_replayed(
    http: httpx.AsyncClient, events: Events
) -> None:
    at = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    await events.deliver(ended(EpisodeGraduated(episode_id="unknown", graduated_at=at, level=CareLevel.IOP,
                                                by="clinician")))  # fmt: skip
    [shelved] = (await http.get("/v1/set-aside-events", headers=ADMIN)).json()
    assert shelved["reason"] == "rejected: episode not found" and "value" not in shelved
    assert (await http.get("/v1/set-aside-events", headers=CLINICIAN)).status_code == 403
    again = await http.post(f"/v1/set-aside-events/{shelved['id']}/replay", headers=ADMIN)
    assert again.status_code == 200 and again.json()["replays"][-1]["outcome"] == "set_aside_again"
    assert (await http.post("/v1/set-aside-events/nope/replay", headers=ADMIN)).status_code == 404
    by_topic = await http.post("/v1/set-aside-events/replay", params={"topic": "iop.episode.graduated"}, headers=ADMIN)
    assert by_topic.status_code == 200 and [e["replays"][-1]["outcome"] for e in by_topic.json()] == ["set_aside_again"]
    assert (await http.post("/v1/set-aside-events/replay", headers=CLINICIAN)).status_code == 403


# A refused consent change is not audited as one that happened


async def test_a_refused_consent_change_is_not_audited(http: httpx.AsyncClient, store: IntakeStore) -> None:
    patient_id, episode_id = await new_episode(http)
    consent = await grant(http, episode_id, FAMILY)
    unknown = await http.post(f"/v1/episodes/{episode_id}/consents/nope/revoke", headers=STAFF)
    assert unknown.status_code == 404
    stored = await store.get(episode_id)
    assert stored is not None
    assert await store.save(stored, stored.episode.model_copy(update={"status": "closed"}))
    closed = await http.post(f"/v1/episodes/{episode_id}/consents", json=FAMILY, headers=STAFF)
    assert closed.status_code == 409
    revoked = await http.post(f"/v1/episodes/{episode_id}/consents/{consent['consent_id']}/revoke", headers=STAFF)
    assert revoked.status_code == 200
    entries = await http.get("/v1/audit", params={"patient_id": patient_id}, headers=ADMIN)
    changes = [e["action"] for e in reversed(entries.json()) if e["action"].endswith("_consent")]
    assert changes == ["grant_consent", "revoke_consent"]  # the two that happened, not the 404 and the 409


async def test_the_contact_of_a_consent_of_an_unknown_episode_says_the_episode_is_not_found(
    http: httpx.AsyncClient,
) -> None:
    _, episode_id = await new_episode(http)
    consent = await grant(http, episode_id, FAMILY)
    missing = await http.get(f"/v1/episodes/nobody/consents/{consent['consent_id']}/contact", headers=NOTIFICATIONS)
    assert (missing.status_code, missing.json()["detail"]) == (404, "episode not found")
    unknown = await http.get(f"/v1/episodes/{episode_id}/consents/nope/contact", headers=NOTIFICATIONS)
    assert (unknown.status_code, unknown.json()["detail"]) == (404, "consent not found")


# The episode's track; fields a request does not declare


async def test_an_episode_takes_its_track_and_its_assessments_carry_it(
    http: httpx.AsyncClient, store: IntakeStore, database: MemoryDatabase
) -> None:
    patient_id = await register(http)
    path = f"/v1/patients/{patient_id}/episodes"
    evening = await http.post(path, json={"program": "adult", "track": "evening"}, headers=STAFF)
    default = await http.post(path, json={"program": "adult", "track": None}, headers=STAFF)
    assert (evening.status_code, default.status_code) == (201, 201)
    for response, track in ((evening, "evening"), (default, None)):
        episode_id = response.json()["episode_id"]
        stored = await store.get(episode_id)
        assert stored is not None and stored.episode.track == track
        await assess(http, episode_id, {"phq9": PHQ9_MODERATE})
        [completed] = [d for t, d in await queued(database[EPISODES]) if d["episode_id"] == episode_id]
        assert completed["track"] == track  # null: care_plan applies the clinic's default
    night = await http.post(path, json={"program": "adult", "track": "night"}, headers=STAFF)
    assert night.status_code == 422 and night.json()["detail"][0]["loc"] == ["body", "track"]
    misspelt = await http.post(path, json={"program": "adult", "trak": "evening"}, headers=STAFF)
    assert misspelt.status_code == 422 and misspelt.json()["detail"][0]["loc"] == ["body", "trak"]


async def test_a_field_nobody_declared_in_an_object_inside_a_body_is_refused(http: httpx.AsyncClient) -> None:
    _, episode_id = await new_episode(http)
    result = {"substance": "fentanyl", "result": "negative", "confirmed_by": "lab"}
    body = {"collected_at": "2026-01-20T14:05:00Z", "results": [result]}
    refused = await http.post(f"/v1/episodes/{episode_id}/drug-screens", json=body, headers=CLINICIAN)
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "results", 0, "confirmed_by"]
    revoke = await http.post(f"/v1/episodes/{episode_id}/consents/nope/revoke", json={"why": "asked"}, headers=STAFF)
    assert revoke.status_code == 422 and revoke.json()["detail"][0]["loc"] == ["body", "why"]  # it takes no body


# What the OpenAPI document says the bodies take: the rules in the schema, and the types JSON gives


async def test_a_consent_names_its_support_and_the_alumni_group_no_one(
    http: httpx.AsyncClient, database: MemoryDatabase
) -> None:
    _, episode_id = await new_episode(http)
    path = f"/v1/episodes/{episode_id}/consents"
    for kind in ("family", "designated_support"):
        nobody = await http.post(path, json={"recipient_kind": kind, "scopes": ["appointments"]}, headers=STAFF)
        assert nobody.status_code == 422, kind
        [entry] = nobody.json()["detail"]
        assert (entry["loc"], entry["type"]) == (["body", "recipient"], "missing"), kind
        assert entry["msg"] == f"recipient is required when recipient_kind is {kind}"
    unreachable = await http.post(path, json=FAMILY | {"recipient": {"name": "No Contact"}}, headers=STAFF)
    assert unreachable.status_code == 422 and unreachable.json()["detail"][0]["loc"] == ["body", "recipient"]
    twice = await http.post(path, json=FAMILY | {"scopes": ["appointments", "appointments"]}, headers=STAFF)
    assert twice.status_code == 422 and twice.json()["detail"][0]["loc"] == ["body", "scopes"]
    unknown = await http.post(path, json=FAMILY | {"recipient_kind": "neighbour"}, headers=STAFF)
    assert [(e["loc"], e["type"]) for e in unknown.json()["detail"]] == [(["body", "recipient_kind"], "literal_error")]
    assert "neighbour" not in unknown.text
    assert len(await queued(database[EPISODES])) == 0
    assert (await grant(http, episode_id, ALUMNI))["recipient"] is None
    assert (await grant(http, episode_id, FAMILY))["recipient"]["email"] == FAMILY_EMAIL


@pytest.mark.parametrize("rating", ["2", 2.0, True], ids=["text", "whole_float", "bool"])
async def test_a_dimension_rating_is_a_json_integer(
    http: httpx.AsyncClient, database: MemoryDatabase, rating: object
) -> None:
    _, episode_id = await new_episode(http)
    body = {"dimensions": IOP_DIMENSIONS | {"relapse": rating}}
    refused = await http.post(f"/v1/episodes/{episode_id}/assessments", json=body, headers=STAFF)
    assert refused.status_code == 422
    assert [(e["loc"], e["type"]) for e in refused.json()["detail"]] == [
        (["body", "dimensions", "relapse"], "int_type")
    ]
    answers = {"phq9": [1, 2, 1, "2", 1, 1, 2, 1, 0]}
    refused = await http.post(f"/v1/episodes/{episode_id}/assessments", headers=STAFF,
                              json={"dimensions": IOP_DIMENSIONS, "instruments": answers})  # fmt: skip
    assert [e["loc"] for e in refused.json()["detail"]] == [["body", "instruments", "phq9", 3]]
    assert await topics(database) == []


async def test_yes_no_answers_and_dates_take_only_their_json_type(http: httpx.AsyncClient) -> None:
    unborn_in_1970 = await http.post("/v1/patients", json=PATIENT | {"date_of_birth": 0}, headers=STAFF)
    assert unborn_in_1970.status_code == 422 and unborn_in_1970.json()["detail"][0]["loc"] == ["body", "date_of_birth"]
    confirmed = await http.post("/v1/patients", json=PATIENT | {"confirm_new": "true"}, headers=STAFF)
    assert confirmed.status_code == 422 and confirmed.json()["detail"][0]["loc"] == ["body", "confirm_new"]
    _, episode_id = await new_episode(http)
    screen = {"collected_at": "2026-11-20T14:05:00Z",
              "results": [{"substance": "buprenorphine", "result": "positive", "expected": "yes"}]}  # fmt: skip
    refused = await http.post(f"/v1/episodes/{episode_id}/drug-screens", json=screen, headers=CLINICIAN)
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "results", 0, "expected"]
    as_number = screen | {"collected_at": 1764000000, "results": [{"substance": "fentanyl", "result": "negative"}]}
    refused = await http.post(f"/v1/episodes/{episode_id}/drug-screens", json=as_number, headers=CLINICIAN)
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "collected_at"]


async def test_a_patient_keeps_a_name_and_a_zone_the_server_knows(http: httpx.AsyncClient) -> None:
    patient_id = await register(http)
    nameless = await http.patch(f"/v1/patients/{patient_id}", json={"name": None}, headers=STAFF)
    assert nameless.status_code == 422 and nameless.json()["detail"][0]["loc"] == ["body", "name"]
    nothing = await http.patch(f"/v1/patients/{patient_id}", json={}, headers=STAFF)
    assert nothing.status_code == 422
    unlisted = await http.patch(f"/v1/patients/{patient_id}", json={"timezone": "posix/Europe/Paris"}, headers=STAFF)
    assert unlisted.status_code == 422 and unlisted.json()["detail"][0]["loc"] == ["body", "timezone"]
    read = await http.get(f"/v1/patients/{patient_id}", headers=STAFF)
    assert (read.json()["name"], read.json()["timezone"]) == (PATIENT["name"], None)


async def test_an_email_address_that_cannot_receive_mail_is_refused_by_its_own_rule(http: httpx.AsyncClient) -> None:
    refused = await http.post("/v1/patients", json=PATIENT | {"email": "alex@example.test"}, headers=STAFF)
    assert refused.status_code == 422
    assert [(e["loc"], e["type"]) for e in refused.json()["detail"]] == [(["body", "email"], "email_address")]
    assert "example.test" not in refused.text
    spec = APP.openapi()
    assert "email_address" in spec["paths"]["/v1/patients"]["post"]["x-rules"]
