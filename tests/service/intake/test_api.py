"""intake's HTTP API in-process: the probes, Idempotency-Key, bounded lists, a store refusing a write, and what the
OpenAPI document says the bodies take."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from pymongo.errors import DocumentTooLarge, WriteError

from services.common.auth import Role
from services.common.idempotency import IdempotencyKeys
from services.intake.domain.model import MOST_ASSESSMENTS
from services.intake.store import EPISODES, IntakeStore
from tests.service.conftest import api as client_of
from tests.service.conftest import as_role, queued
from tests.service.intake.helpers import (
    ALUMNI,
    APP,
    CLINICIAN,
    CSSRS_HIGH,
    FAMILY,
    FAMILY_EMAIL,
    IOP_DIMENSIONS,
    MEASURES,
    NOTIFICATIONS,
    PATIENT,
    PHQ9_MODERATE,
    POLICY,
    SCREEN,
    SETTINGS,
    STAFF,
    assess,
    grant,
    new_episode,
    queued_but_measures,
    register,
)
from tests.service.memory_mongo import MemoryDatabase


async def topics(database: MemoryDatabase) -> list[str]:
    return [topic for topic, _ in await queued(database[EPISODES])]


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
    state = {"store": store, "placement_policy": POLICY, "measures_policy": MEASURES,
             "outcomes_settings": SETTINGS.outcomes, "readiness_checks": checks,
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


async def test_an_assessments_key_is_kept_in_its_episode_by_the_assessments_own_write(
    http: httpx.AsyncClient, database: MemoryDatabase
) -> None:
    _, episode_id = await new_episode(http)
    path, body = f"/v1/episodes/{episode_id}/assessments", {"dimensions": IOP_DIMENSIONS}
    key = {"Idempotency-Key": str(uuid.uuid4())}
    racing = await asyncio.gather(*(http.post(path, json=body, headers=CLINICIAN | key) for _ in "ab"))
    retried = await http.post(path, json=body, headers=CLINICIAN | key)
    assert [a.status_code for a in [*racing, retried]] == [201] * 3
    assert racing[0].json() == racing[1].json() == retried.json()
    other_body = await http.post(path, json={"dimensions": IOP_DIMENSIONS | {"readiness": 3}}, headers=CLINICIAN | key)
    assert other_body.status_code == 422 and other_body.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert await database["idempotency_keys"].count_documents({}) == 0  # no round trip of its own
    stored = await database[EPISODES].find_one({"_id": episode_id})
    assert stored is not None and len(stored["assessments"]) == 1 and len(stored["idempotency_keys"]) == 1


async def test_an_episode_stored_before_keys_were_kept_in_it_finds_the_key_kept_apart(
    http: httpx.AsyncClient, database: MemoryDatabase
) -> None:
    _, episode_id = await new_episode(http)
    # (as a writer does: a new version; this instance's hint of the episode as it wrote it is then stale)
    await database[EPISODES].update_one({"_id": episode_id}, {"$unset": {"idempotency_keys": ""},
                                                              "$inc": {"version": 1}})  # fmt: skip
    path, body = f"/v1/episodes/{episode_id}/assessments", {"dimensions": IOP_DIMENSIONS}
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = await http.post(path, json=body, headers=CLINICIAN | key)
    assert await database["idempotency_keys"].count_documents({}) == 1  # asked where it was kept before
    retried = await http.post(path, json=body, headers=CLINICIAN | key)  # now found in the episode
    assert first.status_code == retried.status_code == 201 and first.json() == retried.json()
    stored = await database[EPISODES].find_one({"_id": episode_id})
    assert stored is not None and len(stored["assessments"]) == 1 and len(stored["idempotency_keys"]) == 1
    # a request of before, its key kept apart only, retried after another's key was kept in the episode
    await database[EPISODES].update_one({"_id": episode_id}, {"$set": {"idempotency_keys": {}}, "$inc": {"version": 1}})
    again = await http.post(path, json=body, headers=CLINICIAN | key)
    assert again.status_code == 201 and again.json() == first.json()
    stored = await database[EPISODES].find_one({"_id": episode_id})
    assert stored is not None and len(stored["assessments"]) == 1


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
    many = (("scope", "appointments"),) * 6
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
    assert len(await queued_but_measures(database[EPISODES])) == 1  # the first assessment's event only


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
