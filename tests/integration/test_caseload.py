"""The caseload on the real broker: the issue-27 "Done when" scenarios. A patient appears in `today` with names for
a clinician and without for `integration`; a high-risk reassessment is on `safety_alerts` within seconds and leaves
it when acknowledged (also when the acknowledgement arrives first); two misses put the member on `missed_sessions`;
a search by name finds the patient and intake's audit names the caller; a rebuild from the topics gives the same
projection. A treatment-plan review due is on `plan_reviews`, an authorization due for review on `authorizations`."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaProducer

from services.common.auth import fingerprint
from stepwise_contract import SafetyAlertAcknowledged, SafetyAlertRaised, new_event, to_kafka
from tests.integration.conftest import (
    CSSRS_HIGH,
    HANDLERS,
    IOP_DIMENSIONS,
    TOKENS,
    Episode,
    Stack,
    assess,
    care_plan_of,
    eventually,
    group_reading,
    new_episode,
    record_during,
)
from tests.integration.test_authorizations import authorize, today
from tests.integration.test_treatment_plan import WORSE, measured, plan_text
from tools.dev.kafka import unconsumed

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


async def worklist(stack: Stack, name: str, role: str = "clinician", **params: Any) -> Any:
    async with stack.http("caseload", role) as caseload:
        response = await caseload.get(f"/v1/worklists/{name}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def listed(rows: list[dict[str, Any]], episode: Episode | str) -> list[dict[str, Any]]:
    episode_id = episode if isinstance(episode, str) else episode.episode_id
    return [row for row in rows if row.get("episode_id") == episode_id]


async def caught_up(stack: Stack) -> bool:
    """Caseload has applied every record on its topics (each lane's committed offsets at the topics' ends: a lane
    commits after its batch's effects are stored). Its routine lane gathers up to a second of events under load."""
    lanes: dict[str, list[str]] = {}
    for model in HANDLERS["caseload"]:
        lanes.setdefault(group_reading("caseload", model.event_type), []).append(model.event_type)
    servers = stack.backends.kafka_bootstrap_servers
    return not any([await unconsumed(servers, group, topics) for group, topics in lanes.items()])


async def views(stack: Stack, episode_ids: list[str]) -> dict[str, Any]:
    database = stack.database("caseload")
    meta = await database["meta"].find_one({"_id": "projection"})
    found = await database[meta["collection"]].find({"_id": {"$in": episode_ids}}).to_list()
    return {document["_id"]: (document["view"], document["timeline"]) for document in found}


async def test_a_clinic_morning_from_the_worklists(stack: Stack) -> None:
    episode = await new_episode(stack)
    await assess(stack, episode)
    plan = await eventually(lambda: care_plan_of(stack, episode), "the care plan")
    first = plan["schedule"]["sessions"][0]
    day = datetime.fromisoformat(first["starts_at"]).astimezone(ZoneInfo("America/New_York")).date().isoformat()

    async def in_today() -> list[dict[str, Any]] | None:
        rows = (await worklist(stack, "today", names="true", date=day))["rows"]
        return [m for row in rows if row["session_id"] == first["session_id"] for m in listed(row["members"], episode)]

    [member] = await eventually(in_today, "the patient in today's group session")
    assert member["name"] == episode.pii["name"] and member["date_of_birth"] == episode.pii["date_of_birth"]
    anonymous = (await worklist(stack, "today", role="integration", date=day))["rows"]
    members = [m for row in anonymous for m in listed(row["members"], episode)]
    assert members and "name" not in members[0]
    async with stack.http("caseload", "integration") as caseload:
        assert (await caseload.get("/v1/worklists/today", params={"names": "true"})).status_code == 403

    # A high-risk reassessment: on safety_alerts in seconds, off it once acknowledged.
    async with stack.http("intake", "clinician") as intake:
        body = {"dimensions": IOP_DIMENSIONS, "instruments": {"cssrs": CSSRS_HIGH}}
        response = await intake.post(f"/v1/episodes/{episode.episode_id}/assessments", json=body)
        assert response.status_code == 201, response.text

    async def alert() -> list[dict[str, Any]]:
        return listed((await worklist(stack, "safety_alerts"))["rows"], episode)

    [raised] = await eventually(alert, "the alert on safety_alerts", within=10)
    async with stack.http("notifications", "clinician") as notifications:
        acknowledged = await notifications.post(f"/v1/safety-alerts/{raised['alert_id']}/acknowledge")
        assert acknowledged.status_code == 200, acknowledged.text
    await eventually(lambda: _not(alert), "the alert to leave safety_alerts")

    # Two misses in a row put the member on missed_sessions.
    for index in (0, 1):
        assert (await record_during(stack, episode, index, "missed")).status_code == 200

    async def missed() -> list[dict[str, Any]]:
        return listed((await worklist(stack, "missed_sessions"))["rows"], episode)

    [row] = await eventually(missed, "the member on missed_sessions")
    assert row["misses_in_a_row"] == 2

    # A search by name finds the patient; intake's audit names the caller (their token), not caseload.
    async with stack.http("caseload", "clinician") as caseload:
        found = await caseload.post("/v1/caseload/search", json={"name": episode.pii["name"].split()[1][:6]})
    assert found.status_code == 200, found.text
    assert [(e["episode_id"], e["name"]) for e in found.json()["episodes"]] == [(episode.episode_id,
                                                                                  episode.pii["name"])]  # fmt: skip
    async with stack.http("intake", "admin") as intake:
        audit = await intake.get("/v1/audit", params={"patient_id": episode.patient_id, "action": "search_patient"})
    assert [entry["token_id"] for entry in audit.json()] == [fingerprint(TOKENS["clinician"])]

    async with stack.http("caseload", "clinician") as caseload:
        timeline = (await caseload.get(f"/v1/episodes/{episode.episode_id}/timeline")).json()
        census = (await caseload.get("/v1/census", params={"date": day})).json()
    types = [e["type"] for e in timeline["entries"]]
    assert types[0] == "iop.assessment.completed"
    assert {"iop.care_level.assigned", "iop.safety.alert_acknowledged", "iop.session.missed"} <= set(types)
    assert census["in_care"] >= 1

    # A rebuild from the topics gives the same projection (once the live one has applied all of them).
    await eventually(lambda: caught_up(stack), "caseload to apply every event on its topics")
    before = await views(stack, [episode.episode_id])
    env = {**os.environ, **stack.services["caseload"].env}
    rebuilt = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.caseload.rebuild", cwd=ROOT,
                                                   env=env, stdout=asyncio.subprocess.PIPE)  # fmt: skip
    said, _ = await asyncio.wait_for(rebuilt.communicate(), 120)
    assert rebuilt.returncode == 0 and said.startswith(b"rebuilt "), said
    assert await views(stack, [episode.episode_id]) == before


