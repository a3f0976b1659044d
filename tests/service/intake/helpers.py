"""The intake tier's set-up: its settings, policy and app, a patient and the requests most tests make."""

from __future__ import annotations

from typing import Any

import httpx

from services.common.auth import Role
from services.intake import api, lookup_api, web
from services.intake.domain.measures import load_measures_policy
from services.intake.domain.placement import load_placement_policy
from services.intake.settings import IntakeSettings
from tests.service.conftest import as_role, queued, service_app
from tests.service.memory_mongo import MemoryCollection

SETTINGS = IntakeSettings(_env_file=None)
POLICY = load_placement_policy(SETTINGS.intake_placement_policy_file)
MEASURES = load_measures_policy(SETTINGS.intake_measures_policy_file)
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
APP = service_app("intake", [api.router, lookup_api.router, web.router], consumes=True)
"""One app for the tier (each test sets its state): recording an answer reads the app's OpenAPI document,
which FastAPI builds once per app."""


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


SCREEN: dict[str, Any] = {
    "collected_at": "2026-01-20T14:05:00Z",
    "results": [{"substance": "fentanyl", "result": "negative"}],
}


async def queued_but_measures(collection: MemoryCollection) -> list[tuple[str, dict[str, Any]]]:
    """The queued events (``queued``) but ``iop.measure.recorded``, which every scored assessment adds last
    (tests/service/intake/test_measures.py)."""
    return [(topic, data) for topic, data in await queued(collection) if topic != "iop.measure.recorded"]
