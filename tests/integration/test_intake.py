"""Intake as a clinic uses it: instruments, placement, safety alerts, reassessment, drug screens, consents, audit."""

from __future__ import annotations

import subprocess
import sys
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import yaml

from stepwise_contract import DrugScreenRecorded, from_kafka
from tools.dev.devstack import ROOT

from .conftest import (
    CARE_TEAM_EMAIL,
    CSSRS_HIGH,
    HTTP_TIMEOUT,
    IOP_DIMENSIONS,
    TOKENS,
    Episode,
    Stack,
    assess,
    at_least,
    care_plan_of,
    events,
    events_of,
    eventually,
    instance_beside,
    mail_to,
    new_episode,
    wait_consumed,
)

PHQ9_ITEM9_POSITIVE = [1, 1, 1, 1, 1, 1, 1, 1, 1]


async def post_assessment(stack: Stack, episode: Episode, body: dict[str, Any], role: str = "intake_staff") -> Any:
    async with stack.http("intake", role) as intake:
        return await intake.post(f"/v1/episodes/{episode.episode_id}/assessments", json=body)


async def test_safety_alert_is_published_on_its_own_topic_before_the_assessment(stack: Stack) -> None:
    episode = await new_episode(stack)
    body = {"dimensions": IOP_DIMENSIONS, "instruments": {"phq9": PHQ9_ITEM9_POSITIVE, "cssrs": CSSRS_HIGH}}
    response = await post_assessment(stack, episode, body)
    assert response.status_code == 201, response.text
    assessment = response.json()
    assert assessment["safety_alert"]["level"] == "immediate"
    assert sorted(assessment["safety_alert"]["reasons"]) == ["cssrs_high_risk", "phq9_item9_positive"]

    [alert] = await eventually(lambda: events(stack, "iop.safety.alert_raised", episode), "the safety alert")
    [completed] = await eventually(lambda: events(stack, "iop.assessment.completed", episode), "the assessment")
    assert (alert.data.level, alert.data.assessment_id) == ("immediate", assessment["assessment_id"])
    assert alert.time <= completed.time
    # Two topics: offsets cannot order them, and CloudEvent time is set when the events are decided. The record
    # timestamps are set when the relay publishes (CreateTime, by the producer; or the broker's LogAppendTime),
    # the completion only after the alert was acknowledged.
    [raw] = await events_of(stack, "iop.safety.alert_raised", episode.episode_id)
    [raw_completed] = await events_of(stack, "iop.assessment.completed", episode.episode_id)
    assert raw.timestamp <= raw_completed.timestamp, (raw.timestamp, raw_completed.timestamp)
    assert b"q4" not in raw.value and b"items" not in raw.value  # reason codes, never the answers
    assert completed.data.recommended_level.value == "INPATIENT"  # the C-SSRS rule raised it


async def test_no_alert_without_a_safety_answer(stack: Stack) -> None:
    episode = await new_episode(stack)
    response = await post_assessment(stack, episode, {"dimensions": IOP_DIMENSIONS, "instruments": {"phq9": [0] * 9}})
    assert response.json()["safety_alert"] is None
    await eventually(lambda: events(stack, "iop.assessment.completed", episode), "the assessment")
    assert await events(stack, "iop.safety.alert_raised", episode) == []


async def test_reassessment_carries_changes_and_history_shows_trends(stack: Stack) -> None:
    episode = await new_episode(stack)
    first = await post_assessment(
        stack, episode, {"dimensions": IOP_DIMENSIONS, "instruments": {"phq9": [2] * 8 + [0]}}
    )
    second = await post_assessment(
        stack, episode, {"dimensions": IOP_DIMENSIONS, "instruments": {"phq9": [1] * 8 + [0], "gad7": [1] * 7}}
    )
    assert (first.json()["kind"], second.json()["kind"]) == ("intake", "reassessment")
    assert second.json()["previous_assessment_id"] == first.json()["assessment_id"]
    [change] = second.json()["changes"]
    assert (change["instrument"], change["previous_total"], change["total"], change["delta"]) == ("phq9", 16, 8, -8)
    assert (change["previous_band"], change["band"], change["meaningful_change"]) == (
        "moderately_severe",
        "mild",
        "improvement",
    )
    published = await eventually(
        lambda: at_least(events(stack, "iop.assessment.completed", episode), 2), "both assessment events"
    )
    assert [e.data.kind for e in published] == ["intake", "reassessment"]
    assert published[1].data.changes[0].delta == -8

    async with stack.http("intake", "clinician") as intake:
        history = (await intake.get(f"/v1/episodes/{episode.episode_id}/assessments")).json()
    assert [a["assessment_id"] for a in history["assessments"]] == [first.json()["assessment_id"],
                                                                    second.json()["assessment_id"]]  # fmt: skip
    trends = {t["instrument"]: t for t in history["trends"]}
    assert [p["total"] for p in trends["phq9"]["points"]] == [16, 8]
    assert trends["phq9"]["direction"] == "improving"
    assert trends["gad7"]["direction"] == "stable"