async def _not(check: Any) -> bool:
    return not await check()


async def test_an_acknowledgement_arriving_before_its_alert_leaves_nothing_open(
    stack: Stack, kafka_producer: AIOKafkaProducer
) -> None:
    episode_id, alert_id = str(uuid.uuid4()), str(uuid.uuid4())
    watching = stack.http("caseload", "clinician")  # the stream announces the change: no ids, no names
    stream = asyncio.create_task(watching.get("/v1/worklists/stream", params={"once": "true"}))
    await asyncio.sleep(0.5)
    now = datetime.now(UTC)
    acknowledged = SafetyAlertAcknowledged(episode_id=episode_id, alert_id=alert_id, acknowledged_at=now)
    raised = SafetyAlertRaised(episode_id=episode_id, alert_id=alert_id, assessment_id=str(uuid.uuid4()),
                               level="immediate", reasons=["cssrs_high_risk"], raised_at=now)  # fmt: skip
    for data, source in ((acknowledged, "/stepwise/notifications"), (raised, "/stepwise/intake")):
        record = to_kafka(new_event(data, source=source))
        await kafka_producer.send_and_wait(record.topic, record.value, key=record.key, headers=record.headers)

    async def both() -> bool:
        async with stack.http("caseload", "clinician") as caseload:
            response = await caseload.get(f"/v1/episodes/{episode_id}/timeline")
        # (notifications tells the care team of the alert too: its iop.notification.* events follow on the timeline)
        types = {entry["type"] for entry in response.json()["entries"]} if response.status_code == 200 else set()
        return {"iop.safety.alert_acknowledged", "iop.safety.alert_raised"} <= types

    await eventually(both, "both events on the episode's timeline")
    assert listed((await worklist(stack, "safety_alerts"))["rows"], episode_id) == []
    try:
        announced = await asyncio.wait_for(stream, 30)
    finally:
        await watching.aclose()
    assert "event: worklists" in announced.text and episode_id not in announced.text


async def test_a_plan_review_and_an_authorization_review_on_their_worklists(stack: Stack) -> None:
    episode = await new_episode(stack)
    await assess(stack, episode)
    await eventually(lambda: care_plan_of(stack, episode), "the care plan")
    plan_path = f"/v1/episodes/{episode.episode_id}/treatment-plan"
    async with stack.http("care_plan") as clinician:
        assert (await clinician.put(plan_path, json=plan_text("caseload"))).status_code == 200
        assert (await clinician.post(f"{plan_path}/sign", json={"version": 1})).status_code == 200
    deteriorated = await measured(stack, episode, WORSE)  # a reliable deterioration: a review due at once
    authorization = await authorize(stack, episode.episode_id, next_review_on=today().isoformat())

    async def on(name: str) -> list[dict[str, Any]]:
        return listed((await worklist(stack, name))["rows"], episode)

    [review] = await eventually(lambda: on("plan_reviews"), "the review on plan_reviews")
    assert (review["reason"], review["trigger_id"], review["version"], review["state"]) == (
        "reliable_deterioration", deteriorated, 1, "due")  # fmt: skip
    [due] = await eventually(lambda: on("authorizations"), "the authorization on authorizations")
    assert (due["kind"], due["authorization_id"], due["reason"]) == ("review_due", authorization["authorization_id"],
                                                                     "next_review")  # fmt: skip
    async with stack.http("caseload", "clinician") as caseload:
        listing = await caseload.get("/v1/caseload", params={"flag": "authorization"})
    [row] = listed(listing.json()["episodes"], episode)
    assert row["authorized_level"] == "IOP" and "plan_review" in row["flags"]

    # A review recorded without a new signing (iop.treatment_plan.reviewed) takes it off plan_reviews.
    async with stack.http("care_plan") as clinician:
        assert (await clinician.post(f"{plan_path}/review", json={"outcome": "continued"})).status_code == 200
    await eventually(lambda: _not(lambda: on("plan_reviews")), "the recorded review off plan_reviews")
