"""care_plan in-process: each handler applying its event, each endpoint's success and main error."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from pymongo.errors import AutoReconnect, DocumentTooLarge, WriteError

from services.care_plan import api
from services.care_plan.app import create_broker
from services.care_plan.changes import (
    Decision,
    SheetLine,
    admit_waitlisted,
    adopt_pending,
    change_plan,
    change_plan_placed,
    hold_place,
    learn,
    record_session_attendance,
    record_sheet,
    start_plan,
)
from services.care_plan.consents import IntakeConsents
from services.care_plan.domain.groups import Joined, Waitlisted, first_meeting_after
from services.care_plan.domain.model import CareInput, CarePlan, CarePlanError
from services.care_plan.domain.policy import CarePolicy, load_policy
from services.care_plan.handlers import EVENT_HANDLERS, Planning
from services.care_plan.settings import CarePlanSettings
from services.care_plan.store import PLANS, SEATS, CarePlanStore
from services.common.auth import Role
from services.common.consumer import HANDLER_CONTEXT
from services.common.dependencies import Dependencies
from services.common.kafka import ServiceBroker
from services.common.outbox import no_relay
from services.common.utc import set_clock_offset, utc_now
from stepwise_contract import (
    AssessmentCompleted,
    AttendanceReported,
    CareLevel,
    DimensionRatings,
    DrugScreenRecorded,
    Reason,
    SafetyAlertRaised,
    ScreenResult,
    SheetEntry,
    new_event,
)
from tests.service.conftest import Clock, Events, as_role, queued, running, service_app, set_aside
from tests.service.conftest import api as client_of
from tests.service.fake_intake import listed
from tests.service.memory_mongo import MemoryDatabase

SETTINGS = CarePlanSettings(_env_file=None)  # type: ignore[call-arg]
POLICY = load_policy(SETTINGS.care_plan_policy_file)
CLINICIAN = as_role(Role.CLINICIAN)
APP = service_app("care_plan", [api.router, api.groups], consumes=True)
"""One app for the module (its OpenAPI document, which the tier reads to name routes, is built once)."""


@pytest.fixture
async def store(database: MemoryDatabase) -> CarePlanStore:
    store = CarePlanStore(database, wake_relay=no_relay)  # type: ignore[arg-type]
    await store.create_indexes()  # as the service's start-up does: the unique seat index among them
    return store


@pytest.fixture
def kafka() -> ServiceBroker:
    return create_broker(SETTINGS)


@pytest.fixture
async def events(
    database: MemoryDatabase, store: CarePlanStore, shelf: Any, kafka: ServiceBroker
) -> AsyncIterator[Events]:
    broker = kafka.broker
    context = {HANDLER_CONTEXT: Planning(store, POLICY, SETTINGS.clinic_timezone), "event_shelf": shelf}
    async for running_events in running("care_plan", broker, context):
        yield running_events


@pytest.fixture
async def http(
    database: MemoryDatabase, store: CarePlanStore, kafka: ServiceBroker
) -> AsyncIterator[httpx.AsyncClient]:
    state = {"store": store, "policy": POLICY, "kafka": kafka, "clinic_timezone": SETTINGS.clinic_timezone,
             "consents": consents_answering(FAMILY_CONSENT)}  # fmt: skip
    async with await client_of("care_plan", APP, database, state) as client:
        yield client


FAMILY_CONSENT = [listed("c-1", "family")]
"""Intake's answer for an episode whose consent names a family member for appointments (test_fakes_contract.py)."""


def consents_answering(recipients: list[dict[str, Any]], status_code: int = 200) -> IntakeConsents:
    """care_plan's consent check, with intake answering ``recipients`` for every episode."""

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path.endswith("/recipients") and request.url.params["scope"] == "appointments"
        return httpx.Response(status_code, json=recipients)

    return IntakeConsents(SETTINGS, Dependencies(), transport=httpx.MockTransport(answer))


def first_session_id(group_id: str = "iop-am") -> str:
    """The session a plan that joins ``group_id`` today meets first."""
    group = POLICY.group(group_id)
    assert group is not None
    today = utc_now().astimezone(ZoneInfo(SETTINGS.clinic_timezone)).date()
    return f"{group_id}-{first_meeting_after(group, today):%Y%m%d}"


def first_session_start(group_id: str = "iop-am") -> datetime:
    group = POLICY.group(group_id)
    assert group is not None
    day = datetime.strptime(first_session_id(group_id).removeprefix(f"{group_id}-"), "%Y%m%d").date()
    return datetime.combine(day, group.starts_at, tzinfo=ZoneInfo(SETTINGS.clinic_timezone))


@contextlib.contextmanager
def clock_at(moment: datetime) -> Iterator[None]:
    """care_plan's clock (this process's ``utc_now``) at ``moment`` for the block, as a test drill shifts it; then
    back where the tier's clock stood."""
    before = utc_now()
    set_clock_offset((moment - datetime.now(UTC)).total_seconds())
    try:
        yield
    finally:
        set_clock_offset((before - datetime.now(UTC)).total_seconds())


def once_the_first_session_began(group_id: str = "iop-am") -> contextlib.AbstractContextManager[None]:
    """Attendance is recorded after the session has begun: the clock 5 minutes into the first one."""
    return clock_at(first_session_start(group_id) + timedelta(minutes=5))


def assessment(
    episode_id: str, kind: str = "intake", level: CareLevel = CareLevel.IOP, **fields: Any
) -> AssessmentCompleted:
    return AssessmentCompleted(
        episode_id=episode_id,
        assessment_id=str(uuid.uuid4()),
        kind=kind,  # type: ignore[arg-type]
        program="adult",
        assessed_at=utc_now(),
        dimensions=DimensionRatings(withdrawal=1, biomedical=0, emotional=2, readiness=2, relapse=2, environment=1),
        recommended_level=level,
        rationale=[Reason(code="recommended_level", text=f"Recommended level of care: {level.value}.")],
        policy_version="test",
        **fields,
    )


def intake_event(data: Any) -> Any:
    return new_event(data, source="/stepwise/intake")


async def active_plan(events: Events, store: CarePlanStore, level: CareLevel = CareLevel.IOP) -> str:
    episode_id = str(uuid.uuid4())
    await events.deliver(intake_event(assessment(episode_id, level=level)))
    stored = await store.get(episode_id)
    assert stored is not None
    return episode_id


# Handlers


async def test_an_intake_assessment_starts_a_plan_and_announces_it(
    events: Events, store: CarePlanStore, database: MemoryDatabase
) -> None:
    episode_id = await active_plan(events, store)
    stored = await store.get(episode_id)
    assert stored is not None and stored.plan.status == "active" and stored.plan.level == CareLevel.IOP
    assert stored.plan.schedule is not None and stored.plan.schedule.sessions
    assert [topic for topic, _ in await queued(database[PLANS])] == ["iop.care_level.assigned"]


async def test_a_redelivered_intake_assessment_changes_nothing(
    events: Events, store: CarePlanStore, database: MemoryDatabase
) -> None:
    episode_id = str(uuid.uuid4())
    event = intake_event(assessment(episode_id))
    await events.deliver(event)
    first = await store.get(episode_id)
    await events.deliver(event)
    assert await store.get(episode_id) == first
    assert len(await queued(database[PLANS])) == 1


async def test_a_level_not_offered_refers_out(events: Events, store: CarePlanStore) -> None:
    episode_id = await active_plan(events, store, CareLevel.RESIDENTIAL)
    stored = await store.get(episode_id)
    assert stored is not None and stored.plan.status == "referred_out" and stored.plan.schedule is None