async def test_clinician_placement_differs_from_recommendation_and_care_plan_follows_it(stack: Stack) -> None:
    episode = await new_episode(stack)
    placement = {"chosen_level": "OP", "reason_code": "patient_declined_higher_level", "note": "prefers evenings"}
    staff = await post_assessment(stack, episode, {"dimensions": IOP_DIMENSIONS, "placement": placement})
    assert staff.status_code == 403
    same = await post_assessment(
        stack, episode, {"dimensions": IOP_DIMENSIONS, "placement": {**placement, "chosen_level": "IOP"}}, "clinician"
    )
    assert same.status_code == 422
    assert ["body", "placement", "chosen_level"] in [e["loc"] for e in same.json()["detail"]]

    response = await post_assessment(
        stack, episode, {"dimensions": IOP_DIMENSIONS, "placement": placement}, "clinician"
    )
    assert response.status_code == 201, response.text
    assert (response.json()["recommended_level"], response.json()["placement"]["chosen_level"]) == ("IOP", "OP")
    plan = await eventually(lambda: care_plan_of(stack, episode), "the care plan")
    assert plan["level"] == "OP"
    assert "clinician_placement" in [reason["code"] for reason in plan["rationale"]]
    [completed] = await events(stack, "iop.assessment.completed", episode)
    assert completed.data.placement.reason_code == "patient_declined_higher_level"
    assert b"prefers evenings" not in (await events_of(stack, "iop.assessment.completed", episode.episode_id))[0].value


async def test_drug_screen_is_recorded_and_published_without_substances_in_headers(stack: Stack) -> None:
    episode = await new_episode(stack)
    body = {
        "collected_at": "2026-11-20T14:05:00Z",
        "results": [
            {"substance": "fentanyl", "result": "positive"},
            {"substance": "buprenorphine", "result": "positive", "expected": True},
        ],
    }
    async with stack.http("intake", "integration") as intake:
        changes: tuple[dict[str, Any], ...] = (
            {"collected_at": "2999-01-01T00:00:00Z"},
            {"results": [{"substance": "fentanyl", "result": "positive"}] * 2},
            {"results": [{"substance": "kratom-x", "result": "positive"}]},
            {"results": []},
        )
        bad = [
            await intake.post(f"/v1/episodes/{episode.episode_id}/drug-screens", json=body | change)
            for change in changes
        ]
        response = await intake.post(f"/v1/episodes/{episode.episode_id}/drug-screens", json=body)
    assert [r.status_code for r in bad] == [422] * 4
    assert ["body", "collected_at"] in [e["loc"] for e in bad[0].json()["detail"]]
    assert response.status_code == 201, response.text
    assert response.json()["unexpected_positive"] is True

    [record] = await eventually(lambda: events_of(stack, "iop.drug_screen.recorded", episode.episode_id), "event")
    assert all(b"fentanyl" not in value for _, value in record.headers)
    event = from_kafka(record.headers, record.value, DrugScreenRecorded)
    assert [(r.substance, r.result, r.expected) for r in event.data.results] == [
        ("fentanyl", "positive", False),
        ("buprenorphine", "positive", True),
    ]
    stored = await stack.database("intake")["episodes"].find_one({"_id": episode.episode_id})
    assert len(stored["drug_screens"]) == 1  # the rejected ones stored nothing


