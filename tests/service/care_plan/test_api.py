"""care_plan's HTTP API in-process: each endpoint's success and main error, replaying set-aside events."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest

from services.care_plan.store import PLANS, CarePlanStore
from services.common.auth import Role
from services.common.utc import utc_now
from stepwise_contract import (
    AttendanceReported,
    CareLevel,
    DrugScreenRecorded,
    SafetyAlertRaised,
    ScreenResult,
    new_event,
)
from tests.service.care_plan.helpers import (
    ADMIN,
    APP,
    CLINICIAN,
    POLICY,
    active_plan,
    assessment,
    first_session_id,
    intake_event,
    once_the_first_session_began,
)
from tests.service.conftest import Events, as_role, queued, set_aside
from tests.service.conftest import api as client_of
from tests.service.memory_mongo import MemoryDatabase


async def test_get_care_plan(http: httpx.AsyncClient, events: Events, store: CarePlanStore) -> None:
    episode_id = await active_plan(events, store)
    found = await http.get(f"/v1/episodes/{episode_id}/care-plan", headers=CLINICIAN)
    assert found.status_code == 200 and found.json()["level"] == "IOP"
    missing = await http.get("/v1/episodes/nobody/care-plan", headers=CLINICIAN)
    assert missing.status_code == 404


async def test_post_attendance(http: httpx.AsyncClient, events: Events, store: CarePlanStore) -> None:
    episode_id = await active_plan(events, store)
    session_id = first_session_id()
    path = f"/v1/episodes/{episode_id}/sessions/{session_id}/attendance"
    with once_the_first_session_began():
        recorded = await http.post(path, json={"status": "missed"}, headers=CLINICIAN)
        assert recorded.status_code == 200 and recorded.json()["attendance"]["status"] == "missed"
        unknown = await http.post(path.replace(session_id, "s999"), json={"status": "missed"},
                                  headers=CLINICIAN)  # fmt: skip
        assert unknown.status_code == 404
        no_notice = await http.post(path, json={"status": "attended", "notice_given_at": "2026-11-20T09:00:00Z"},
                                    headers=CLINICIAN)  # fmt: skip
        assert no_notice.status_code == 422


async def _recommendation(events: Events, store: CarePlanStore, episode_id: str) -> str:
    for n in range(2):  # two unexpected positive screens within 14 days recommend a step-up
        screen = DrugScreenRecorded(episode_id=episode_id, screen_id=f"d{n}", collected_at=utc_now(),
                                    recorded_at=utc_now(), unexpected_positive=True,
                                    results=[ScreenResult(substance="fentanyl", result="positive")])  # fmt: skip
        await events.deliver(intake_event(screen))
    stored = await store.get(episode_id)
    assert stored is not None and stored.plan.open_recommendation is not None
    return stored.plan.open_recommendation.recommendation_id


async def test_decide_recommendation(
    http: httpx.AsyncClient, events: Events, store: CarePlanStore, database: MemoryDatabase
) -> None:
    episode_id = await active_plan(events, store)
    recommendation_id = await _recommendation(events, store, episode_id)
    path = f"/v1/episodes/{episode_id}/recommendations/{recommendation_id}/decision"
    accepted = await http.post(path, json={"decision": "accept"}, headers=CLINICIAN)
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    assert accepted.json()["decided_by"].startswith("token:")  # who decided: a static token's fingerprint here
    stored = await store.get(episode_id)
    assert stored is not None and stored.plan.level == CareLevel.PHP
    assert "iop.care_level.changed" in [topic for topic, _ in await queued(database[PLANS])]
    again = await http.post(path, json={"decision": "decline"}, headers=CLINICIAN)
    assert again.status_code == 409
    unknown = await http.post(path.replace(recommendation_id, "nope"), json={"decision": "accept"}, headers=CLINICIAN)
    assert unknown.status_code == 404


async def test_set_schedule(http: httpx.AsyncClient, events: Events, store: CarePlanStore) -> None:
    episode_id = await active_plan(events, store)
    path = f"/v1/episodes/{episode_id}/care-plan/schedule"
    body = {"track": "evening", "weekdays": ["mon", "tue", "thu"], "hours_per_session": 3, "weeks": 6}
    changed = await http.put(path, json=body, headers=CLINICIAN)
    assert changed.status_code == 200 and changed.json()["schedule"]["track"] == "evening"
    spelled_out = await http.put(path, json=body | {"weekdays": ["Monday", "tuesday", "THU"]}, headers=CLINICIAN)
    assert spelled_out.status_code == 200
    too_little = await http.put(path, json=body | {"weekdays": ["mon", "thu"]}, headers=CLINICIAN)
    assert too_little.status_code == 422 and "minimum" in too_little.json()["detail"][0]["msg"]
    assert too_little.json()["detail"][0]["type"] == "below_minimum_hours"


@pytest.mark.parametrize("weekdays", [["mon", "mon", "thu"], ["mon", "Monday", "thu"], ["mon"] * 100_000],
                         ids=["twice", "twice_spelled_out", "100000"])  # fmt: skip
async def test_a_custom_schedule_names_each_weekday_once(
    http: httpx.AsyncClient, events: Events, store: CarePlanStore, weekdays: list[str]
) -> None:
    episode_id = await active_plan(events, store)
    body = {"track": "evening", "weekdays": weekdays, "hours_per_session": 3, "weeks": 6}
    refused = await http.put(f"/v1/episodes/{episode_id}/care-plan/schedule", json=body, headers=CLINICIAN)
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "weekdays"]


async def test_the_payer_authorization_moved_and_the_old_route_says_where(
    http: httpx.AsyncClient, events: Events, store: CarePlanStore
) -> None:
    """Issue 26: payers' authorizations are the authorizations service's; for one release the old route answers 410
    with the new location, and changes nothing."""
    episode_id = await active_plan(events, store)
    body = {"level": "IOP", "authorized_through": "2027-01-31", "reference": "PA-1"}
    gone = await http.put(f"/v1/episodes/{episode_id}/authorization", json=body, headers=CLINICIAN)
    assert gone.status_code == 410
    assert gone.json()["location"] == f"POST /v1/episodes/{episode_id}/authorizations on the authorizations service"
    stored = await store.get(episode_id)
    assert stored is not None and stored.plan.authorization is None
    refused = await http.put(f"/v1/episodes/{episode_id}/authorization", json=body, headers=as_role(Role.ADMIN))
    assert refused.status_code == 403


async def test_graduate_episode(
    http: httpx.AsyncClient, events: Events, store: CarePlanStore, database: MemoryDatabase
) -> None:
    episode_id = await active_plan(events, store)
    path = f"/v1/episodes/{episode_id}/graduate"
    no_reason = await http.post(path, headers=CLINICIAN)  # no session attended: 12 are the IOP minimum
    assert no_reason.status_code == 422 and no_reason.json()["detail"][0]["loc"] == ["body", "reason"]
    assert "fewer than the 12" in no_reason.json()["detail"][0]["msg"]
    misspelt = await http.post(path, json={"reasn": "moving away"}, headers=CLINICIAN)
    assert misspelt.status_code == 422 and misspelt.json()["detail"][0]["loc"] == ["body", "reasn"]
    assert (await store.get(episode_id)).plan.status == "active"  # type: ignore[union-attr]
    graduated = await http.post(path, json={"reason": "moving away: care continues nearer home"}, headers=CLINICIAN)
    assert graduated.status_code == 200 and graduated.json()["status"] == "graduated"
    assert graduated.json()["end_note"] == "moving away: care continues nearer home"
    assert "iop.episode.graduated" in [topic for topic, _ in await queued(database[PLANS])]
    assert b"moving away" not in str(await queued(database[PLANS])).encode()  # the reason stays here
    twice = await http.post(f"/v1/episodes/{episode_id}/graduate", headers=CLINICIAN)
    assert twice.status_code == 409


async def test_discharge_episode(http: httpx.AsyncClient, events: Events, store: CarePlanStore) -> None:
    episode_id = await active_plan(events, store)
    path = f"/v1/episodes/{episode_id}/discharge"
    discharged = await http.post(path, json={"reason_code": "non_attendance"}, headers=CLINICIAN)
    assert discharged.status_code == 200 and discharged.json()["status"] == "discharged"
    assert discharged.json()["ended_by"].startswith("token:")
    bad_reason = await http.post(path, json={"reason_code": "bored"}, headers=CLINICIAN)
    assert bad_reason.status_code == 422 and bad_reason.json()["detail"][0]["loc"] == ["body", "reason_code"]


async def test_set_aside_events_are_listed_for_admins(
    http: httpx.AsyncClient, events: Events, store: CarePlanStore
) -> None:
    report = AttendanceReported(episode_id="nobody", session_id=first_session_id(), status="attended",
                                reported_at=utc_now() - timedelta(minutes=1))  # fmt: skip
    await events.deliver(new_event(report, source="/ehr"))
    listed = await http.get("/v1/set-aside-events", headers=as_role(Role.ADMIN))
    assert listed.status_code == 200 and listed.json()[0]["reason"].startswith("rejected: no_care_plan")
    assert "value" not in listed.json()[0]  # a set-aside record may hold what must not be shown
    forbidden = await http.get("/v1/set-aside-events", headers=CLINICIAN)
    assert forbidden.status_code == 403


async def test_health(database: MemoryDatabase, store: CarePlanStore) -> None:
    async def up() -> bool:
        return True

    async def down() -> bool:
        raise ConnectionError("the store is unreachable")

    for checks, expected in (({"mongodb": up, "kafka": up}, 200), ({"mongodb": down, "kafka": up}, 503)):
        state = {"store": store, "policy": POLICY, "readiness_checks": checks}
        async with await client_of("care_plan", APP, database, state) as client:
            assert (await client.get("/health/live")).status_code == 200
            ready = await client.get("/health/ready")
            assert ready.status_code == expected, ready.text


async def test_an_alert_before_its_plan_is_kept_and_taken_by_the_plan_without_holding_up_the_partition(
    events: Events, store: CarePlanStore, database: MemoryDatabase
) -> None:
    episode_id = str(uuid.uuid4())
    raised = intake_event(SafetyAlertRaised(episode_id=episode_id, alert_id="a1", assessment_id="x", level="same_day",
                                            reasons=["phq9_item9_positive"], raised_at=utc_now()))  # fmt: skip
    await events.deliver(raised)  # returns at once: nothing waits on this partition
    await events.deliver(raised)  # a redelivery keeps it once
    assert await set_aside(database) == [] and len(await store.pending(episode_id)) == 1
    await events.deliver(intake_event(assessment(episode_id)))
    stored = await store.get(episode_id)
    assert stored is not None and [i.kind for i in stored.plan.inputs] == ["safety_alert"]
    assert await store.pending(episode_id) == []
    await events.deliver(raised)  # and once more after the plan took it: still once
    stored = await store.get(episode_id)
    assert stored is not None and len(stored.plan.inputs) == 1


async def test_a_set_aside_event_is_replayed_once_its_cause_is_fixed(
    http: httpx.AsyncClient, events: Events, store: CarePlanStore
) -> None:
    episode_id = str(uuid.uuid4())
    report = AttendanceReported(episode_id=episode_id, session_id=first_session_id(), status="attended",
                                reported_at=utc_now())  # fmt: skip
    await events.deliver(new_event(report, source="/ehr"))  # no plan yet: rejected at once, set aside
    [shelved] = (await http.get("/v1/set-aside-events", headers=ADMIN)).json()
    path = f"/v1/set-aside-events/{shelved['id']}/replay"
    still = await http.post(path, headers=ADMIN)
    assert still.status_code == 200 and still.json()["replays"][-1]["outcome"] == "set_aside_again"
    await events.deliver(intake_event(assessment(episode_id)))  # the cause fixed: the plan exists now
    with once_the_first_session_began():
        replayed = await http.post(path, headers=ADMIN)
    assert [r["outcome"] for r in replayed.json()["replays"]] == ["set_aside_again", "applied"]
    stored = await store.get(episode_id)
    assert stored is not None and stored.plan.attendance[first_session_id()].status == "attended"
    again = await http.post(path, headers=ADMIN)
    assert again.json()["replays"][-1]["outcome"] == "applied" and len(again.json()["replays"]) == 2
    listed = await http.get("/v1/set-aside-events", headers=ADMIN)
    assert listed.json()[0]["replays"][-1]["token_id"] and "value" not in listed.json()[0]
    assert (await http.post("/v1/set-aside-events/nope/replay", headers=ADMIN)).status_code == 404
    assert (await http.post(path, headers=CLINICIAN)).status_code == 403


async def test_set_aside_events_are_replayed_by_topic_and_reason(
    http: httpx.AsyncClient, events: Events, store: CarePlanStore
) -> None:
    episode_ids = [str(uuid.uuid4()) for _ in range(2)]
    for partition, episode_id in enumerate(episode_ids):
        report = AttendanceReported(episode_id=episode_id, session_id=first_session_id(), status="missed",
                                    reported_at=utc_now())  # fmt: skip
        await events.deliver(new_event(report, source="/ehr"), partition)
    for episode_id in episode_ids:
        await events.deliver(intake_event(assessment(episode_id)))
    query = {"topic": "iop.attendance.reported", "reason": "rejected: no_care_plan"}
    with once_the_first_session_began():
        replayed = await http.post("/v1/set-aside-events/replay", params=query, headers=ADMIN)
    assert replayed.status_code == 200 and [e["replays"][-1]["outcome"] for e in replayed.json()] == ["applied"] * 2
    assert (await http.post("/v1/set-aside-events/replay", params=query, headers=ADMIN)).json() == []
    assert (await http.post("/v1/set-aside-events/replay", headers=CLINICIAN)).status_code == 403