async def test_a_reassessment_feeds_the_plans_review(events: Events, store: CarePlanStore) -> None:
    episode_id = await active_plan(events, store)
    await events.deliver(intake_event(assessment(episode_id, kind="reassessment")))
    stored = await store.get(episode_id)
    assert stored is not None and [i.kind for i in stored.plan.inputs] == ["assessment"]


async def test_a_safety_alert_feeds_the_plans_review(events: Events, store: CarePlanStore) -> None:
    episode_id = await active_plan(events, store)
    alert = SafetyAlertRaised(episode_id=episode_id, alert_id="a1", assessment_id="x", level="immediate",
                              reasons=["cssrs_high_risk"], raised_at=utc_now())  # fmt: skip
    await events.deliver(intake_event(alert))
    stored = await store.get(episode_id)
    assert stored is not None
    assert [(i.kind, i.alert_level) for i in stored.plan.inputs] == [("safety_alert", "immediate")]


async def test_a_drug_screen_feeds_the_plans_review(events: Events, store: CarePlanStore) -> None:
    episode_id = await active_plan(events, store)
    screen = DrugScreenRecorded(episode_id=episode_id, screen_id="d1", collected_at=utc_now(),
                                recorded_at=utc_now(), unexpected_positive=True,
                                results=[ScreenResult(substance="fentanyl", result="positive")])  # fmt: skip
    await events.deliver(intake_event(screen))
    stored = await store.get(episode_id)
    assert stored is not None
    assert [(i.kind, i.unexpected_positive) for i in stored.plan.inputs] == [("drug_screen", True)]


async def test_reported_attendance_is_recorded(events: Events, store: CarePlanStore) -> None:
    episode_id = await active_plan(events, store)
    report = AttendanceReported(episode_id=episode_id, session_id=first_session_id(), status="attended",
                                reported_at=utc_now())  # fmt: skip
    with once_the_first_session_began():
        await events.deliver(new_event(report, source="/ehr"))
    stored = await store.get(episode_id)
    assert stored is not None and stored.plan.attendance[first_session_id()].status == "attended"


async def test_attendance_for_an_unknown_session_is_set_aside_with_its_reason(
    events: Events, store: CarePlanStore, database: MemoryDatabase
) -> None:
    episode_id = await active_plan(events, store)
    report = AttendanceReported(episode_id=episode_id, session_id="s999", status="attended",
                                reported_at=utc_now())  # fmt: skip
    await events.deliver(new_event(report, source="/ehr"))
    [shelved] = await set_aside(database)
    assert shelved["topic"] == "iop.attendance.reported" and shelved["reason"].startswith("rejected: unknown_session")


@pytest.mark.parametrize("topic", sorted(model.event_type for model in EVENT_HANDLERS))
async def test_a_malformed_event_is_set_aside_naming_the_field(
    events: Events, database: MemoryDatabase, topic: str
) -> None:
    await events.deliver_missing_data(topic)
    [shelved] = await set_aside(database)
    assert shelved["topic"] == topic and shelved["reason"].startswith("malformed:")


# Endpoints


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


async def test_set_authorization(http: httpx.AsyncClient, events: Events, store: CarePlanStore) -> None:
    episode_id = await active_plan(events, store)
    body = {"level": "IOP", "authorized_through": "2027-01-31", "reference": "PA-1"}
    authorized = await http.put(f"/v1/episodes/{episode_id}/authorization", json=body, headers=CLINICIAN)
    assert authorized.status_code == 200 and authorized.json()["authorization"]["reference"] == "PA-1"
    unknown = await http.put("/v1/episodes/nobody/authorization", json=body, headers=CLINICIAN)
    assert unknown.status_code == 404


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


ADMIN = as_role(Role.ADMIN)


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


# Program groups, the day's sheet, appointments


async def test_a_plan_joins_its_groups_calendar(events: Events, store: CarePlanStore) -> None:
    episode_id = await active_plan(events, store)
    stored = await store.get(episode_id)
    assert stored is not None and stored.plan.group is not None and stored.plan.group.group_id == "iop-am"
    assert stored.plan.schedule is not None
    first = stored.plan.schedule.sessions[0]
    assert (first.session_id, first.kind, first.group_id) == (first_session_id(), "group", "iop-am")


async def test_list_and_get_groups(http: httpx.AsyncClient, events: Events, store: CarePlanStore) -> None:
    episode_id = await active_plan(events, store)
    listed = await http.get("/v1/groups", headers=CLINICIAN)
    assert listed.status_code == 200
    assert [g["group"]["group_id"] for g in listed.json()] == [group.group_id for group in POLICY.groups]
    found = await http.get("/v1/groups/iop-am", headers=CLINICIAN)
    assert found.status_code == 200
    assert found.json()["members"] == [episode_id] and found.json()["places_left"] == 11
    assert first_session_id() in [session["session_id"] for session in found.json()["next_sessions"]]
    assert (await http.get("/v1/groups/nope", headers=CLINICIAN)).status_code == 404
    assert (await http.get("/v1/groups")).status_code == 401


async def test_a_group_sessions_roster(http: httpx.AsyncClient, events: Events, store: CarePlanStore) -> None:
    members = sorted([await active_plan(events, store) for _ in range(3)])
    path = f"/v1/groups/iop-am/sessions/{first_session_id()}"
    roster = await http.get(path, headers=CLINICIAN)
    assert roster.status_code == 200
    assert [line["episode_id"] for line in roster.json()["members"]] == members
    assert all(line["attendance"] is None for line in roster.json()["members"])
    not_a_meeting = await http.get("/v1/groups/iop-am/sessions/iop-am-20261206", headers=CLINICIAN)  # a Sunday
    assert not_a_meeting.status_code == 404
    not_a_date = await http.get("/v1/groups/iop-am/sessions/iop-am-2026127", headers=CLINICIAN)
    assert not_a_date.status_code == 404
    gone = members[0]
    assert (await http.post(f"/v1/episodes/{gone}/discharge", json={"reason_code": "other"},
                            headers=CLINICIAN)).status_code == 200  # fmt: skip
    roster = await http.get(path, headers=CLINICIAN)
    assert [line["episode_id"] for line in roster.json()["members"]] == members[1:]  # an ended plan is off it


async def test_one_sheet_records_the_whole_group(
    http: httpx.AsyncClient, events: Events, store: CarePlanStore, database: MemoryDatabase
) -> None:
    present, late, away, left_off = [await active_plan(events, store) for _ in range(4)]
    session_id = first_session_id()
    sheet = {"attendance": [{"episode_id": present, "status": "attended"},
                            {"episode_id": late, "status": "late", "minutes": 150},
                            {"episode_id": away, "status": "missed"},
                            {"episode_id": "stranger", "status": "attended"},
                            {"episode_id": present, "status": "attended"}]}  # fmt: skip
    path = f"/v1/groups/iop-am/sessions/{session_id}/attendance"
    with once_the_first_session_began():  # the sheet is recorded after the session has begun
        answer = await http.post(path, json=sheet, headers=CLINICIAN)
        assert answer.status_code == 200, answer.text
        outcomes = [(line["episode_id"], line["outcome"], line["code"]) for line in answer.json()["lines"]]
        assert outcomes == [(present, "recorded", None), (late, "recorded", None), (away, "recorded", None),
                            ("stranger", "rejected", "not_a_member"),
                            (present, "rejected", "listed_twice")]  # fmt: skip
        assert answer.json()["not_on_sheet"] == [left_off]
        late_plan = await store.get(late)
        assert late_plan is not None and late_plan.plan.attendance[session_id].minutes == 150
        assert [topic for topic, _ in await queued(database[PLANS])].count("iop.session.missed") == 1

        again = await http.post(path, json=sheet, headers=CLINICIAN)
        assert [line["outcome"] for line in again.json()["lines"]][:3] == ["unchanged"] * 3
        changed = {"attendance": [{"episode_id": away, "status": "attended"}]}
        differently = await http.post(path, json=changed, headers=CLINICIAN)
        assert differently.json()["lines"][0]["code"] == "recorded_differently"
        assert (
            await http.post("/v1/groups/nope/sessions/x/attendance", json=sheet, headers=CLINICIAN)
        ).status_code == 404
        empty = await http.post(path, json={"attendance": []}, headers=CLINICIAN)
        assert empty.status_code == 422 and empty.json()["detail"][0]["loc"] == ["body", "attendance"]


