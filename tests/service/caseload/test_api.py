"""caseload in-process: events in, worklists out; names only for staff, with their own token; reads audited."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

import httpx

from services.caseload.queries import Caseload
from services.caseload.store import CaseloadStore
from services.common.auth import Role
from stepwise_contract import (
    EVENT_TYPES,
    SafetyAlertRaised,
    TreatmentPlanReviewDue,
    TreatmentPlanReviewOverdue,
    TreatmentPlanSigned,
    new_event,
)
from tests.service.caseload.conftest import APP, ZONE, FakeIntake
from tests.service.conftest import TOKENS, Events, as_role
from tests.service.conftest import api as client_of
from tests.service.memory_mongo import MemoryDatabase
from tests.unit.contract.test_contract import EPISODE, T0, make_data

CLINICIAN = as_role(Role.CLINICIAN)
INTEGRATION = as_role(Role.INTEGRATION)
ADMIN = as_role(Role.ADMIN)
DAY = "2026-10-21"


async def admitted(events: Events) -> None:
    await events.deliver(new_event(make_data("iop.assessment.completed"), source="/stepwise/intake"))
    await events.deliver(new_event(make_data("iop.care_level.assigned"), source="/stepwise/care-plan"))


async def test_every_event_type_is_consumed_once(events: Events, store: CaseloadStore) -> None:
    for event_type in sorted(EVENT_TYPES):
        event = new_event(make_data(event_type), source="/stepwise/test", time=T0)
        await events.deliver(event)
        await events.deliver(event)  # a redelivery
    timeline = await store.timeline(EPISODE)
    assert timeline is not None and sorted(entry.type for entry in timeline) == sorted(EVENT_TYPES)


async def test_today_with_names_for_a_clinician_and_without_for_integration(
    http: httpx.AsyncClient, events: Events, intake: FakeIntake, database: MemoryDatabase
) -> None:
    await admitted(events)
    named = await http.get("/v1/worklists/today", params={"date": DAY, "names": "true"}, headers=CLINICIAN)
    assert named.status_code == 200, named.text
    [session] = named.json()["rows"]
    assert session["members"] == [{"episode_id": EPISODE, "record": None, "name": "Alex Example",
                                   "date_of_birth": "1990-04-01"}]  # fmt: skip
    assert intake.authorizations == [f"Bearer {TOKENS[Role.CLINICIAN]}"]  # the caller's own token
    anonymous = await http.get("/v1/worklists/today", params={"date": DAY}, headers=INTEGRATION)
    assert anonymous.json()["rows"][0]["members"] == [{"episode_id": EPISODE, "record": None}]
    refused = await http.get("/v1/worklists/today", params={"names": "true"}, headers=INTEGRATION)
    assert refused.status_code == 403
    audit = await database["audit_log"].find({"action": "read_worklist"}).to_list()
    assert [(entry["role"], entry["worklist"], entry["episode_ids"]) for entry in audit][:2] == [
        ("clinician", "today", [EPISODE]), ("integration", "today", [EPISODE])]  # fmt: skip
    assert "Alex" not in str(await database["audit_log"].find({}).to_list())


async def test_names_unavailable_when_intake_is_down_or_refuses(
    http: httpx.AsyncClient, events: Events, intake: FakeIntake
) -> None:
    await admitted(events)
    intake.status = 503
    down = await http.get("/v1/worklists/today", params={"date": DAY, "names": "true"}, headers=CLINICIAN)
    assert down.status_code == 503
    intake.status = 403
    refused = await http.get("/v1/caseload", params={"names": "true"}, headers=CLINICIAN)
    assert refused.status_code == 403


async def test_safety_alerts_counts_and_the_caseload(http: httpx.AsyncClient, events: Events) -> None:
    await admitted(events)
    alert = SafetyAlertRaised(episode_id=EPISODE, alert_id="al-1", assessment_id="a-2", level="immediate",
                              reasons=["cssrs_high_risk"], raised_at=T0)  # fmt: skip
    await events.deliver(new_event(alert, source="/stepwise/intake"))
    rows = (await http.get("/v1/worklists/safety_alerts", headers=CLINICIAN)).json()["rows"]
    assert [(row["episode_id"], row["alert_id"], row["open"]) for row in rows] == [(EPISODE, "al-1", True)]
    counts = (await http.get("/v1/worklists", headers=CLINICIAN)).json()
    assert counts["safety_alerts"] == 1 and counts["missed_sessions"] == 0
    flagged = await http.get("/v1/caseload", params={"flag": "safety_alert", "level": "IOP"}, headers=CLINICIAN)
    assert [row["episode_id"] for row in flagged.json()["episodes"]] == [EPISODE]
    assert (await http.get("/v1/worklists/nonsense", headers=CLINICIAN)).status_code == 422
    mine = await http.get("/v1/caseload", params={"mine": "true"}, headers=CLINICIAN)
    assert mine.status_code == 422  # a static token names no person


async def test_search_goes_through_intake(http: httpx.AsyncClient, events: Events, intake: FakeIntake) -> None:
    await admitted(events)
    intake.found = [EPISODE]
    found = await http.post("/v1/caseload/search", json={"name": "alex"}, headers=CLINICIAN)
    assert found.status_code == 200, found.text
    assert [(row["episode_id"], row["name"]) for row in found.json()["episodes"]] == [(EPISODE, "Alex Example")]
    assert (await http.post("/v1/caseload/search", json={"name": "alex"}, headers=INTEGRATION)).status_code == 403


async def test_timeline_pages_and_census(http: httpx.AsyncClient, events: Events) -> None:
    await admitted(events)
    first = (await http.get(f"/v1/episodes/{EPISODE}/timeline", params={"limit": 1}, headers=CLINICIAN)).json()
    assert [entry["type"] for entry in first["entries"]] == ["iop.assessment.completed"] and first["next_offset"] == 1
    rest = await http.get(f"/v1/episodes/{EPISODE}/timeline", params={"offset": 1}, headers=CLINICIAN)
    assert [e["summary"] for e in rest.json()["entries"]] == ["Care plan started at IOP"]
    assert rest.json()["next_offset"] is None
    assert (await http.get("/v1/episodes/nobody/timeline", headers=CLINICIAN)).status_code == 404
    census: dict[str, Any] = (await http.get("/v1/census", params={"date": "2026-10-20"}, headers=CLINICIAN)).json()
    assert census["per_level"] == {"IOP": 1} and census["movements"] == {"admission": 1}
    assert (await http.get("/v1/census", params={"date": "yesterday"}, headers=CLINICIAN)).status_code == 422


async def test_the_census_reads_only_the_episodes_whose_care_reaches_its_period(
    http: httpx.AsyncClient, events: Events, store: CaseloadStore
) -> None:
    """By each episode's period of care (indexed): not every episode the clinic ever had, and the same answer."""
    await admitted(events)  # on 2026-10-20
    discharged = make_data("iop.episode.discharged").model_copy(update={"discharged_at": T0 + timedelta(days=3)})
    await events.deliver(new_event(discharged, source="/stepwise/care-plan"))
    during = await store.in_care_between(T0 + timedelta(days=1), T0 + timedelta(days=2))
    assert [view.episode_id for view in during] == [EPISODE]
    assert await store.in_care_between(T0 + timedelta(days=4), T0 + timedelta(days=9)) == []  # ended before
    assert await store.in_care_between(T0 - timedelta(days=9), T0 - timedelta(days=1)) == []  # began after
    params = {"date": "2026-10-21", "since": "2026-10-20", "until": "2026-10-23"}
    census = (await http.get("/v1/census", params=params, headers=CLINICIAN)).json()
    assert census["per_level"] == {"IOP": 1} and census["movements"] == {"admission": 1, "discharged": 1}
    later = (await http.get("/v1/census", params={"date": "2026-10-30"}, headers=CLINICIAN)).json()
    assert (later["in_care"], later["movements"]) == (0, {})


