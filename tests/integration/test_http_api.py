"""The HTTP APIs: health without auth, bearer tokens and roles, clear 4xx errors that store nothing."""

from __future__ import annotations

import pytest

from .conftest import (
    IOP_DIMENSIONS,
    TOKENS,
    Episode,
    Stack,
    assess,
    care_plan_of,
    eventually,
    new_episode,
    session_ids,
)

SERVICES = ("intake", "care_plan", "notifications")


@pytest.mark.parametrize("service", SERVICES)
async def test_health_needs_no_token(stack: Stack, service: str) -> None:
    async with stack.http(service, role=None) as client:
        assert (await client.get("/health/live")).json() == {"status": "live"}
        ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"mongodb": True, "kafka": True}}


@pytest.mark.parametrize(
    ("service", "method", "path"),
    [
        ("intake", "POST", "/v1/patients"),
        ("intake", "GET", "/v1/episodes/x/contact"),
        ("care_plan", "GET", "/v1/episodes/x/care-plan"),
        ("care_plan", "POST", "/v1/episodes/x/sessions/s001/attendance"),
        ("notifications", "GET", "/v1/notifications"),
        ("notifications", "POST", "/v1/opt-outs"),
        ("notifications", "POST", "/v1/sms/inbound"),
        ("notifications", "GET", "/v1/alumni"),
        ("care_plan", "GET", "/v1/set-aside-events"),
    ],
)
async def test_every_endpoint_needs_a_valid_token(stack: Stack, service: str, method: str, path: str) -> None:
    async with stack.http(service, role=None) as client:
        missing = await client.request(method, path, json={})
        wrong = await client.request(method, path, json={}, headers={"Authorization": "Bearer not-a-token"})
    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert missing.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("service", "role", "method", "path"),
    [
        ("intake", "notifications", "POST", "/v1/patients"),
        ("intake", "integration", "POST", "/v1/patients"),
        ("intake", "clinician", "GET", "/v1/episodes/x/contact"),
        ("intake", "admin", "GET", "/v1/episodes/x/contact"),
        ("care_plan", "notifications", "GET", "/v1/episodes/x/care-plan"),
        ("care_plan", "admin", "POST", "/v1/episodes/x/sessions/s001/attendance"),
        ("care_plan", "clinician", "GET", "/v1/set-aside-events"),
        ("notifications", "notifications", "GET", "/v1/notifications"),
        ("notifications", "sms_provider", "POST", "/v1/opt-outs"),
        ("notifications", "admin", "POST", "/v1/sms/inbound"),
        ("notifications", "sms_provider", "GET", "/v1/alumni"),
        ("intake", "clinician", "GET", "/v1/episodes/x/patient"),
    ],
)
async def test_wrong_role_is_forbidden(stack: Stack, service: str, role: str, method: str, path: str) -> None:
    async with stack.http(service, role) as client:
        response = await client.request(method, path, json={})
    assert response.status_code == 403
    assert role in response.json()["detail"]


async def _patient_count(stack: Stack) -> int:
    return await stack.database("intake")["patients"].count_documents({})  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("change", "location"),
    [
        ({"email": "not-an-email"}, ["body", "email"]),
        ({"date_of_birth": "2999-01-01"}, ["body", "date_of_birth"]),
        ({"phone": "call me"}, ["body", "phone"]),
        ({"name": ""}, ["body", "name"]),
        ({"nickname": "x"}, ["body", "nickname"]),
    ],
)
async def test_bad_patient_is_rejected_naming_the_field_and_not_stored(
    stack: Stack, change: dict[str, str], location: list[str]
) -> None:
    body = {"name": "Valid Name", "date_of_birth": "1990-01-01", "email": "v@example.org", "phone": "+12025550100"}
    before = await _patient_count(stack)
    async with stack.http("intake", "intake_staff") as intake:
        response = await intake.post("/v1/patients", json=body | change)
    assert response.status_code == 422
    assert location in [error["loc"] for error in response.json()["detail"]]
    assert await _patient_count(stack) == before


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"dimensions": {**IOP_DIMENSIONS, "withdrawal": 5}}, ["body", "dimensions", "withdrawal"]),
        ({"dimensions": {**IOP_DIMENSIONS, "withdrawl": 1}}, ["body", "dimensions", "withdrawl"]),
        (
            {"dimensions": {k: v for k, v in IOP_DIMENSIONS.items() if k != "relapse"}},
            ["body", "dimensions", "relapse"],
        ),
        ({"dimensions": IOP_DIMENSIONS, "instruments": {"phq9": [0] * 8}}, ["body", "instruments", "phq9"]),
        ({"dimensions": IOP_DIMENSIONS, "instruments": {"phq9": [0] * 8 + [4]}}, ["body", "instruments", "phq9", 8]),
        ({"dimensions": IOP_DIMENSIONS, "instruments": {"gad7": [0] * 6 + [-1]}}, ["body", "instruments", "gad7", 6]),
        ({"dimensions": IOP_DIMENSIONS, "instruments": {"madrs": [1]}}, ["body", "instruments", "madrs"]),
    ],
)
async def test_bad_assessment_is_rejected_naming_the_field_and_not_stored(
    stack: Stack, body: dict[str, object], location: list[object]
) -> None:
    episode = await new_episode(stack)
    async with stack.http("intake", "clinician") as intake:
        response = await intake.post(f"/v1/episodes/{episode.episode_id}/assessments", json=body)
    assert response.status_code == 422
    assert location in [error["loc"] for error in response.json()["detail"]]
    stored = await stack.database("intake")["episodes"].find_one({"_id": episode.episode_id})
    assert (stored["assessments"], stored["outbox_pending"]) == ([], 0)