async def test_a_sheet_command_stores_every_line_it_can_and_sets_aside_the_rest(
    events: Events, store: CarePlanStore, database: MemoryDatabase
) -> None:
    member = await active_plan(events, store)
    session_id = first_session_id()
    lines = [SheetEntry(episode_id=member, status="attended"), SheetEntry(episode_id="stranger", status="attended")]
    sheet = AttendanceReported(schema_version=2, group_id="iop-am", session_id=session_id,
                               reported_at=utc_now(), attendance=lines)  # fmt: skip
    event = new_event(sheet, source="/ehr")
    assert event.subject == f"iop-am/{session_id}"
    with once_the_first_session_began():
        await events.deliver(event)
        stored = await store.get(member)
        assert stored is not None and stored.plan.attendance[session_id].status == "attended"
        [shelved] = await set_aside(database)
        assert shelved["reason"] == "rejected: 1 of 2 lines not stored (stranger: not_a_member)"
        await events.deliver(event)  # a redelivery stores nothing twice
    assert [topic for topic, _ in await queued(database[PLANS])].count("iop.service.delivered") == 1


async def test_a_full_group_waitlists_the_next_patient_until_a_place_frees(
    database: MemoryDatabase, store: CarePlanStore, shelf: Any
) -> None:
    small = POLICY.model_copy(
        update={
            "groups": [g.model_copy(update={"capacity": 1}) if g.group_id == "iop-am" else g for g in POLICY.groups]
        }
    )
    kafka = create_broker(SETTINGS)
    context = {HANDLER_CONTEXT: Planning(store, small, SETTINGS.clinic_timezone), "event_shelf": shelf}
    async for events in running("care_plan", kafka.broker, context):
        first = await active_plan(events, store)
        second = await active_plan(events, store)
        waiting = await store.get(second)
        assert waiting is not None and waiting.plan.group is None and waiting.plan.waitlist is not None
        assert waiting.plan.schedule is not None and waiting.plan.schedule.sessions == []
        topics = [topic for topic, _ in await queued(database[PLANS])]
        assert topics == ["iop.care_level.assigned", "iop.care_level.assigned", "iop.group.waitlisted"]

        assert await admit_waitlisted(store, small) == 0  # still full
        await change_plan(store, small, first, lambda plan, now: (discharged(plan, now), [], None))
        assert await admit_waitlisted(store, small) == 1
        joined = await store.get(second)
        assert joined is not None and joined.plan.group is not None and joined.plan.waitlist is None
        assert joined.plan.schedule is not None and joined.plan.schedule.sessions[0].session_id == first_session_id()
        assert [topic for topic, _ in await queued(database[PLANS])][-1] == "iop.schedule.changed"


def discharged(plan: CarePlan, now: datetime) -> CarePlan:
    return plan.model_copy(update={"status": "discharged", "ended_at": now})


async def test_book_and_cancel_appointments(
    http: httpx.AsyncClient, events: Events, store: CarePlanStore, database: MemoryDatabase
) -> None:
    episode_id = await active_plan(events, store)
    path = f"/v1/episodes/{episode_id}/appointments"
    at = (utc_now() + timedelta(days=2)).replace(hour=20, minute=0, second=0, microsecond=0)
    booked = await http.post(path, json={"kind": "individual", "starts_at": at.isoformat()}, headers=CLINICIAN)
    assert booked.status_code == 201, booked.text
    assert booked.json()["kind"] == "individual" and booked.json()["group_id"] is None
    local = at.astimezone(ZoneInfo(SETTINGS.clinic_timezone))
    assert booked.json()["session_id"] == f"individual-{local:%Y%m%d-%H%M}"
    family = await http.post(path, json={"kind": "family", "starts_at": (at + timedelta(days=1)).isoformat()},
                             headers=CLINICIAN)  # fmt: skip
    assert family.status_code == 201 and family.json()["kind"] == "family"
    clash = await http.post(path, json={"kind": "individual", "starts_at": at.isoformat()}, headers=CLINICIAN)
    assert clash.status_code == 409
    unknown = await http.post(path, json={"kind": "yoga", "starts_at": at.isoformat()}, headers=CLINICIAN)
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"] == ["body", "kind"]
    assert "yoga" not in unknown.text  # the field and the rule, never the value
    assert "iop.schedule.changed" in [topic for topic, _ in await queued(database[PLANS])]

    cancelled = await http.delete(f"{path}/{booked.json()['session_id']}", headers=CLINICIAN)
    assert cancelled.status_code == 200
    sessions = [s["session_id"] for s in cancelled.json()["schedule"]["sessions"]]
    assert booked.json()["session_id"] not in sessions and family.json()["session_id"] in sessions
    assert (await http.delete(f"{path}/{booked.json()['session_id']}", headers=CLINICIAN)).status_code == 404


async def test_only_a_clinician_books_and_cancels_appointments(
    http: httpx.AsyncClient, events: Events, store: CarePlanStore
) -> None:
    episode_id = await active_plan(events, store)
    path = f"/v1/episodes/{episode_id}/appointments"
    body = {"kind": "individual", "starts_at": (utc_now() + timedelta(days=2)).isoformat()}
    booked = await http.post(path, json=body, headers=CLINICIAN)
    assert booked.status_code == 201
    for role in (Role.INTEGRATION, Role.INTAKE_STAFF, Role.ADMIN):
        assert (await http.post(path, json=body, headers=as_role(role))).status_code == 403, role
        cancelled = await http.delete(f"{path}/{booked.json()['session_id']}", headers=as_role(role))
        assert cancelled.status_code == 403, role
    stored = await store.get(episode_id)
    assert stored is not None and [a.session_id for a in stored.plan.appointments] == [booked.json()["session_id"]]