async def test_every_worklist_answers(http: httpx.AsyncClient, events: Events) -> None:
    await admitted(events)
    for name in ("missed_sessions", "recommendations", "measures_due", "plan_reviews", "authorizations",
                 "failed_messages"):  # fmt: skip
        answer = await http.get(f"/v1/worklists/{name}", headers=INTEGRATION)
        assert answer.status_code == 200 and answer.json()["rows"] == []
    assert (await http.get("/v1/worklists", headers={})).status_code == 401


async def test_the_stream_announces_changed_worklists(http: httpx.AsyncClient, events: Events) -> None:
    waiting = asyncio.create_task(http.get("/v1/worklists/stream", params={"once": "true"}, headers=CLINICIAN))
    await asyncio.sleep(0.2)
    await admitted(events)
    alert = SafetyAlertRaised(episode_id=EPISODE, alert_id="al-9", assessment_id="a-2", level="same_day",
                              reasons=["phq9_item9_positive"], raised_at=T0)  # fmt: skip
    await events.deliver(new_event(alert, source="/stepwise/intake"))
    answer = await asyncio.wait_for(waiting, 10)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
    assert answer.text.startswith("event: ready") and "event: worklists" in answer.text
    assert EPISODE not in answer.text
    assert (await http.get("/v1/worklists/stream", headers={})).status_code == 401


