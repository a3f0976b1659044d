"""Assessments and drug screens in intake in-process: recorded, queued as events, read by name and audited, and
the episode's track they carry."""

from __future__ import annotations

import httpx

from services.common.auth import Role
from services.intake.store import EPISODES, IntakeStore
from tests.service.conftest import as_role, queued
from tests.service.intake.helpers import (
    ADMIN,
    CLINICIAN,
    CSSRS_HIGH,
    FAMILY,
    IOP_DIMENSIONS,
    NOTIFICATIONS,
    PHQ9_MODERATE,
    SCREEN,
    STAFF,
    assess,
    new_episode,
    queued_but_measures,
    register,
)
from tests.service.memory_mongo import MemoryDatabase

# Assessments


async def test_record_assessment(http: httpx.AsyncClient, database: MemoryDatabase) -> None:
    _, episode_id = await new_episode(http)
    assessment = await assess(http, episode_id, {"phq9": PHQ9_MODERATE})
    assert (assessment["kind"], assessment["recommended_level"], assessment["refer_out"]) == ("intake", "IOP", False)
    assert [(r["instrument"], r["total"], r["band"]) for r in assessment["instruments"]] == [("phq9", 11, "moderate")]
    assert assessment["safety_alert"] is None and assessment["rationale"][-1]["code"] == "recommended_level"
    [(topic, data)] = await queued_but_measures(database[EPISODES])
    assert topic == "iop.assessment.completed" and data["assessment_id"] == assessment["assessment_id"]
    path = f"/v1/episodes/{episode_id}/assessments"
    out_of_range = {"dimensions": IOP_DIMENSIONS, "instruments": {"phq9": [4] * 9}}
    refused = await http.post(path, json=out_of_range, headers=STAFF)
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"][:3] == ["body", "instruments", "phq9"]
    unknown = await http.post("/v1/episodes/nobody/assessments", json={"dimensions": IOP_DIMENSIONS}, headers=STAFF)
    assert unknown.status_code == 404
    assert len(await queued_but_measures(database[EPISODES])) == 1


async def test_a_high_risk_cssrs_answer_queues_the_safety_alert_before_the_assessment(
    http: httpx.AsyncClient, database: MemoryDatabase
) -> None:
    _, episode_id = await new_episode(http)
    assessment = await assess(http, episode_id, {"phq9": PHQ9_MODERATE, "cssrs": CSSRS_HIGH})
    assert assessment["safety_alert"]["level"] == "immediate"
    assert assessment["safety_alert"]["reasons"] == ["cssrs_high_risk"]
    assert assessment["recommended_level"] == "INPATIENT" and assessment["refer_out"] is True
    (alert_topic, alert), (completed_topic, completed) = await queued_but_measures(database[EPISODES])
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
    published = [
        data for topic, data in await queued_but_measures(database[EPISODES]) if topic == "iop.assessment.completed"
    ]
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
    assert await queued_but_measures(database[EPISODES]) == []  # refused: nothing stored, nothing queued
    chosen = await http.post(path, json={"dimensions": IOP_DIMENSIONS, "placement": placement}, headers=CLINICIAN)
    assert chosen.status_code == 201, chosen.text
    assert (chosen.json()["recommended_level"], chosen.json()["placement"]["chosen_level"]) == ("IOP", "OP")
    [(_, completed)] = await queued_but_measures(database[EPISODES])
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
    [(topic, data)] = await queued_but_measures(database[EPISODES])
    assert topic == "iop.drug_screen.recorded" and data["screen_id"] == recorded.json()["screen_id"]
    assert data["unexpected_positive"] is True
    future = await http.post(path, json=body | {"collected_at": "2999-01-01T00:00:00Z"}, headers=CLINICIAN)
    assert future.status_code == 422 and future.json()["detail"][0]["loc"] == ["body", "collected_at"]
    twice = await http.post(path, json=body | {"results": [body["results"][0]] * 2}, headers=CLINICIAN)
    assert twice.status_code == 422
    unknown = await http.post("/v1/episodes/nobody/drug-screens", json=body, headers=CLINICIAN)
    assert unknown.status_code == 404
    assert len(await queued_but_measures(database[EPISODES])) == 1


async def test_an_expected_positive_is_not_unexpected(http: httpx.AsyncClient, database: MemoryDatabase) -> None:
    _, episode_id = await new_episode(http)
    prescribed = {"substance": "buprenorphine", "result": "positive", "expected": True}
    body = {"collected_at": "2026-01-20T14:05:00Z", "results": [prescribed]}
    recorded = await http.post(f"/v1/episodes/{episode_id}/drug-screens", json=body, headers=CLINICIAN)
    assert recorded.status_code == 201 and recorded.json()["unexpected_positive"] is False
    [(_, data)] = await queued_but_measures(database[EPISODES])
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
    assert await queued_but_measures(database[EPISODES]) == []


# Drug screens and assessments are read by name: audited with the person, like contact data


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
        [completed] = [d for t, d in await queued_but_measures(database[EPISODES]) if d["episode_id"] == episode_id]
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


async def test_a_preview_answers_what_recording_would_give_and_records_nothing(
    http: httpx.AsyncClient, database: MemoryDatabase
) -> None:
    _, episode_id = await new_episode(http)
    path = f"/v1/episodes/{episode_id}/assessments"
    instruments = {"phq9": PHQ9_MODERATE, "cssrs": CSSRS_HIGH}
    body = {"dimensions": IOP_DIMENSIONS, "instruments": instruments}
    preview = await http.post(f"{path}/preview", json=body, headers=CLINICIAN)
    assert preview.status_code == 200, preview.text
    seen = preview.json()
    assert seen["safety_alert"] == {"level": "immediate", "reasons": ["cssrs_high_risk"]}
    assert await queued(database[EPISODES]) == [] and (await http.get(path, headers=STAFF)).json()["assessments"] == []
    recorded = await assess(http, episode_id, instruments)
    fields = ("kind", "instruments", "recommended_level", "refer_out", "rationale", "policy_version", "dimensions")
    assert {name: seen[name] for name in fields} == {name: recorded[name] for name in fields}
    assert recorded["safety_alert"]["level"] == "immediate"
    again = (await http.post(f"{path}/preview", json=body, headers=STAFF)).json()
    assert again["kind"] == "reassessment"  # the episode's second would be a reassessment
    placed = body | {"placement": {"chosen_level": "OP", "reason_code": "patient_preference"}}
    assert (await http.post(f"{path}/preview", json=placed, headers=CLINICIAN)).status_code == 422
    assert (await http.post("/v1/episodes/nobody/assessments/preview", json=body, headers=STAFF)).status_code == 404
    assert (await http.post(f"{path}/preview", json=body, headers=NOTIFICATIONS)).status_code == 403
