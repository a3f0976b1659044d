"""The authorizations service on fakes: a coordinator's endpoints (recording, decisions, reviews, certifications,
the worklist), care_plan's events drawn down through the real subscribers, and what is queued to publish."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from services.authorizations.changes import Desk
from services.authorizations.store import COVERAGE
from services.common.auth import Role
from services.common.utc import utc_now
from stepwise_contract import (
    CareLevel,
    CareLevelAssigned,
    CareLevelChanged,
    EpisodeDischarged,
    EpisodeGraduated,
    Schedule,
    ScheduleChanged,
    ScheduledSession,
    ServiceDayCompleted,
    ServiceDelivered,
    new_event,
)
from tests.service.authorizations.conftest import APP
from tests.service.conftest import Events, as_role, queued
from tests.service.conftest import api as client_of
from tests.service.memory_mongo import MemoryDatabase

UR = as_role(Role.UTILIZATION_REVIEW)
CLINICIAN = as_role(Role.CLINICIAN)
ZONE = ZoneInfo("America/New_York")
EPISODE = "ep-1"
CARE_PLAN = "/stepwise/care-plan"
TODAY = date(2026, 12, 1)  # the tier's clock: Tuesday 1 December 2026 in New York


def body(**terms: Any) -> dict[str, Any]:
    return {
        "payer": "carelon",
        "authorization_number": "PA-2026-118",
        "level": "IOP",
        "unit": "day",
        "units_authorized": 10,
        "start_date": "2026-11-02",
        "end_date": "2027-01-29",
        "status": "approved",
    } | terms


def schedule(days: list[date]) -> Schedule:
    sessions = [
        ScheduledSession(
            session_id=f"iop-am-{on:%Y%m%d}",
            starts_at=datetime.combine(on, time(9), ZONE),
            ends_at=datetime.combine(on, time(12), ZONE),
            group_id="iop-am",
        )
        for on in days
    ]
    return Schedule(
        timezone=str(ZONE), track="morning", days_per_week=5, hours_per_session=3, weeks=8, sessions=sessions
    )


def weekdays(start: date, count: int) -> list[date]:
    return [d for d in (start + timedelta(days=n) for n in range(count * 2)) if d.weekday() < 5][:count]


def day(on: date, revision: int = 1, level: str = "IOP", code: str | None = "H0015") -> ServiceDayCompleted:
    return ServiceDayCompleted(
        episode_id=EPISODE,
        service_date=on,
        revision=revision,
        level=CareLevel(level),
        services=1,
        minutes=180,
        service_ids=[],
        per_diem_code=code,
        completed_at=utc_now(),
    )


async def published(database: MemoryDatabase, topic: str) -> list[dict[str, Any]]:
    return [data for found, data in await queued(database[COVERAGE]) if found == topic]


async def test_a_coordinator_records_decides_and_reviews_an_authorization(
    http: httpx.AsyncClient, database: MemoryDatabase
) -> None:
    recorded = await http.post(
        f"/v1/episodes/{EPISODE}/authorizations", json=body(next_review_on="2026-12-14"), headers=UR
    )
    assert recorded.status_code == 201, recorded.text
    shown = recorded.json()
    assert (shown["units_remaining"], shown["review_due_on"], shown["review_reason"]) == (
        10,
        "2026-12-10",
        "next_review",
    )
    assert "H0015" in shown["codes"] and shown["why"] == "the next review date (2026-12-14) less 2 business days"
    again = await http.post(f"/v1/episodes/{EPISODE}/authorizations", json=body(), headers=UR)
    assert again.status_code == 409
    backwards = await http.post(
        f"/v1/episodes/{EPISODE}/authorizations",
        json=body(authorization_number="PA-2", end_date="2026-10-01"),
        headers=UR,
    )
    assert backwards.status_code == 422 and backwards.json()["detail"][0]["loc"] == ["body", "end_date"]
    assert (
        await http.post(f"/v1/episodes/{EPISODE}/authorizations", json=body(), headers=CLINICIAN)
    ).status_code == 403

    authorization_id = shown["authorization_id"]
    decided = await http.patch(
        f"/v1/authorizations/{authorization_id}",
        headers=UR,
        json={"status": "partially_approved", "units_authorized": 6, "reason": "6 of 10"},
    )
    assert decided.status_code == 200 and (decided.json()["revision"], decided.json()["units_authorized"]) == (2, 6)
    assert decided.json()["history"][-1]["reason"] == "6 of 10"
    nothing = await http.patch(f"/v1/authorizations/{authorization_id}", json={"reason": "no change"}, headers=UR)
    assert nothing.status_code == 422
    unknown = await http.patch("/v1/authorizations/nope", json={"status": "denied", "reason": "x"}, headers=UR)
    assert unknown.status_code == 404

    reviewed = await http.post(
        f"/v1/authorizations/{authorization_id}/reviews",
        headers=UR,
        json={"outcome": "approved", "units_added": 4, "new_end_date": "2027-02-26"},
    )
    assert reviewed.status_code == 201
    assert (reviewed.json()["units_authorized"], reviewed.json()["end_date"], reviewed.json()["status"]) == (
        10,
        "2027-02-26",
        "approved",
    )
    denied_with_units = await http.post(
        f"/v1/authorizations/{authorization_id}/reviews", headers=UR, json={"outcome": "denied", "units_added": 3}
    )
    assert denied_with_units.status_code == 422
    assert (
        await http.post("/v1/authorizations/nope/reviews", json={"outcome": "pending"}, headers=UR)
    ).status_code == 404

    listed = await http.get(f"/v1/episodes/{EPISODE}/authorizations", headers=CLINICIAN)
    assert listed.status_code == 200 and [a["revision"] for a in listed.json()] == [3]
    assert (await http.get(f"/v1/episodes/{EPISODE}/authorizations")).status_code == 401
    changed = await published(database, "iop.authorization.changed")
    assert [c["revision"] for c in changed] == [1, 2, 3]
    assert all("PA-2026-118" not in str(c) for c in changed)
    audit = [entry async for entry in database["audit_log"].find({})]
    assert [(entry["action"], entry["episode_id"]) for entry in audit] == [("read_authorizations", EPISODE)]


async def test_the_worklist_orders_by_due_date_and_filters(http: httpx.AsyncClient, database: MemoryDatabase) -> None:
    for episode, review_on, payer in (("ep-late", "2026-12-18", "carelon"), ("ep-soon", "2026-12-08", "some-plan")):
        answer = await http.post(
            f"/v1/episodes/{episode}/authorizations", json=body(next_review_on=review_on, payer=payer), headers=UR
        )
        assert answer.status_code == 201
    lines = (await http.get("/v1/reviews", headers=UR)).json()
    assert [(line["episode_id"], line["review_due_on"]) for line in lines] == [
        ("ep-soon", "2026-12-04"),
        ("ep-late", "2026-12-16"),
    ]
    before = (await http.get("/v1/reviews", params={"due_before": "2026-12-10"}, headers=UR)).json()
    assert [line["episode_id"] for line in before] == ["ep-soon"]
    by_payer = (await http.get("/v1/reviews", params={"payer": "carelon", "reason": "next_review"}, headers=UR)).json()
    assert [line["episode_id"] for line in by_payer] == ["ep-late"]
    assert (await http.get("/v1/reviews", params={"payer": "Not A Payer"}, headers=UR)).status_code == 422
    # Each episode a worklist showed is audited with the person who asked, once per answer.
    audit = [entry async for entry in database["audit_log"].find({"action": "read_reviews"})]
    assert sorted(entry["episode_id"] for entry in audit) == ["ep-late", "ep-late", "ep-soon", "ep-soon"]
    assert {entry["role"] for entry in audit} == {"utilization_review"}


async def test_a_certification_is_recorded_and_the_next_is_due_every_other_month(
    http: httpx.AsyncClient, database: MemoryDatabase
) -> None:
    await http.post(
        f"/v1/episodes/{EPISODE}/authorizations", json=body(payer="medicare", start_date="2026-11-30"), headers=UR
    )
    [initial] = await published(database, "iop.certification.due")
    assert (initial["reason"], initial["due_on"]) == ("initial", "2026-11-30")
    made = await http.post(
        f"/v1/episodes/{EPISODE}/certifications",
        headers=CLINICIAN,
        json={"certified_on": "2026-12-01", "hours_per_week": 9, "clinician": "dr.rivera"},
    )
    assert made.status_code == 201 and made.json()["recorded_by"].startswith("token:")
    [recorded] = await published(database, "iop.certification.recorded")  # in the certification's write
    assert (recorded["payer"], recorded["certified_on"], recorded["hours_per_week"]) == ("medicare", "2026-12-01", 9)
    assert recorded["next_due_on"] == "2027-02-01" and "dr.rivera" not in str(recorded)
    refused = await http.post(
        f"/v1/episodes/{EPISODE}/certifications",
        headers=CLINICIAN,
        json={"certified_on": "2026-12-01", "hours_per_week": 0, "clinician": "dr.rivera"},
    )
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "hours_per_week"]
    assert len(await published(database, "iop.certification.due")) == 1  # the next is due 2027-02-01: not yet


async def test_care_plans_events_are_drawn_down_once_each(events: Events, desk: Desk, http: httpx.AsyncClient) -> None:
    await http.post(f"/v1/episodes/{EPISODE}/authorizations", json=body(), headers=UR)
    ahead = weekdays(TODAY, 20)
    assigned = CareLevelAssigned(
        episode_id=EPISODE,
        level=CareLevel.IOP,
        status="active",
        assigned_at=utc_now(),
        assessment_id="a",
        schedule=schedule(ahead),
        rationale=[],
        policy_version="p",
    )
    await events.deliver(new_event(assigned, source=CARE_PLAN))
    first = new_event(day(date(2026, 11, 2)), source=CARE_PLAN)
    await events.deliver(first)
    await events.deliver(first)  # a redelivery
    services = ServiceDelivered.model_validate(
        {
            "episode_id": EPISODE,
            "service_id": "iop-am-20261103",
            "revision": 1,
            "status": "delivered",
            "session_id": "iop-am-20261103",
            "kind": "group",
            "group_id": "iop-am",
            "service_date": "2026-11-03",
            "minutes": 180,
            "code": "90853",
            "units": 1,
            "level": "IOP",
            "attendance": "attended",
            "recorded_at": utc_now(),
        }
    )
    await events.deliver(new_event(services, source=CARE_PLAN))  # no session authorization: not counted, not said
    moved = ScheduleChanged(episode_id=EPISODE, level=CareLevel.IOP, changed_at=utc_now(), schedule=schedule(ahead[:3]))
    await events.deliver(new_event(moved, source=CARE_PLAN))
    [shown] = (await http.get(f"/v1/episodes/{EPISODE}/authorizations", headers=UR)).json()
    assert (shown["units_used"], shown["projected_exhaustion_on"]) == (1, None)  # 9 left, 3 sessions ahead

    stepped = CareLevelChanged(
        episode_id=EPISODE,
        from_level=CareLevel.IOP,
        to_level=CareLevel.PHP,
        direction="up",
        recommendation_id="r",
        changed_at=utc_now(),
        status="active",
        schedule=schedule(ahead),
    )
    await events.deliver(new_event(stepped, source=CARE_PLAN))
    stored = await desk.store.get(EPISODE)
    assert stored is not None and stored.coverage.clinical_level == "PHP"
    await events.deliver(
        new_event(
            EpisodeGraduated(episode_id=EPISODE, graduated_at=utc_now(), level=CareLevel.PHP, by="completion"),
            source=CARE_PLAN,
        )
    )
    await events.deliver(
        new_event(
            EpisodeDischarged(episode_id="ep-2", discharged_at=utc_now(), level=CareLevel.IOP, reason_code="other"),
            source=CARE_PLAN,
        )
    )
    ended = await desk.store.get(EPISODE)
    assert ended is not None and ended.coverage.ended and ended.next_check_on is None
    assert (await http.get("/v1/reviews", headers=UR)).json() == []  # nothing is due for an episode that ended


async def test_a_malformed_event_is_set_aside_for_admins_and_health_says_what_is_down(
    http: httpx.AsyncClient, events: Events, database: MemoryDatabase, desk: Desk
) -> None:
    await events.deliver_missing_data("iop.service_day.completed")
    admin = as_role(Role.ADMIN)
    [shelved] = (await http.get("/v1/set-aside-events", headers=admin)).json()
    assert shelved["topic"] == "iop.service_day.completed" and "value" not in shelved
    assert (await http.get("/v1/set-aside-events", headers=UR)).status_code == 403
    again = await http.post(f"/v1/set-aside-events/{shelved['id']}/replay", headers=admin)
    assert again.status_code == 200 and again.json()["replays"][-1]["outcome"] == "set_aside_again"
    assert (await http.post("/v1/set-aside-events/nope/replay", headers=admin)).status_code == 404
    assert (await http.post("/v1/set-aside-events/replay", headers=admin)).status_code == 200
    assert (await http.post("/v1/set-aside-events/replay", headers=UR)).status_code == 403

    async def up() -> bool:
        return True

    async def down() -> bool:
        raise ConnectionError("the store is unreachable")

    for checks, expected in (({"mongodb": up, "kafka": up}, 200), ({"mongodb": down, "kafka": up}, 503)):
        state = {"desk": desk, "readiness_checks": checks}
        async with await client_of("authorizations", APP, database, state) as client:
            assert (await client.get("/health/live")).status_code == 200
            assert (await client.get("/health/ready")).status_code == expected


async def test_the_worklist_refuses_a_day_given_as_a_number(http: httpx.AsyncClient) -> None:
    """``due_before=0`` is not the first of January 1970: a day is ISO text, as the document says."""
    refused = await http.get("/v1/reviews", params={"due_before": "0"}, headers=UR)
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["query", "due_before"]
    assert (await http.get("/v1/reviews", params={"due_before": "2026-12-08"}, headers=UR)).status_code == 200


async def test_an_episodes_first_event_makes_its_coverage_in_one_write(
    events: Events, desk: Desk, database: MemoryDatabase
) -> None:
    """No empty coverage is written and loaded again first, nor looked for: the change decides on an empty one and
    inserts it (issue 31: one round trip). A redelivery is refused by the insert, then found applied."""
    assigned = CareLevelAssigned(episode_id=EPISODE, level=CareLevel.IOP, status="active", assigned_at=utc_now(),
                                 assessment_id="a", schedule=schedule(weekdays(TODAY, 20)), rationale=[],
                                 policy_version="p")  # fmt: skip
    database.calls.clear()
    event = new_event(assigned, source=CARE_PLAN)
    await events.deliver(event)
    assert database.calls == [("insert", COVERAGE)]
    stored = await desk.store.get(EPISODE)
    assert stored is not None and stored.coverage.calendar and event.dedup_key in stored.applied_events
    database.calls.clear()
    await events.deliver(event)  # a redelivery: recognised, nothing written
    assert database.calls == [("insert", COVERAGE), ("find", COVERAGE)]