async def test_set_aside_events_and_replays_are_for_admins(http: httpx.AsyncClient, events: Events) -> None:
    await events.deliver_missing_data("iop.session.missed")
    listed = await http.get("/v1/set-aside-events", headers=ADMIN)
    assert listed.status_code == 200 and listed.json()[0]["reason"].startswith("malformed:")
    assert (await http.get("/v1/set-aside-events", headers=CLINICIAN)).status_code == 403
    replayed = await http.post(f"/v1/set-aside-events/{listed.json()[0]['id']}/replay", headers=ADMIN)
    assert replayed.status_code == 200 and replayed.json()["replays"][-1]["outcome"] == "set_aside_again"
    assert (await http.post("/v1/set-aside-events/nobody/replay", headers=ADMIN)).status_code == 404
    every = await http.post("/v1/set-aside-events/replay", headers=ADMIN)
    assert every.status_code == 200 and len(every.json()) == 1
    assert (await http.post("/v1/set-aside-events/replay", headers=CLINICIAN)).status_code == 403


async def test_health(http: httpx.AsyncClient, database: MemoryDatabase, store: CaseloadStore) -> None:
    assert (await http.get("/health/live")).status_code == 200

    async def unreachable() -> bool:
        raise ConnectionError("no broker")

    async def reachable() -> bool:
        return True

    checks = {"mongodb": reachable, "kafka": unreachable}
    state = {"caseload": Caseload(store, ZONE, 2), "readiness_checks": checks}
    async with await client_of("caseload", APP, database, state) as client:
        assert (await client.get("/health/ready")).status_code == 503
        checks["kafka"] = reachable
        assert (await client.get("/health/ready")).status_code == 200


async def test_a_projection_of_another_version_asks_for_a_rebuild(database: MemoryDatabase) -> None:
    store = CaseloadStore(database, 2, ZONE)  # type: ignore[arg-type]
    assert await store.start() is True  # the first start: a projection of this version, empty
    await database["meta"].update_one({"_id": "projection"}, {"$set": {"version": 0}})
    assert await CaseloadStore(database, 2, ZONE).start() is False  # type: ignore[arg-type]


