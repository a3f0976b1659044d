"""Measures between assessments, their series and outcomes across episodes, in intake in-process (issue 24)."""

from __future__ import annotations

from typing import Any

import httpx

from services.common.auth import Role
from services.intake.store import EPISODES, IntakeStore
from tests.service.conftest import as_role, queued
from tests.service.intake.helpers import ADMIN, CLINICIAN, NOTIFICATIONS, STAFF, assess, new_episode
from tests.service.memory_mongo import MemoryDatabase

INTEGRATION = as_role(Role.INTEGRATION)
PHQ9_16 = [2] * 8 + [0]
PHQ9_8 = [1] * 8 + [0]
PHQ9_ITEM9 = [1] * 8 + [1]


async def measure(http: httpx.AsyncClient, episode_id: str, instruments: dict[str, Any], **headers: str) -> Any:
    response = await http.post(f"/v1/episodes/{episode_id}/measures", json={"instruments": instruments},
                               headers=headers or STAFF)  # fmt: skip
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_measure_is_compared_with_the_assessments_baseline_and_published_in_the_same_write(
    http: httpx.AsyncClient, database: MemoryDatabase
) -> None:
    _, episode_id = await new_episode(http)
    assessment = await assess(http, episode_id, {"phq9": PHQ9_16})
    recorded = await measure(http, episode_id, {"phq9": PHQ9_8, "gad7": [1] * 7})
    phq9, gad7 = recorded["changes"]
    assert (phq9["score"], phq9["baseline_score"], phq9["previous_score"]) == (8, 16, 16)
    assert (phq9["classification"], phq9["recovered"], phq9["response"]) == ("reliable_improvement", True, True)
    assert (gad7["classification"], gad7["baseline_score"]) == ("baseline", 7)
    published = [(t, d) for t, d in await queued(database[EPISODES]) if t == "iop.measure.recorded"]
    assert [(d["source"], d["measure_id"]) for _, d in published] == [
        ("assessment", assessment["assessment_id"]), ("measure", recorded["measure_id"])]  # fmt: skip
    assert published[1][1]["instruments"] == recorded["changes"]
    assert "items" not in str(published) and "[1, 1" not in str(published)  # scores, never the answers


async def test_measures_take_the_same_validation_as_an_assessment_and_only_its_roles(
    http: httpx.AsyncClient, database: MemoryDatabase
) -> None:
    _, episode_id = await new_episode(http)
    path = f"/v1/episodes/{episode_id}/measures"
    out_of_range = await http.post(path, json={"instruments": {"phq9": [4] * 9}}, headers=STAFF)
    assert out_of_range.status_code == 422 and out_of_range.json()["detail"][0]["loc"][:3] == [
        "body",
        "instruments",
        "phq9",
    ]
    empty = await http.post(path, json={"instruments": {}}, headers=STAFF)
    assert empty.status_code == 422 and empty.json()["detail"][0]["loc"] == ["body", "instruments"]
    dimensions = await http.post(path, json={"instruments": {"gad7": [0] * 7}, "dimensions": {}}, headers=STAFF)
    assert dimensions.status_code == 422 and dimensions.json()["detail"][0]["loc"] == ["body", "dimensions"]
    for role, expected in ((CLINICIAN, 201), (INTEGRATION, 201), (NOTIFICATIONS, 403), (ADMIN, 403)):
        answered = await http.post(path, json={"instruments": {"gad7": [0] * 7}}, headers=role)
        assert answered.status_code == expected
    unknown = await http.post("/v1/episodes/nobody/measures", json={"instruments": {"gad7": [0] * 7}}, headers=STAFF)
    assert unknown.status_code == 404


async def test_a_safety_answer_in_a_measure_raises_the_alert_first_as_an_assessment_does(
    http: httpx.AsyncClient, database: MemoryDatabase
) -> None:
    _, episode_id = await new_episode(http)
    recorded = await measure(http, episode_id, {"phq9": PHQ9_ITEM9})
    assert recorded["safety_alert"]["level"] == "same_day"
    (alert_topic, alert), (measure_topic, _) = await queued(database[EPISODES])
    assert (alert_topic, measure_topic) == ("iop.safety.alert_raised", "iop.measure.recorded")
    assert (alert["assessment_id"], alert["reasons"]) == (recorded["measure_id"], ["phq9_item9_positive"])