async def test_every_rule_checked_by_hand_is_a_422_naming_the_field(
    http: httpx.AsyncClient, events: Events, store: CarePlanStore, clock: Clock
) -> None:
    episode_id = await active_plan(events, store)
    episode = f"/v1/episodes/{episode_id}"
    attendance = f"{episode}/sessions/{first_session_id()}/attendance"
    soon = (utc_now() + timedelta(days=2)).replace(hour=20, minute=0, second=0, microsecond=0)
    schedule = {"track": "evening", "weekdays": ["mon"], "hours_per_session": 3, "weeks": 6}
    with once_the_first_session_began():  # attendance is taken once the session has begun
        refused = {
            "notice_without_excuse": await http.post(attendance, json={"status": "missed",
                                                     "notice_given_at": "2026-11-20T09:00:00Z"}, headers=CLINICIAN),
            "minutes_without_attendance": await http.post(attendance, json={"status": "missed", "minutes": 30},
                                                          headers=CLINICIAN),
            "minutes_over_session": await http.post(attendance, json={"status": "late", "minutes": 719},
                                                    headers=CLINICIAN),
        }  # fmt: skip
    refused |= {
        "unknown_kind": await http.post(f"{episode}/appointments", json={"kind": "yogaclass",
                                        "starts_at": soon.isoformat()}, headers=CLINICIAN),
        "appointment_in_past": await http.post(f"{episode}/appointments", json={"kind": "individual",
                                               "starts_at": "2020-01-06T14:00:00Z"}, headers=CLINICIAN),
        "below_minimum_hours": await http.put(f"{episode}/care-plan/schedule", json=schedule, headers=CLINICIAN),
    }  # fmt: skip
    fields = {"notice_without_excuse": ["body", "notice_given_at"], "minutes_without_attendance": ["body", "minutes"],
              "minutes_over_session": ["body", "minutes"], "unknown_kind": ["body", "kind"],
              "appointment_in_past": ["body", "starts_at"], "below_minimum_hours": ["body"]}  # fmt: skip
    for code, answer in refused.items():
        assert answer.status_code == 422, (code, answer.text)
        [entry] = answer.json()["detail"]
        assert (entry["loc"], entry["type"]) == (fields[code], code) and set(entry) == {"loc", "msg", "type"}
    assert "719" not in refused["minutes_over_session"].text and "yogaclass" not in refused["unknown_kind"].text
    booked = await http.post(f"{episode}/appointments", json={"kind": "individual", "starts_at": soon.isoformat()},
                             headers=CLINICIAN)  # fmt: skip
    clock.advance(timedelta(days=3))  # the appointment has begun
    begun = await http.delete(f"{episode}/appointments/{booked.json()['session_id']}", headers=CLINICIAN)
    assert begun.status_code == 422 and begun.json()["detail"][0]["loc"] == ["path", "session_id"]


async def test_a_family_session_needs_a_consent_naming_a_support(
    http: httpx.AsyncClient, events: Events, store: CarePlanStore
) -> None:
    episode_id = await active_plan(events, store)
    at = (utc_now() + timedelta(days=3)).isoformat()
    body = {"kind": "family", "starts_at": at}
    for answer, status_code, expected in (([], 200, 409), (FAMILY_CONSENT, 503, 503), (FAMILY_CONSENT, 401, 503)):
        http._transport.app.state.consents = consents_answering(answer, status_code)  # type: ignore[attr-defined]
        refused = await http.post(f"/v1/episodes/{episode_id}/appointments", json=body, headers=CLINICIAN)
        assert refused.status_code == expected, refused.text
    assert "INTAKE_TOKEN" in refused.json()["detail"]  # a refused token is a configuration mistake, said so


async def test_a_capacity_set_later_counts_the_members_who_joined_without_one(store: CarePlanStore, shelf: Any) -> None:
    def with_capacity(capacity: int | None) -> CarePolicy:
        groups = [g.model_copy(update={"capacity": capacity}) if g.group_id == "iop-am" else g for g in POLICY.groups]
        return POLICY.model_copy(update={"groups": groups})

    for capacity, joins in ((None, True), (None, True), (2, False)):
        context = {HANDLER_CONTEXT: Planning(store, with_capacity(capacity), SETTINGS.clinic_timezone),
                   "event_shelf": shelf}  # fmt: skip
        async for events in running("care_plan", create_broker(SETTINGS).broker, context):
            stored = await store.get(await active_plan(events, store))
            assert stored is not None and (stored.plan.group is not None) is joins


