"""Consents in intake in-process: granted, revoked and listed, what notifications asks of them, and a refused
change not audited as one that happened."""

from __future__ import annotations

import httpx

from services.intake.store import EPISODES, IntakeStore
from tests.service.conftest import queued
from tests.service.intake.helpers import (
    ADMIN,
    ALUMNI,
    CLINICIAN,
    FAMILY,
    FAMILY_EMAIL,
    NOTIFICATIONS,
    STAFF,
    grant,
    new_episode,
)
from tests.service.memory_mongo import MemoryDatabase

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


async def test_the_audiences_of_several_episodes_in_one_answer_as_each_alone_and_audited_alike(
    http: httpx.AsyncClient, database: MemoryDatabase
) -> None:
    """What notifications asks for a consumer batch at once: each question answered as the one-episode lookup answers
    it, in the order asked (null for an episode intake does not know), the same audit entries."""
    patient_id, episode_id = await new_episode(http)
    family = await grant(http, episode_id, FAMILY)
    other_patient, other = await new_episode(http, date_of_birth="1985-02-03")
    questions = [
        {"episode_id": episode_id, "scope": ["appointments"]},
        {"episode_id": "nobody"},
        {"episode_id": other, "patient_channels": True, "patient_contact": True},
    ]
    database.calls.clear()
    answer = await http.post("/v1/audiences", json={"episodes": questions}, headers=NOTIFICATIONS)
    assert answer.status_code == 200
    reads = [call for call in database.calls if call[0] == "find"]
    assert reads == [("find", "episodes"), ("find", "patients")]  # each collection read once for all the questions
    lone = {"patient_channels": "true", "patient_contact": "true"}
    alone = [
        (await http.get(f"/v1/episodes/{episode_id}/audience", params={"scope": "appointments"},
                        headers=NOTIFICATIONS)).json(),
        None,
        (await http.get(f"/v1/episodes/{other}/audience", params=lone, headers=NOTIFICATIONS)).json(),
    ]  # fmt: skip
    assert answer.json() == {"audiences": alone}
    assert answer.json()["audiences"][0]["recipients"]["appointments"][0]["consent_id"] == family["consent_id"]
    for patient, action in ((patient_id, "read_recipients"), (other_patient, "read_contact")):
        audit = await http.get("/v1/audit", params={"patient_id": patient, "action": action}, headers=ADMIN)
        assert len(audit.json()) == 2  # the batch's read and the lone one's

    assert (await http.post("/v1/audiences", json={"episodes": questions}, headers=CLINICIAN)).status_code == 403
    empty = await http.post("/v1/audiences", json={"episodes": []}, headers=NOTIFICATIONS)
    assert empty.status_code == 422 and empty.json()["detail"][0]["loc"] == ["body", "episodes"]
    bad = await http.post("/v1/audiences", json={"episodes": [{"episode_id": other, "scope": ["gossip"]}]},
                          headers=NOTIFICATIONS)  # fmt: skip
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "episodes", 0, "scope", 0]


async def test_episode_patient(http: httpx.AsyncClient) -> None:
    patient_id, episode_id = await new_episode(http)
    found = await http.get(f"/v1/episodes/{episode_id}/patient", headers=NOTIFICATIONS)
    assert found.status_code == 200 and found.json() == {"episode_id": episode_id, "patient_id": patient_id}
    clinician = await http.get(f"/v1/episodes/{episode_id}/patient", headers=CLINICIAN)
    assert clinician.status_code == 403
    missing = await http.get("/v1/episodes/nobody/patient", headers=NOTIFICATIONS)
    assert missing.status_code == 404


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


async def test_the_welcomes_audience_brings_the_patients_contact_in_one_audited_read(
    http: httpx.AsyncClient, database: MemoryDatabase
) -> None:
    """What the welcome needs in one request: who else may hear, the patient's channels and their contact (audited as
    the contact lookup is): the episode, the audit entry and the patient read once."""
    patient_id, episode_id = await new_episode(http)
    asked = {"patient_channels": "true", "patient_contact": "true"}
    database.calls.clear()
    answer = await http.get(f"/v1/episodes/{episode_id}/audience", params=asked, headers=NOTIFICATIONS)
    assert answer.status_code == 200
    contact = (await http.get(f"/v1/episodes/{episode_id}/contact", headers=NOTIFICATIONS)).json()
    assert answer.json()["patient_contact"] == contact and answer.json()["patient_channels"] == ["email", "sms"]
    first, then = database.calls[:3], database.calls[3:]
    assert first == [("find", "episodes"), ("insert", "audit_log"), ("find", "patients")]
    assert then == [("insert", "audit_log"), ("find", "patients")]  # the contact lookup: the episode's patient known
    audit = await http.get("/v1/audit", params={"patient_id": patient_id, "action": "read_contact"}, headers=ADMIN)
    assert [e["role"] for e in audit.json()] == ["notifications", "notifications"]
