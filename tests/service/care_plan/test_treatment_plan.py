"""care_plan in-process with the treatment plan: put, read (audited with the person), sign, acknowledge, review over
HTTP; a reliable deterioration (iop.measure.recorded) opens a review at once; the timer turns it overdue. The plan's
text is in no event and in no care-plan answer."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import httpx

from services.care_plan.store import PLANS, CarePlanStore
from services.care_plan.timers import DueChecks
from services.common.auth import Role
from services.common.utc import utc_now
from stepwise_contract import InstrumentMeasure, MeasureRecorded
from tests.service.care_plan.helpers import ADMIN, CLINICIAN, POLICY, active_plan, clock_at, intake_event
from tests.service.conftest import Events, as_role, queued
from tests.service.memory_mongo import MemoryDatabase

WORDS = "Zq-own-words: I want to be there for my kids"
"""Text only the plan holds: looked for where it must not be."""
PLAN = {"problems": [{"statement": "Zq-problem: drinking harms work", "goals": [{"in_own_words": WORDS, "objectives": [
    {"statement": "PHQ-9 below 10 twice", "target_date": "2027-03-01",
     "target": {"instrument": "phq9", "below": 10, "in_a_row": 2},
     "interventions": [{"modality": "group", "per_week": 3, "responsible_role": "counsellor"}]}]}]}]}  # fmt: skip


def path(episode_id: str, action: str = "") -> str:
    return f"/v1/episodes/{episode_id}/treatment-plan" + (f"/{action}" if action else "")


def deteriorated(episode_id: str) -> Any:
    scored = InstrumentMeasure(instrument="phq9", score=16, band="moderately_severe", baseline_score=8,
                               previous_score=9, classification="reliable_deterioration", recovered=False,
                               response=False)  # fmt: skip
    return intake_event(MeasureRecorded(episode_id=episode_id, measure_id="m-worse", source="measure",
                                        recorded_at=utc_now(), instruments=[scored]))  # fmt: skip


async def test_a_plan_is_put_signed_acknowledged_reviewed_and_every_answer_audited(
    http: httpx.AsyncClient, events: Events, store: CarePlanStore, database: MemoryDatabase
) -> None:
    episode_id = await active_plan(events, store)
    assert (await http.put(path("nobody"), json=PLAN, headers=CLINICIAN)).status_code == 404
    put = await http.put(path(episode_id), json=PLAN, headers=CLINICIAN)
    assert put.status_code == 200 and put.json()["status"] == "draft" and put.json()["current"]["version"] == 1
    bad = json.loads(json.dumps(PLAN).replace('"phq9"', '"Zq-unknown"'))
    refused = await http.put(path(episode_id), json=bad, headers=CLINICIAN)
    assert refused.status_code == 422 and "instrument" in refused.text and "Zq-unknown" not in refused.text
    assert (await http.post(path(episode_id, "review"), json={"outcome": "continued"},
                            headers=CLINICIAN)).status_code == 409  # fmt: skip  # nothing signed yet
    unsigned = await http.post(path(episode_id, "acknowledge"), headers=CLINICIAN,
                               json={"version": 1, "how": "verbal", "agreed_at": utc_now().isoformat()})  # fmt: skip
    assert unsigned.status_code == 422 and unsigned.json()["detail"][0]["loc"] == ["body", "version"]
    assert (await http.post(path(episode_id, "sign"), json={"version": 2}, headers=CLINICIAN)).status_code == 422

    signed = await http.post(path(episode_id, "sign"), json={"version": 1}, headers=CLINICIAN)
    assert signed.status_code == 200 and signed.json()["status"] == "signed"
    assert signed.json()["current"]["signed_by"].startswith("token:")  # the token's person (a static token here)
    changed = {**PLAN, "problems": [{**PLAN["problems"][0], "statement": "Zq-problem: drinking and sleep"}]}
    assert (await http.put(path(episode_id), json=changed, headers=CLINICIAN)).json()["status"] == "revision_unsigned"
    stale = await http.post(path(episode_id, "sign"), json={"version": 1}, headers=CLINICIAN)
    assert stale.status_code == 409
    agreement = {"version": 1, "how": "signed_on_paper", "agreed_at": utc_now().isoformat()}
    agreed = await http.post(path(episode_id, "acknowledge"), headers=as_role(Role.INTAKE_STAFF), json=agreement)
    assert agreed.status_code == 200 and agreed.json()["versions"][0]["acknowledgement"]["how"] == "signed_on_paper"
    reviewed = await http.post(path(episode_id, "review"), json={"outcome": "continued"}, headers=CLINICIAN)
    assert reviewed.status_code == 200 and [r["outcome"] for r in reviewed.json()["reviews"]] == ["continued"]
    again = await http.post(path(episode_id, "review"), json={"outcome": "continued"}, headers=CLINICIAN)
    assert again.status_code == 200 and again.json()["reviews"] == reviewed.json()["reviews"]  # a retry

    read = await http.get(path(episode_id), headers=as_role(Role.INTEGRATION))
    assert read.status_code == 200 and [v["version"] for v in read.json()["versions"]] == [1, 2]
    objective = read.json()["current"]["problems"][0]["goals"][0]["objectives"][0]
    assert (objective["progress"], objective["scores"]) == ("no_data", [])
    assert (await http.get(path(episode_id), headers=as_role(Role.INTAKE_STAFF))).status_code == 403
    assert (await http.get(path("nobody"), headers=CLINICIAN)).status_code == 404
    care_plan = await http.get(f"/v1/episodes/{episode_id}/care-plan", headers=CLINICIAN)
    assert care_plan.status_code == 200 and "treatment" not in care_plan.json() and WORDS not in care_plan.text

    audit = await http.get("/v1/audit", params={"episode_id": episode_id}, headers=ADMIN)
    assert audit.status_code == 200
    assert [e["action"] for e in reversed(audit.json())] == [
        "put_treatment_plan", "sign_treatment_plan", "put_treatment_plan", "acknowledge_treatment_plan",
        "review_treatment_plan", "review_treatment_plan", "read_treatment_plan"]  # fmt: skip
    assert {e["role"] for e in audit.json()} == {"clinician", "intake_staff", "integration"}
    assert (await http.get("/v1/audit", headers=CLINICIAN)).status_code == 403
    published = await queued(database[PLANS])
    assert [topic for topic, _ in published if topic.startswith("iop.treatment_plan")] == [
        "iop.treatment_plan.signed", "iop.treatment_plan.reviewed"]  # fmt: skip  # in the review's write, once
    [said] = [data for topic, data in published if topic == "iop.treatment_plan.reviewed"]
    assert (said["version"], said["outcome"], said["settled_review_ids"]) == (1, "continued", [])
    assert "token:" not in json.dumps(said)  # never who
    assert "Zq-" not in json.dumps(published)


async def test_a_deterioration_opens_a_review_at_once_and_the_timer_turns_it_overdue(
    http: httpx.AsyncClient, events: Events, store: CarePlanStore, database: MemoryDatabase
) -> None:
    episode_id = await active_plan(events, store)
    await http.put(path(episode_id), json=PLAN, headers=CLINICIAN)
    await http.post(path(episode_id, "sign"), json={"version": 1}, headers=CLINICIAN)
    await events.deliver(deteriorated(episode_id))
    [due] = [data for topic, data in await queued(database[PLANS]) if topic == "iop.treatment_plan.review_due"]
    assert (due["reason"], due["trigger_id"], due["version"]) == ("reliable_deterioration", "m-worse", 1)
    stored = await store.get(episode_id)
    overdue_at = stored.plan.treatment.reviews_due[0].overdue_at if stored and stored.plan.treatment else None
    assert overdue_at is not None and stored is not None and stored.next_check_at is not None
    assert stored.next_check_at <= overdue_at
    with clock_at(overdue_at + timedelta(seconds=1)):
        assert episode_id in await store.due(utc_now())
        await DueChecks(store, POLICY, 1).work_once()
    overdue = [data for topic, data in await queued(database[PLANS]) if topic == "iop.treatment_plan.review_overdue"]
    assert [o["review_id"] for o in overdue] == [due["review_id"]]
    read = await http.get(path(episode_id), headers=CLINICIAN)
    assert [(r["reason"], r["status"]) for r in read.json()["reviews_due"]] == [("reliable_deterioration", "overdue")]
    assert str(uuid.UUID(due["review_id"])) == due["review_id"]