async def test_consents_are_granted_and_revoked_per_recipient_and_events_say_only_kind_and_status(
    stack: Stack,
) -> None:
    episode = await new_episode(stack)
    family = {
        "recipient_kind": "family",
        "recipient": {"name": "Robin Zqfamily", "email": "robin.zq@example.org", "relationship": "partner"},
        "scopes": ["appointments"],
    }
    async with stack.http("intake", "intake_staff") as intake:
        path = f"/v1/episodes/{episode.episode_id}/consents"
        unreachable = await intake.post(path, json=family | {"recipient": {"name": "No Contact"}})
        granted = (await intake.post(path, json=family)).json()
        alumni = (await intake.post(path, json={"recipient_kind": "alumni_group", "scopes": ["alumni_program"]})).json()
        revoked = (await intake.post(f"{path}/{granted['consent_id']}/revoke")).json()
        again = (await intake.post(f"{path}/{granted['consent_id']}/revoke")).json()
        listed = (await intake.get(path)).json()
        missing = await intake.post(f"{path}/nope/revoke")
    assert unreachable.status_code == 422
    assert (revoked["status"], again["revoked_at"]) == ("revoked", revoked["revoked_at"])
    assert {(c["recipient_kind"], c["status"]) for c in listed} == {("family", "revoked"), ("alumni_group", "granted")}
    assert alumni["recipient"] is None
    assert missing.status_code == 404

    changed = await eventually(
        lambda: at_least(events(stack, "iop.consent.changed", episode), 3), "three consent events"
    )
    assert [(e.data.recipient_kind, e.data.status) for e in changed] == [
        ("family", "granted"),
        ("alumni_group", "granted"),
        ("family", "revoked"),
    ]
    raw = b" ".join(r.value for r in await events_of(stack, "iop.consent.changed", episode.episode_id))
    assert b"Robin" not in raw and b"robin.zq" not in raw and b"partner" not in raw


async def test_patient_record_reads_and_changes_are_audited_and_admin_can_query_them(stack: Stack) -> None:
    episode = await new_episode(stack)
    async with stack.http("intake", "clinician") as intake:
        record = (await intake.get(f"/v1/patients/{episode.patient_id}")).json()
        updated = await intake.patch(f"/v1/patients/{episode.patient_id}", json={"phone": "+12025550199"})
        empty = await intake.patch(f"/v1/patients/{episode.patient_id}", json={})
        forbidden = await intake.get("/v1/audit", params={"patient_id": episode.patient_id})
    assert record["email"] == episode.email
    assert updated.json()["phone"] == "+12025550199"
    assert empty.status_code == 422
    assert forbidden.status_code == 403

    async with stack.http("intake", "admin") as intake:
        entries = (await intake.get("/v1/audit", params={"patient_id": episode.patient_id})).json()
        reads = await intake.get("/v1/audit", params={"patient_id": episode.patient_id, "action": "read_patient"})
    assert [(e["action"], e["role"]) for e in reversed(entries)] == [
        ("create_patient", "intake_staff"),
        ("read_patient", "clinician"),
        ("update_patient", "clinician"),
    ]
    assert [e["action"] for e in reads.json()] == ["read_patient"]


async def test_a_swapped_placement_policy_changes_the_recommendation(stack: Stack, tmp_path: Path) -> None:
    default = yaml.safe_load((ROOT / "services/intake/policy/placement.yaml").read_text())
    default["version"] = "clinic-test-1"
    default["levels_by_rating"][2] = "PHP"  # this clinic places a highest rating of 2 in PHP
    policy = tmp_path / "placement.yaml"
    policy.write_text(yaml.safe_dump(default))
    env = {"INTAKE_PLACEMENT_POLICY_FILE": str(policy), "KAFKA_GROUP_INSTANCE_ID": "",
                       "KAFKA_CONSUMERS_ENABLED": "0"}  # fmt: skip
    with instance_beside(stack, "intake", env, tmp_path / "intake.log") as swapped:
        episode = await new_episode(stack)
        headers = {"Authorization": f"Bearer {TOKENS['intake_staff']}"}
        async with httpx.AsyncClient(base_url=swapped.url, headers=headers, timeout=HTTP_TIMEOUT) as intake:
            response = await intake.post(
                f"/v1/episodes/{episode.episode_id}/assessments", json={"dimensions": IOP_DIMENSIONS}
            )
    assert (response.json()["recommended_level"], response.json()["policy_version"]) == ("PHP", "clinic-test-1")