async def test_one_episode_never_holds_two_seats_in_a_group(
    store: CarePlanStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two claims for one episode that saw different seats free (another episode let one go between them): the
    unique (group, episode) index the service creates at start-up refuses the second seat."""
    group = POLICY.group("iop-am")
    assert group is not None
    group = group.model_copy(update={"capacity": 2})
    assert await store.claim_seat(group, "other", utc_now())  # seat 1
    real_insert, paused, go_on = store.seats.insert_one, asyncio.Event(), asyncio.Event()

    async def insert_one(document: dict[str, Any]) -> Any:
        if document["episode_id"] == "e1" and not paused.is_set():  # the first claim, about to take seat 2
            paused.set()
            await go_on.wait()
        return await real_insert(document)

    monkeypatch.setattr(store.seats, "insert_one", insert_one)
    first = asyncio.create_task(store.claim_seat(group, "e1", utc_now()))
    await paused.wait()
    await store.release_seat("iop-am", "other")
    assert await store.claim_seat(group, "e1", utc_now())  # the second claim sees seat 1 free and takes it
    go_on.set()
    assert await first  # its seat 2 is refused: it finds the episode seated and says so
    assert [seat["seat"] async for seat in store.seats.find({"episode_id": "e1"})] == [1]


# Attendance after the session, tracks, program groups, referrals, overlaps


async def test_attendance_before_the_session_starts_is_refused_and_an_excuse_is_taken_ahead(
    http: httpx.AsyncClient, events: Events, store: CarePlanStore, database: MemoryDatabase
) -> None:
    member, excused = [await active_plan(events, store) for _ in range(2)]
    session_id = first_session_id()
    starts = first_session_start().isoformat()
    for status in ("attended", "late", "missed"):
        early = await http.post(f"/v1/episodes/{member}/sessions/{session_id}/attendance", json={"status": status},
                                headers=CLINICIAN)  # fmt: skip
        assert early.status_code == 409 and f"starts at {starts}" in early.json()["detail"], early.text
    sheet = {"attendance": [{"episode_id": member, "status": "attended"},
                            {"episode_id": excused, "status": "excused",
                             "notice_given_at": utc_now().isoformat()}]}  # fmt: skip
    answer = await http.post(f"/v1/groups/iop-am/sessions/{session_id}/attendance", json=sheet, headers=CLINICIAN)
    [refused, ahead] = answer.json()["lines"]
    assert (refused["outcome"], refused["code"]) == ("rejected", "session_not_started")
    assert (ahead["outcome"], ahead["attendance"]["status"]) == ("recorded", "excused")
    report = AttendanceReported(episode_id=member, session_id=session_id, status="missed",
                                reported_at=utc_now())  # fmt: skip
    await events.deliver(new_event(report, source="/ehr"))
    [shelved] = await set_aside(database)
    assert shelved["reason"].startswith(f"rejected: session_not_started: session '{session_id}' starts at {starts}")
    stored = await store.get(member)
    assert stored is not None and stored.plan.attendance == {}  # nothing billed, nobody told "we missed you"
    topics = [topic for topic, _ in await queued(database[PLANS])]
    assert not {"iop.service.delivered", "iop.session.missed"} & set(topics)


async def test_an_episode_joins_a_group_of_its_track_and_a_clinician_changes_it(
    http: httpx.AsyncClient, events: Events, store: CarePlanStore, database: MemoryDatabase
) -> None:
    evening = str(uuid.uuid4())
    await events.deliver(intake_event(assessment(evening, track="evening")))
    stored = await store.get(evening)
    assert stored is not None and stored.plan.group is not None and stored.plan.group.group_id == "iop-pm"
    assert stored.plan.schedule is not None and stored.plan.schedule.track == "evening"

    default = await active_plan(events, store)  # no track given: the clinic's default (morning)
    path = f"/v1/episodes/{default}/track"
    moved = await http.put(path, json={"track": "evening"}, headers=CLINICIAN)
    assert moved.status_code == 200, moved.text
    assert moved.json()["group"]["group_id"] == "iop-pm" and moved.json()["schedule"]["track"] == "evening"
    assert {s["group_id"] for s in moved.json()["schedule"]["sessions"]} == {"iop-pm"}
    [(topic, data)] = [(t, d) for t, d in await queued(database[PLANS]) if d["episode_id"] == default][-1:]
    assert (topic, data["reason"]) == ("iop.schedule.changed", "track_changed")
    same = await http.put(path, json={"track": "evening"}, headers=CLINICIAN)
    assert same.status_code == 200 and same.json() == moved.json()  # the same track changes nothing
    assert (await http.put(path, json={"track": "night"}, headers=CLINICIAN)).status_code == 422
    assert (await http.put(path, json={"track": "morning", "group": "x"}, headers=CLINICIAN)).status_code == 422
    assert (
        await http.put("/v1/episodes/nobody/track", json={"track": "evening"}, headers=CLINICIAN)
    ).status_code == 404


async def test_an_adolescent_joins_an_adolescent_group_only(events: Events, store: CarePlanStore) -> None:
    teen = str(uuid.uuid4())
    await events.deliver(intake_event(assessment(teen).model_copy(update={"program": "adolescent"})))
    stored = await store.get(teen)
    assert stored is not None and stored.plan.group is not None and stored.plan.group.group_id == "iop-teen-am"
    assert {s.group_id for s in stored.plan.schedule.sessions} == {"iop-teen-am"}  # type: ignore[union-attr]


async def test_a_reassessment_that_refers_out_reaches_the_clinician_who_discharges(
    http: httpx.AsyncClient, events: Events, store: CarePlanStore, database: MemoryDatabase
) -> None:
    episode_id = await active_plan(events, store)
    await events.deliver(intake_event(assessment(episode_id, kind="reassessment", level=CareLevel.INPATIENT)))
    stored = await store.get(episode_id)
    assert stored is not None and stored.plan.status == "active"
    referral = stored.plan.open_recommendation
    assert referral is not None and (referral.to_level, referral.refer_out) == (CareLevel.INPATIENT, True)
    assert referral.rationale[0].code == "referral_out"
    [(_, published)] = [(t, d) for t, d in await queued(database[PLANS]) if t.endswith("step_up_recommended")]
    assert (published["to_level"], published["refer_out"]) == ("INPATIENT", True)
    path = f"/v1/episodes/{episode_id}/recommendations/{referral.recommendation_id}/decision"
    accepted = await http.post(path, json={"decision": "accept"}, headers=CLINICIAN)
    assert accepted.status_code == 200, accepted.text
    stored = await store.get(episode_id)
    assert stored is not None and (stored.plan.status, stored.plan.end_reason) == ("discharged", "referred_out")
    [(_, discharged)] = [(t, d) for t, d in await queued(database[PLANS]) if t == "iop.episode.discharged"]
    assert discharged["reason_code"] == "referred_out"


async def test_a_group_meeting_that_overlaps_an_own_appointment_is_left_off_and_named(
    http: httpx.AsyncClient, events: Events, store: CarePlanStore, database: MemoryDatabase
) -> None:
    episode_id = await active_plan(events, store)
    evening = first_session_start("iop-pm") + timedelta(hours=1)  # during the evening group's first meeting
    booked = await http.post(f"/v1/episodes/{episode_id}/appointments",
                             json={"kind": "family", "starts_at": evening.isoformat()}, headers=CLINICIAN)  # fmt: skip
    assert booked.status_code == 201, booked.text
    moved = await http.put(f"/v1/episodes/{episode_id}/track", json={"track": "evening"}, headers=CLINICIAN)
    assert moved.status_code == 200, moved.text
    sessions = [s["session_id"] for s in moved.json()["schedule"]["sessions"]]
    assert booked.json()["session_id"] in sessions and first_session_id("iop-pm") not in sessions
    [skipped] = moved.json()["skipped_meetings"]
    assert (skipped["session"]["session_id"], skipped["clashes_with"]) == (
        first_session_id("iop-pm"), booked.json()["session_id"]
    )  # fmt: skip
    [changed] = [d for t, d in await queued(database[PLANS]) if d.get("reason") == "track_changed"]
    assert changed["skipped_meetings"] == [first_session_id("iop-pm")]
    cancelled = await http.delete(f"/v1/episodes/{episode_id}/appointments/{booked.json()['session_id']}",
                                  headers=CLINICIAN)  # fmt: skip
    assert first_session_id("iop-pm") in [s["session_id"] for s in cancelled.json()["schedule"]["sessions"]]
    assert cancelled.json()["skipped_meetings"] == []


async def test_a_body_where_none_is_taken_is_refused_naming_its_fields(http: httpx.AsyncClient) -> None:
    replay = await http.post("/v1/set-aside-events/replay", json={"topic": "x"}, headers=ADMIN)
    assert replay.status_code == 422 and replay.json()["detail"][0]["loc"] == ["body", "topic"]
    assert (await http.post("/v1/set-aside-events/replay", json={}, headers=ADMIN)).status_code == 200


# A store refusing one record's write: never a 500, and never a partition held


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (DocumentTooLarge("BSON document too large"), (409, "the record is at its size limit: the care plan record")),
        (WriteError("Resulting document after update is larger than 16777216", 17419), (409, "size limit")),
        (WriteError("Document failed validation", 121), (409, "the store refused the change (code 121)")),
        (WriteError("Not writable primary", 10107), (503, "the store could not take the change now (code 10107)")),
    ],
    ids=["document_too_large", "update_result_too_large", "another_write_error", "a_transient_write_error"],
)
async def test_a_store_refusing_a_care_plan_write_is_answered_naming_the_cause(
    http: httpx.AsyncClient,
    events: Events,
    store: CarePlanStore,
    database: MemoryDatabase,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    expected: tuple[int, str],
) -> None:
    episode_id = await active_plan(events, store)

    async def refuse(*_: Any, **__: Any) -> None:
        raise error

    monkeypatch.setattr(database[PLANS], "update_one", refuse)
    body = {"kind": "individual", "starts_at": (utc_now() + timedelta(days=2)).isoformat()}
    answer = await http.post(f"/v1/episodes/{episode_id}/appointments", json=body, headers=CLINICIAN)
    assert answer.status_code == expected[0] and expected[1] in answer.json()["detail"], answer.text
    assert "nothing was changed" in answer.json()["detail"]
    assert (answer.headers.get("Retry-After") == "5") == (expected[0] == 503)


async def test_an_event_that_would_take_a_plan_past_its_size_limit_is_set_aside(
    events: Events, store: CarePlanStore, database: MemoryDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    episode_id = await active_plan(events, store)

    async def too_large(*_: Any, **__: Any) -> None:
        raise WriteError("Resulting document after update is larger than 16777216", 17419)

    monkeypatch.setattr(database[PLANS], "update_one", too_large)
    report = AttendanceReported(episode_id=episode_id, session_id=first_session_id(), status="attended",
                                reported_at=utc_now())  # fmt: skip
    with once_the_first_session_began():
        await events.deliver(new_event(report, source="/ehr"))  # applied once: set aside, not retried
    [shelved] = await set_aside(database)
    assert shelved["topic"] == "iop.attendance.reported"
    assert shelved["reason"] == ("rejected: the record is at its size limit: the care plan record cannot grow past "
                                 "the store's 16 MB document limit; nothing was changed")  # fmt: skip


async def test_an_appointment_past_the_booking_horizon_is_a_409_naming_the_bound(
    http: httpx.AsyncClient, events: Events, store: CarePlanStore
) -> None:
    episode_id = await active_plan(events, store)
    far = utc_now() + timedelta(days=400)
    body = {"kind": "individual", "starts_at": far.isoformat()}
    refused = await http.post(f"/v1/episodes/{episode_id}/appointments", json=body, headers=CLINICIAN)
    assert refused.status_code == 409 and "at most 366 days ahead" in refused.json()["detail"], refused.text
    stored = await store.get(episode_id)
    assert stored is not None and stored.plan.appointments == []


# What the OpenAPI document says the bodies take: the rules in the schema, checked before the plan is read


async def test_attendance_takes_notice_only_with_excused_and_minutes_only_with_attendance_before_the_plan_is_read(
    http: httpx.AsyncClient, events: Events, store: CarePlanStore
) -> None:
    nobody = f"/v1/episodes/nobody/sessions/{first_session_id()}/attendance"  # no plan: a body it takes is a 404
    for body, field, rule in (
        ({"status": "missed", "notice_given_at": "2026-11-20T09:00:00Z"}, "notice_given_at", "notice_without_excuse"),
        ({"status": "attended", "notice_given_at": "2026-11-20T09:00:00Z"}, "notice_given_at", "notice_without_excuse"),
        ({"status": "excused", "minutes": 30}, "minutes", "minutes_without_attendance"),
        ({"status": "missed", "minutes": 30}, "minutes", "minutes_without_attendance"),
    ):
        refused = await http.post(nobody, json=body, headers=CLINICIAN)
        assert refused.status_code == 422, body
        assert [(e["loc"], e["type"]) for e in refused.json()["detail"]] == [(["body", field], rule)], body
    taken = ({"status": "missed", "notice_given_at": None, "minutes": None}, {"status": "late", "minutes": 30},
             {"status": "excused", "notice_given_at": "2026-11-20T09:00:00Z", "minutes": None})  # fmt: skip
    for body in taken:
        assert (await http.post(nobody, json=body, headers=CLINICIAN)).status_code == 404, body
    episode_id = await active_plan(events, store)
    path = f"/v1/episodes/{episode_id}/sessions/{first_session_id()}/attendance"
    with once_the_first_session_began():
        for body in taken:  # the wire format of what was taken before is taken still
            assert (await http.post(path, json=body, headers=CLINICIAN)).status_code == 200, body


@pytest.mark.parametrize("minutes", ["30", 30.0, True], ids=["text", "whole_float", "bool"])
async def test_minutes_are_a_json_integer(
    http: httpx.AsyncClient, events: Events, store: CarePlanStore, minutes: object
) -> None:
    episode_id = await active_plan(events, store)
    episode = f"/v1/episodes/{episode_id}"
    soon = (utc_now() + timedelta(days=2)).replace(hour=20, minute=0, second=0, microsecond=0).isoformat()
    line = {"episode_id": episode_id, "status": "late", "minutes": minutes}
    with once_the_first_session_began():
        attendance = await http.post(
            f"{episode}/sessions/{first_session_id()}/attendance",
            json={"status": "late", "minutes": minutes},
            headers=CLINICIAN,
        )
        appointment = await http.post(
            f"{episode}/appointments",
            headers=CLINICIAN,
            json={"kind": "individual", "starts_at": soon, "minutes": minutes},
        )
        sheet = await http.post(f"/v1/groups/iop-am/sessions/{first_session_id()}/attendance",
                                json={"attendance": [line]}, headers=CLINICIAN)  # fmt: skip
    for answer, loc in ((attendance, ["body", "minutes"]), (appointment, ["body", "minutes"]),
                        (sheet, ["body", "attendance", 0, "minutes"])):  # fmt: skip
        assert answer.status_code == 422, answer.text
        assert [(entry["loc"], entry["type"]) for entry in answer.json()["detail"]] == [(loc, "int_type")]
    stored = await store.get(episode_id)
    assert stored is not None and not stored.plan.attendance and not stored.plan.appointments


@pytest.mark.parametrize(
    ("field", "value"),
    [("hours_per_session", "3"), ("hours_per_session", True), ("weeks", "6"), ("weeks", 6.0), ("weeks", False)],
)
async def test_a_schedules_hours_and_weeks_are_json_numbers(
    http: httpx.AsyncClient, events: Events, store: CarePlanStore, field: str, value: object
) -> None:
    episode_id = await active_plan(events, store)
    body = {"track": "evening", "weekdays": ["mon", "tue", "thu"], "hours_per_session": 3, "weeks": 6}
    refused = await http.put(f"/v1/episodes/{episode_id}/care-plan/schedule", json=body | {field: value},
                             headers=CLINICIAN)  # fmt: skip
    assert refused.status_code == 422 and [e["loc"] for e in refused.json()["detail"]] == [["body", field]]
    taken = await http.put(f"/v1/episodes/{episode_id}/care-plan/schedule", json=body | {"hours_per_session": 3.5},
                           headers=CLINICIAN)  # fmt: skip
    assert taken.status_code == 200  # an integer is a number too


async def test_dates_and_times_are_text_never_a_number(
    http: httpx.AsyncClient, events: Events, store: CarePlanStore
) -> None:
    episode_id = await active_plan(events, store)
    episode = f"/v1/episodes/{episode_id}"
    in_2100 = 4102444800  # a Unix time: pydantic's lax mode would read it as a date-time
    booked = await http.post(f"{episode}/appointments", json={"kind": "individual", "starts_at": in_2100},
                             headers=CLINICIAN)  # fmt: skip
    assert booked.status_code == 422 and booked.json()["detail"][0]["loc"] == ["body", "starts_at"]
    authorized = await http.put(f"{episode}/authorization", headers=CLINICIAN,
                                json={"level": "IOP", "authorized_through": 20270131, "reference": "PA-1"})  # fmt: skip
    assert authorized.status_code == 422 and authorized.json()["detail"][0]["loc"] == ["body", "authorized_through"]
    excused = await http.post(f"{episode}/sessions/{first_session_id()}/attendance", headers=CLINICIAN,
                              json={"status": "excused", "notice_given_at": "1700000000"})  # fmt: skip
    assert excused.status_code == 422 and excused.json()["detail"][0]["loc"] == ["body", "notice_given_at"]
    stored = await store.get(episode_id)
    assert stored is not None and not stored.plan.appointments and stored.plan.authorization is None


async def test_a_time_past_what_the_server_counts_with_is_a_422_not_a_server_error(
    http: httpx.AsyncClient, events: Events, store: CarePlanStore
) -> None:
    episode_id = await active_plan(events, store)
    for starts_at in ("9999-12-31T23:30:00Z", "0001-01-01T00:00:00+00:01"):
        refused = await http.post(f"/v1/episodes/{episode_id}/appointments", headers=CLINICIAN,
                                  json={"kind": "individual", "starts_at": starts_at, "minutes": 60})  # fmt: skip
        assert refused.status_code == 422, (starts_at, refused.text)
        assert [(e["loc"], e["type"]) for e in refused.json()["detail"]] == [(["body", "starts_at"], "datetime_range")]


# The change path (changes.py) driven directly: sheets, the waitlist, inputs before their plan


async def test_each_sheet_line_says_what_became_of_it_and_a_command_records_each_once(
    events: Events, store: CarePlanStore
) -> None:
    member, excused = await active_plan(events, store), await active_plan(events, store)
    session_id = first_session_id()
    notice = first_session_start() - timedelta(days=1)
    sheet = [SheetEntry(episode_id=member, status="attended"),
             SheetEntry(episode_id=excused, status="excused", notice_given_at=notice),
             SheetEntry(episode_id=member, status="missed"),
             SheetEntry(episode_id="stranger", status="attended")]  # fmt: skip
    with once_the_first_session_began():
        lines = await record_sheet(store, POLICY, "iop-am", session_id, sheet, applied="/ehr#sheet-1")
        assert [(line.episode_id, line.outcome) for line in lines[:2]] == [(member, "recorded"), (excused, "recorded")]
        assert lines[0].record is not None and lines[0].record.status == "attended"
        assert lines[1].record is not None and lines[1].record.notice_given_at == notice
        assert lines[2:] == [
            SheetLine(member, "rejected", code="listed_twice", detail="the member is on the sheet twice"),
            SheetLine("stranger", "rejected", code="not_a_member", detail="no care plan for this episode"),
        ]
        again = await record_sheet(store, POLICY, "iop-am", session_id, sheet, applied="/ehr#sheet-1")
        assert again[:2] == [SheetLine(member, "applied_before"), SheetLine(excused, "applied_before")]
        by_hand = await record_sheet(store, POLICY, "iop-am", session_id, sheet[:1])
        assert [(line.episode_id, line.outcome) for line in by_hand] == [(member, "unchanged")]
        other_group = await record_sheet(store, POLICY, "iop-pm", session_id, sheet[:1])
        assert other_group == [SheetLine(member, "rejected", code="not_a_member",
                                         detail=f"session {session_id!r} is not in this care plan")]  # fmt: skip


class CountedClaims:
    """The store, counting the seats it was asked to claim."""

    def __init__(self, store: CarePlanStore) -> None:
        self.store = store
        self.claims: list[str] = []

    async def claim_seat(self, group: Any, episode_id: str, now: datetime) -> bool:
        self.claims.append(group.group_id)
        return await self.store.claim_seat(group, episode_id, now)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def test_freed_places_go_to_the_plans_waiting_longest_each_place_tried_once_a_pass(
    database: MemoryDatabase, store: CarePlanStore, shelf: Any
) -> None:
    one_seat = {"iop-am", "php-am"}
    small = POLICY.model_copy(update={"groups": [g.model_copy(update={"capacity": 1}) if g.group_id in one_seat else g
                                                 for g in POLICY.groups]})  # fmt: skip
    kafka = create_broker(SETTINGS)
    context = {HANDLER_CONTEXT: Planning(store, small, SETTINGS.clinic_timezone), "event_shelf": shelf}
    async for events in running("care_plan", kafka.broker, context):
        iop_member, php_member = await active_plan(events, store), await active_plan(events, store, CareLevel.PHP)
        iop_first, iop_second = await active_plan(events, store), await active_plan(events, store)
        php_first, php_second = [await active_plan(events, store, CareLevel.PHP) for _ in range(2)]
        await change_plan(store, small, php_member, lambda plan, now: (discharged(plan, now), [], None))
        counted = CountedClaims(store)
        assert await admit_waitlisted(counted, small) == 1  # type: ignore[arg-type]
        assert counted.claims == ["iop-am", "php-am", "php-am"]  # iop-am is not tried again for iop_second
        assert await store.holds_seat("php-am", php_first) and not await store.holds_seat("php-am", php_second)
        seat = await database[SEATS].find_one({"episode_id": php_first})
        assert seat is not None and abs(seat["claimed_at"] - utc_now()) < timedelta(seconds=5)
        for ended in (iop_member, php_first):
            await change_plan(store, small, ended, lambda plan, now: (discharged(plan, now), [], None))
        assert await admit_waitlisted(store, small) == 2
        for joined, group in ((iop_first, "iop-am"), (php_second, "php-am")):
            stored = await store.get(joined)
            assert stored is not None and stored.plan.group is not None and stored.plan.group.group_id == group
        still = await store.get(iop_second)
        assert still is not None and still.plan.waitlist is not None


async def test_a_seat_claimed_for_a_plan_that_stopped_waiting_meanwhile_is_let_go(
    database: MemoryDatabase, store: CarePlanStore, shelf: Any
) -> None:
    small = POLICY.model_copy(update={"groups": [g.model_copy(update={"capacity": 1}) if g.group_id == "iop-am" else g
                                                 for g in POLICY.groups]})  # fmt: skip
    kafka = create_broker(SETTINGS)
    context = {HANDLER_CONTEXT: Planning(store, small, SETTINGS.clinic_timezone), "event_shelf": shelf}
    async for events in running("care_plan", kafka.broker, context):
        member, waiting = await active_plan(events, store), await active_plan(events, store)
        read_before = await store.waitlisted()  # the pass read the waitlist; then the plan ended
        await change_plan(store, small, waiting, lambda plan, now: (discharged(plan, now), [], None))
        await change_plan(store, small, member, lambda plan, now: (discharged(plan, now), [], None))

        async def stale_waitlist(read: list[Any] = read_before) -> list[Any]:
            return read

        store.waitlisted = stale_waitlist  # type: ignore[method-assign]
        assert await admit_waitlisted(store, small) == 0
        assert not await store.holds_seat("iop-am", waiting)


async def test_a_placed_change_lets_its_seat_go_when_the_change_is_refused_and_applies_an_event_once(
    events: Events, store: CarePlanStore
) -> None:
    episode_id = await active_plan(events, store)
    group = POLICY.group("iop-pm")
    assert group is not None and group.capacity is not None
    assert await store.claim_seat(group, episode_id, utc_now())

    def refused(plan: CarePlan, now: datetime) -> Decision[None]:
        raise CarePlanError("refused", "no")

    with pytest.raises(CarePlanError):
        await change_plan_placed(store, POLICY, episode_id, Joined(group), refused)
    assert not await store.holds_seat("iop-pm", episode_id)

    def noted(plan: CarePlan, now: datetime) -> Decision[bool]:
        return plan.model_copy(update={"inputs": plan.inputs}), [], True

    held = POLICY.group("iop-am")
    assert held is not None
    assert await change_plan_placed(store, POLICY, episode_id, Joined(held), noted, "/x#1") is True
    assert await change_plan_placed(store, POLICY, episode_id, Joined(held), noted, "/x#1") is None  # applied before
    assert await store.holds_seat("iop-am", episode_id)  # the plan is in iop-am: its seat stays


class CreatedMeanwhile:
    """The store, with the plan created by another instance just before the input is kept as pending."""

    def __init__(self, store: CarePlanStore, create: Any) -> None:
        self.store = store
        self.create = create
        self.kept: list[str] = []

    async def keep_pending(self, episode_id: str, learned: CareInput, applied: str) -> None:
        self.kept.append(applied)
        await self.create()  # the plan, created and its pending inputs adopted, before this one is kept
        await self.store.keep_pending(episode_id, learned, applied)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def test_an_input_goes_to_its_plan_and_one_before_its_plan_is_adopted_if_the_plan_came_meanwhile(
    events: Events, store: CarePlanStore
) -> None:
    alert = CareInput(kind="safety_alert", at=utc_now(), source_id="a1", alert_level="same_day")
    episode_id = await active_plan(events, store)
    counted = CreatedMeanwhile(store, create=None)
    await learn(counted, POLICY, episode_id, alert, "/stepwise/intake#a1")  # type: ignore[arg-type]
    stored = await store.get(episode_id)
    assert stored is not None and [i.kind for i in stored.plan.inputs] == ["safety_alert"] and counted.kept == []

    later = str(uuid.uuid4())

    async def create() -> None:
        await events.deliver(intake_event(assessment(later)))

    meanwhile = CreatedMeanwhile(store, create)
    await learn(meanwhile, POLICY, later, alert, "/stepwise/intake#a2")  # type: ignore[arg-type]
    stored = await store.get(later)
    assert stored is not None and [i.kind for i in stored.plan.inputs] == ["safety_alert"]
    assert meanwhile.kept == ["/stepwise/intake#a2"] and await store.pending(later) == []


async def test_a_change_stores_the_plans_next_timer_and_a_change_that_changes_nothing_writes_nothing(
    events: Events, store: CarePlanStore, database: MemoryDatabase
) -> None:
    episode_id = await active_plan(events, store)
    stored = await store.get(episode_id)
    assert stored is not None and stored.next_check_at is not None
    due = stored.next_check_at
    await database[PLANS].update_one({"_id": episode_id}, {"$set": {"next_check_at": due + timedelta(days=9)}})
    nothing = await change_plan(store, POLICY, episode_id, lambda plan, now: (plan, [], "same"))
    assert nothing == "same"
    timer_only = await store.get(episode_id)
    assert timer_only is not None and timer_only.next_check_at == due  # the timer alone was out of step: stored
    assert timer_only.version == stored.version + 1
    assert await change_plan(store, POLICY, episode_id, lambda plan, now: (plan, [], "same")) == "same"
    unchanged = await store.get(episode_id)
    assert unchanged is not None and unchanged.version == timer_only.version  # nothing to write: no write
    noted = CareInput(kind="drug_screen", at=utc_now(), source_id="s1", unexpected_positive=False)
    await change_plan(store, POLICY, episode_id, lambda plan, now: (plan.model_copy(update={"inputs": [noted]}), [], 1))
    changed = await store.get(episode_id)
    assert changed is not None and changed.plan.inputs == [noted] and changed.version == unchanged.version + 1


async def test_a_change_that_lost_its_write_is_decided_again_on_what_won(events: Events, store: CarePlanStore) -> None:
    episode_id = await active_plan(events, store)
    real_save = store.save
    saves: list[bool] = []

    async def first_loses(*args: Any) -> bool:
        saved = bool(saves) and await real_save(*args)
        saves.append(saved)
        return saved

    store.save = first_loses  # type: ignore[method-assign]
    noted = CareInput(kind="drug_screen", at=utc_now(), source_id="s1", unexpected_positive=False)
    assert await change_plan(store, POLICY, episode_id, lambda plan, now: (plan.model_copy(update={"inputs": [noted]}),
                                                                           [], "done")) == "done"  # fmt: skip
    stored = await store.get(episode_id)
    assert saves == [False, True] and stored is not None and stored.plan.inputs == [noted]


async def test_a_plan_that_leaves_its_group_frees_its_seat_and_says_so_when_it_cannot(
    events: Events, store: CarePlanStore, caplog: pytest.LogCaptureFixture
) -> None:
    episode_id, other = await active_plan(events, store), await active_plan(events, store)
    assert await store.holds_seat("iop-am", episode_id)
    await change_plan(store, POLICY, episode_id, lambda plan, now: (discharged(plan, now), [], None))
    assert not await store.holds_seat("iop-am", episode_id)

    async def store_gone(*_: Any) -> None:
        raise AutoReconnect("store down")

    store.release_seat = store_gone  # type: ignore[method-assign]
    caplog.set_level(logging.WARNING, logger="services.care_plan.changes")
    await change_plan(store, POLICY, other, lambda plan, now: (discharged(plan, now), [], None))
    ended = await store.get(other)
    assert ended is not None and ended.plan.status == "discharged"  # the plan's write stands
    assert [r.getMessage() for r in caplog.records if r.name == "services.care_plan.changes"] == [
        f"episode {other}: seat in iop-am not released (AutoReconnect): freed when the group is next full"
    ]


async def test_a_seat_held_before_is_the_plans_even_while_others_wait_for_the_group(
    database: MemoryDatabase, store: CarePlanStore, shelf: Any
) -> None:
    small = POLICY.model_copy(update={"groups": [g.model_copy(update={"capacity": 1}) if g.group_id == "iop-am" else g
                                                 for g in POLICY.groups]})  # fmt: skip
    kafka = create_broker(SETTINGS)
    context = {HANDLER_CONTEXT: Planning(store, small, SETTINGS.clinic_timezone), "event_shelf": shelf}
    async for events in running("care_plan", kafka.broker, context):
        member = await active_plan(events, store)
        await active_plan(events, store)  # waits for iop-am
        again = await hold_place(store, small, member, CareLevel.IOP, "morning", "adult")  # a retry, say
        assert isinstance(again, Joined) and again.group.group_id == "iop-am"


async def test_attendance_recorded_by_staff_may_be_corrected_by_default(events: Events, store: CarePlanStore) -> None:
    episode_id = await active_plan(events, store)
    session_id = first_session_id()
    with once_the_first_session_began():
        first = await record_session_attendance(store, POLICY, episode_id, session_id, "missed")
        corrected = await record_session_attendance(store, POLICY, episode_id, session_id, "attended")
    assert first is not None and first.record.status == "missed"
    assert corrected is not None and corrected.changed and corrected.record.status == "attended"


async def test_an_assessment_starts_one_plan_and_a_late_repeat_holds_no_seat(store: CarePlanStore) -> None:
    episode_id = str(uuid.uuid4())
    first = assessment(episode_id)
    plan = await start_plan(store, POLICY, first, "/stepwise/intake#1", SETTINGS.clinic_timezone)
    assert plan is not None and plan.group is not None and await store.holds_seat(plan.group.group_id, episode_id)
    assert await start_plan(store, POLICY, first, "/stepwise/intake#1", SETTINGS.clinic_timezone) is None
    assert await store.holds_seat(plan.group.group_id, episode_id)  # the plan's own seat stays
    await change_plan(store, POLICY, episode_id, lambda plan, now: (discharged(plan, now), [], None))
    assert await start_plan(store, POLICY, first, "/stepwise/intake#1", SETTINGS.clinic_timezone) is None
    assert not await store.holds_seat(plan.group.group_id, episode_id)  # the seat claimed for the repeat is let go


async def test_a_plan_joins_the_waitlist_behind_the_others_waiting_for_its_place(
    database: MemoryDatabase, store: CarePlanStore, shelf: Any
) -> None:
    one_seat = {"iop-am", "php-am"}
    small = POLICY.model_copy(update={"groups": [g.model_copy(update={"capacity": 1}) if g.group_id in one_seat else g
                                                 for g in POLICY.groups]})  # fmt: skip
    kafka = create_broker(SETTINGS)
    context = {HANDLER_CONTEXT: Planning(store, small, SETTINGS.clinic_timezone), "event_shelf": shelf}
    async for events in running("care_plan", kafka.broker, context):
        await active_plan(events, store)  # takes iop-am's seat
        await active_plan(events, store, CareLevel.PHP)  # takes php-am's seat
        for _ in range(2):
            await active_plan(events, store)  # wait for iop-am
        await active_plan(events, store, CareLevel.PHP)  # waits for php-am: another place
        itself = await active_plan(events, store)  # waits for iop-am too, third
        placed = await hold_place(store, small, itself, CareLevel.IOP, "morning", "adult")  # asked again
        assert isinstance(placed, Waitlisted) and placed.position == 3  # behind the two before it, not itself
        episode_id = str(uuid.uuid4())
        joined = await hold_place(store, small, episode_id, CareLevel.IOP, "evening", "adult")  # iop-pm has room
        assert isinstance(joined, Joined)
        seat = await database[SEATS].find_one({"episode_id": episode_id})
        assert seat is not None and abs(seat["claimed_at"] - utc_now()) < timedelta(seconds=5)
        early = str(uuid.uuid4())
        await store.keep_pending(early, CareInput(kind="safety_alert", at=utc_now(), source_id="a1"), "/x#1")
        assert await adopt_pending(store, small, early) == 0  # no plan yet: nothing adopted, the input waits
        assert len(await store.pending(early)) == 1
