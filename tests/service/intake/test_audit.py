"""intake's PII audit in-process: every read and change of a patient's data, with the person."""

from __future__ import annotations

import httpx

from services.common.auth import Principal, Role
from services.common.auth import fingerprint as fingerprint_of
from tests.service.conftest import TOKENS
from tests.service.intake.helpers import ADMIN, CLINICIAN, FAMILY, NOTIFICATIONS, STAFF, grant, new_episode, register


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


async def test_the_audit_of_a_static_token_is_found_by_its_fingerprint_as_the_console_names_it(
    http: httpx.AsyncClient,
) -> None:
    """A static token names no person: its holder is ``token:<fingerprint>`` (``Principal.who``, the console's
    "Signed in as"), and the audit by person finds their entries by it."""
    patient_id, _ = await new_episode(http)
    await http.get(f"/v1/patients/{patient_id}", headers=CLINICIAN)
    fingerprint = Principal(Role.CLINICIAN, fingerprint_of(TOKENS[Role.CLINICIAN])).who
    entries = await http.get("/v1/audit", params={"person": fingerprint}, headers=ADMIN)
    assert entries.status_code == 200 and [(e["action"], e["role"]) for e in entries.json()] == [
        ("read_patient", "clinician")]  # fmt: skip
    assert (await http.get("/v1/audit", params={"person": "token:nobody"}, headers=ADMIN)).json() == []