async def test_unknown_patient_and_episode_are_404(stack: Stack) -> None:
    async with stack.http("intake", "intake_staff") as intake:
        assert (await intake.post("/v1/patients/nope/episodes", json={"program": "adult"})).status_code == 404
        assessment = await intake.post("/v1/episodes/nope/assessments", json={"dimensions": IOP_DIMENSIONS})
        assert assessment.status_code == 404
        assert (await intake.post("/v1/patients/x/episodes", json={"program": "teen"})).status_code == 422
    async with stack.http("care_plan") as care_plan:
        assert (await care_plan.get("/v1/episodes/nope/care-plan")).status_code == 404


async def _active_episode(stack: Stack) -> Episode:
    episode = await new_episode(stack)
    await assess(stack, episode)
    await eventually(lambda: care_plan_of(stack, episode), "the care plan")
    return episode


async def test_attendance_errors_are_clear_and_change_nothing(stack: Stack) -> None:
    episode = await _active_episode(stack)
    first, *_ = await session_ids(stack, episode)
    path = f"/v1/episodes/{episode.episode_id}/sessions/{{}}/attendance"
    async with stack.http("care_plan", "intake_staff") as care_plan:
        unknown = await care_plan.post(path.format("s999"), json={"status": "missed"})
        bad_status = await care_plan.post(path.format(first), json={"status": "absent"})
        no_plan = await care_plan.post(f"/v1/episodes/nope/sessions/{first}/attendance", json={"status": "missed"})
    assert (unknown.status_code, "s999" in unknown.json()["detail"]) == (404, True)
    assert bad_status.status_code == 422
    assert ["body", "status"] in [error["loc"] for error in bad_status.json()["detail"]]
    assert no_plan.status_code == 404
    plan = await care_plan_of(stack, episode)
    assert plan is not None and plan["attendance"] == {}


async def test_attendance_on_a_referred_out_episode_is_409(stack: Stack) -> None:
    episode = await new_episode(stack)
    await assess(stack, episode, {**IOP_DIMENSIONS, "biomedical": 4})
    await eventually(lambda: care_plan_of(stack, episode), "the care plan")
    async with stack.http("care_plan", "clinician") as care_plan:
        response = await care_plan.post(
            f"/v1/episodes/{episode.episode_id}/sessions/iop-am-20261207/attendance", json={"status": "attended"}
        )
    assert response.status_code == 409
    assert "referred_out" in response.json()["detail"]


async def test_contact_lookup_is_for_notifications_only_and_audited(stack: Stack) -> None:
    episode = await new_episode(stack)
    async with stack.http("intake", "notifications") as intake:
        response = await intake.get(f"/v1/episodes/{episode.episode_id}/contact")
    assert response.json() == {"email": episode.email, "phone": episode.pii["phone"], "timezone": None}
    audit = stack.database("intake")["audit_log"]
    entries = [doc async for doc in audit.find({"patient_id": episode.patient_id}).sort("at", 1)]
    assert [(entry["action"], entry["role"]) for entry in entries] == [
        ("create_patient", "intake_staff"),
        ("read_contact", "notifications"),
    ]
    assert all(TOKENS[entry["role"]] not in str(entry) for entry in entries)  # fingerprints, not tokens