async def test_plan_reviews_lists_open_reviews_overdue_first_until_a_new_version_is_signed(
    http: httpx.AsyncClient, events: Events
) -> None:
    await admitted(events)
    signed = TreatmentPlanSigned(episode_id=EPISODE, version=1, signed_at=T0, review_due_on=date(2026, 11, 19))
    due = TreatmentPlanReviewDue(episode_id=EPISODE, review_id="r-1", reason="reliable_deterioration", trigger_id="m-1",
                                 version=1, due_on=date(2026, 10, 22), overdue_at=T0 + timedelta(days=3))  # fmt: skip
    overdue = TreatmentPlanReviewOverdue(**(due.model_dump(exclude={"schema_version"}) | {"review_id": "r-2",
                                         "reason": "safety_alert", "due_on": date(2026, 10, 23)}))  # fmt: skip
    for data in (signed, due, overdue, due):  # the last a second event of the same review
        await events.deliver(new_event(data, source="/stepwise/care-plan"))
    rows = (await http.get("/v1/worklists/plan_reviews", headers=CLINICIAN)).json()["rows"]
    assert [(row["episode_id"], row["review_id"], row["state"]) for row in rows] == [
        (EPISODE, "r-2", "overdue"), (EPISODE, "r-1", "due")]  # fmt: skip
    assert (await http.get("/v1/worklists", headers=CLINICIAN)).json()["plan_reviews"] == 1
    [row] = (await http.get("/v1/caseload", params={"flag": "plan_review"}, headers=CLINICIAN)).json()["episodes"]
    assert row["plan_review"]["signed_version"] == 1 and row["plan_review"]["next_review_due_on"] == "2026-11-19"
    resigned = signed.model_copy(update={"version": 2, "supersedes_version": 1, "signed_at": T0 + timedelta(days=4)})
    await events.deliver(new_event(resigned, source="/stepwise/care-plan"))
    assert (await http.get("/v1/worklists/plan_reviews", headers=CLINICIAN)).json()["rows"] == []


async def test_authorizations_lists_what_needs_the_desk_earliest_first(http: httpx.AsyncClient, events: Events) -> None:
    await admitted(events)
    for event_type in ("iop.authorization.changed", "iop.authorization.review_due", "iop.certification.due",
                       "iop.service.unauthorized"):  # fmt: skip
        await events.deliver(new_event(make_data(event_type), source="/stepwise/authorizations", time=T0))
    rows = (await http.get("/v1/worklists/authorizations", headers=INTEGRATION)).json()["rows"]
    assert [(row["episode_id"], row["kind"], row["on"]) for row in rows] == [
        (EPISODE, "review_due", "2026-10-20"), (EPISODE, "unauthorized", "2026-10-20"),
        (EPISODE, "certification_due", "2026-10-20")]  # fmt: skip
    [episode] = (await http.get("/v1/caseload", params={"flag": "authorization"}, headers=CLINICIAN)).json()["episodes"]
    assert (
        episode["authorized_level"] == "IOP" and episode["authorization"]["authorizations"][0]["units_remaining"] == 2
    )
    timeline = (await http.get(f"/v1/episodes/{EPISODE}/timeline", headers=CLINICIAN)).json()["entries"]
    assert "Authorization review due 2026-10-20 (carelon, exhaustion 2026-10-23)" in [e["summary"] for e in timeline]


async def test_a_day_given_as_a_number_is_refused(http: httpx.AsyncClient, intake: FakeIntake) -> None:
    """A day is ISO text, as the document says: ``0`` is not the first of January 1970 (nor a birth date searched
    for at intake)."""
    for path, day in [("/v1/worklists/today", "date"), ("/v1/census", "date"), ("/v1/census", "since"),
                      ("/v1/census", "until")]:  # fmt: skip
        refused = await http.get(path, params={day: "0"}, headers=CLINICIAN)
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["query", day], (path, day)
    searched = await http.post("/v1/caseload/search", json={"date_of_birth": 0}, headers=CLINICIAN)
    assert searched.status_code == 422 and searched.json()["detail"][0]["loc"] == ["body", "date_of_birth"]
    assert intake.authorizations == []