async def test_idempotency_key_gives_the_first_measure_again_and_a_closed_episode_still_takes_measures(
    http: httpx.AsyncClient, database: MemoryDatabase, store: IntakeStore
) -> None:
    _, episode_id = await new_episode(http)
    first = await measure(http, episode_id, {"gad7": [2] * 7}, **STAFF, **{"Idempotency-Key": "k-1"})
    again = await measure(http, episode_id, {"gad7": [2] * 7}, **STAFF, **{"Idempotency-Key": "k-1"})
    assert again == first and len(await queued(database[EPISODES])) == 1
    stored = await store.get(episode_id)
    assert stored is not None
    assert await store.save(stored, stored.episode.model_copy(update={"status": "closed"}))
    alumni = await measure(http, episode_id, {"gad7": [0] * 7})
    assert alumni["changes"][0]["classification"] == "reliable_improvement"


async def test_the_series_per_instrument_is_audited_with_the_person(http: httpx.AsyncClient) -> None:
    patient_id, episode_id = await new_episode(http)
    await assess(http, episode_id, {"phq9": PHQ9_16})
    await measure(http, episode_id, {"phq9": PHQ9_8})
    read = await http.get(f"/v1/episodes/{episode_id}/measures", headers=CLINICIAN)
    assert read.status_code == 200
    [phq9] = read.json()["series"]
    assert [(p["source"], p["score"], p["classification"]) for p in phq9["points"]] == [
        ("assessment", 16, "baseline"), ("measure", 8, "reliable_improvement")]  # fmt: skip
    assert (phq9["reliable_change"], phq9["caseness"]) == (6, 10)  # the policy's, for a chart's band and cut-off
    audit = await http.get("/v1/audit", params={"patient_id": patient_id, "action": "read_measures"}, headers=ADMIN)
    assert [entry["role"] for entry in audit.json()] == ["clinician"]
    assert (await http.get(f"/v1/episodes/{episode_id}/measures", headers=NOTIFICATIONS)).status_code == 403


async def _improved_episode(http: httpx.AsyncClient, after: list[int]) -> None:
    _, episode_id = await new_episode(http, confirm_new=True)
    await measure(http, episode_id, {"phq9": PHQ9_16})
    await measure(http, episode_id, {"phq9": after})


async def test_outcomes_show_shares_and_median_change_without_a_person_and_suppress_small_groups(
    http: httpx.AsyncClient,
) -> None:
    for _ in range(4):
        await _improved_episode(http, PHQ9_8)
    small = await http.get("/v1/outcomes", params={"program": "adult"}, headers=CLINICIAN)
    assert small.status_code == 200
    hidden = dict.fromkeys(["reliable_improvement", "reliable_deterioration", "recovered", "median_change"])
    assert small.json()["instruments"] == [{"instrument": "phq9", "episodes": None, "suppressed": True, **hidden}]
    await _improved_episode(http, [3] * 8 + [0])  # 24: a reliable deterioration
    shown = (await http.get("/v1/outcomes", params={"program": "adult"}, headers=ADMIN)).json()
    [phq9] = shown["instruments"]
    assert (phq9["episodes"], phq9["suppressed"], phq9["reliable_improvement"]) == (5, False, 0.8)
    assert (phq9["reliable_deterioration"], phq9["recovered"], phq9["median_change"]) == (0.2, 0.8, -8.0)
    assert "episode_id" not in str(shown) and "patient" not in str(shown)
    later = (await http.get("/v1/outcomes", params={"from": "2999-01-01T00:00:00Z"}, headers=ADMIN)).json()
    assert later["instruments"] == []
    assert (await http.get("/v1/outcomes", headers=STAFF)).status_code == 403