def test_an_invalid_placement_policy_stops_the_service_with_an_error_naming_file_and_field(tmp_path: Path) -> None:
    policy = tmp_path / "placement.yaml"
    default = yaml.safe_load((ROOT / "services/intake/policy/placement.yaml").read_text())
    default["levels_by_rating"][2] = "DETOX"
    policy.write_text(yaml.safe_dump(default))
    result = subprocess.run(
        [sys.executable, "-c", "from services.intake.app import create_app; create_app()"],
        cwd=ROOT,
        env={"INTAKE_PLACEMENT_POLICY_FILE": str(policy), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert str(policy) in result.stderr and "levels_by_rating" in result.stderr


async def test_a_retried_post_with_its_idempotency_key_creates_nothing_twice(stack: Stack) -> None:
    episode = await new_episode(stack)
    key = {"Idempotency-Key": f"retry-{episode.episode_id}"}
    body = {"dimensions": IOP_DIMENSIONS}
    async with stack.http("intake", "intake_staff") as intake:
        path = f"/v1/episodes/{episode.episode_id}/assessments"
        first, retried = [await intake.post(path, json=body, headers=key) for _ in "ab"]
        other = await intake.post(path, json={"dimensions": {**IOP_DIMENSIONS, "relapse": 3}}, headers=key)
    assert (first.status_code, retried.status_code, other.status_code) == (201, 201, 422)
    assert first.json() == retried.json()
    completed = await eventually(lambda: events_of(stack, "iop.assessment.completed", episode.episode_id), "it")
    stored = await stack.database("intake")["episodes"].find_one({"_id": episode.episode_id})
    assert len(stored["assessments"]) == 1 and len(completed) == 1


async def test_graduation_and_discharge_in_care_plan_close_the_episode_in_intake(stack: Stack) -> None:
    graduating, leaving = await new_episode(stack), await new_episode(stack)
    alumni = {"recipient_kind": "alumni_group", "scopes": ["alumni_program"]}
    consents: dict[str, str] = {}
    for episode in (graduating, leaving):
        async with stack.http("intake", "intake_staff") as intake:
            granted = await intake.post(f"/v1/episodes/{episode.episode_id}/consents", json=alumni)
        consents[episode.episode_id] = granted.json()["consent_id"]
        await assess(stack, episode)
        await eventually(partial(care_plan_of, stack, episode), "the care plan")
    async with stack.http("care_plan", "clinician") as clinician:
        early = {
            "reason": "moved out of state; continues with a local program"
        }  # below the sessions a graduation takes
        graduated = await clinician.post(f"/v1/episodes/{graduating.episode_id}/graduate", json=early)
        discharged = await clinician.post(f"/v1/episodes/{leaving.episode_id}/discharge",
                                          json={"reason_code": "against_advice"})  # fmt: skip
    assert (graduated.status_code, discharged.status_code) == (200, 200), graduated.text + discharged.text

    for episode, topic, how in ((graduating, "iop.episode.graduated", "graduated"),
                                (leaving, "iop.episode.discharged", "discharged")):  # fmt: skip
        [ended] = await eventually(partial(events_of, stack, topic, episode.episode_id), topic)
        await wait_consumed(stack, "intake", ended.topic, ended.partition, ended.offset)
        stored = await stack.database("intake")["episodes"].find_one({"_id": episode.episode_id})
        assert (stored["status"], stored["ended"]) == ("closed", how)
        refused = await post_assessment(stack, episode, {"dimensions": IOP_DIMENSIONS})
        assert refused.status_code == 409
        assert refused.json()["detail"].startswith(f"episode is closed ({how} on ")
        async with stack.http("intake", "intake_staff") as intake:  # a patient may still withdraw a consent
            path = f"/v1/episodes/{episode.episode_id}/consents/{consents[episode.episode_id]}/revoke"
            assert (await intake.post(path)).status_code == 200


async def test_a_patient_without_email_or_phone_is_registered_and_the_care_team_told_at_the_welcome(
    stack: Stack,
) -> None:
    marker = uuid.uuid4().hex[:10]
    async with stack.http("intake", "intake_staff") as intake:
        registered = await intake.post("/v1/patients", json={"name": f"Nocontact Zq{marker}",
                                                             "date_of_birth": "1981-06-30"})  # fmt: skip
        assert registered.status_code == 201, registered.text
        patient_id = registered.json()["patient_id"]
        opened = await intake.post(f"/v1/patients/{patient_id}/episodes", json={"program": "adult"})
    episode = Episode(patient_id, opened.json()["episode_id"], "", {"name": f"Nocontact Zq{marker}"})
    await assess(stack, episode)
    [told] = await mail_to(stack, CARE_TEAM_EMAIL, subject=f"Unreachable patient: episode {episode.episode_id}")
    assert marker not in told.get_content()  # the episode, never the person
