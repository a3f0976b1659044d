"""Program groups in care_plan in-process: the group's calendar and roster, the day's sheet, the waitlist,
appointments, attendance after the session, tracks, referrals and overlaps."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from services.care_plan.app import create_broker
from services.care_plan.changes import admit_waitlisted, change_plan
from services.care_plan.domain.policy import CarePolicy
from services.care_plan.handlers import Planning
from services.care_plan.store import PLANS, CarePlanStore
from services.common.auth import Role
from services.common.consumer import HANDLER_CONTEXT
from services.common.utc import utc_now
from stepwise_contract import AttendanceReported, CareLevel, SheetEntry, new_event
from tests.service.care_plan.helpers import (
    ADMIN,
    CLINICIAN,
    FAMILY_CONSENT,
    POLICY,
    SETTINGS,
    active_plan,
    assessment,
    consents_answering,
    discharged,
    first_session_id,
    first_session_start,
    intake_event,
    once_the_first_session_began,
)
from tests.service.conftest import Clock, Events, as_role, queued, running, set_aside
from tests.service.memory_mongo import MemoryDatabase

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


# What placing a plan costs the store: never a whole waitlist, however long it is


def without_capacities(policy: CarePolicy) -> CarePolicy:
    return policy.model_copy(update={"groups": [g.model_copy(update={"capacity": None}) for g in policy.groups]})


class NoWholeWaitlist:
    """The store, refusing to read a whole waitlist (what the admin listing of groups does, never a placement)."""

    def __init__(self, store: CarePlanStore) -> None:
        self.store = store

    async def waitlisted(self) -> Any:
        raise AssertionError("a whole waitlist was read")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def test_an_intake_assessment_into_a_group_without_a_capacity_is_one_write_and_no_waitlist(
    database: MemoryDatabase, store: CarePlanStore, shelf: Any
) -> None:
    roomy = without_capacities(POLICY)
    kafka = create_broker(SETTINGS)
    context = {HANDLER_CONTEXT: Planning(store, roomy, SETTINGS.clinic_timezone), "event_shelf": shelf}
    async for events in running("care_plan", kafka.broker, context):
        episode_id = str(uuid.uuid4())
        database.calls.clear()
        await events.deliver(intake_event(assessment(episode_id)))
    # the plan is written (a redelivery would find it there: no load first); inputs that came before it would have made
    # the insert find their document (no look for them)
    assert database.calls == [("insert", PLANS)]
    stored = await store.get(episode_id)
    assert stored is not None and stored.plan.group is not None and stored.plan.group.group_id == "iop-am"


async def test_a_long_waitlist_is_counted_when_a_plan_joins_it_and_only_its_head_read_by_the_timer(
    database: MemoryDatabase, store: CarePlanStore, shelf: Any
) -> None:
    small = POLICY.model_copy(
        update={
            "groups": [g.model_copy(update={"capacity": 1}) if g.group_id == "iop-am" else g for g in POLICY.groups]
        }
    )
    kafka = create_broker(SETTINGS)
    counting = NoWholeWaitlist(store)
    context = {HANDLER_CONTEXT: Planning(counting, small, SETTINGS.clinic_timezone), "event_shelf": shelf}  # type: ignore[arg-type]
    async for events in running("care_plan", kafka.broker, context):
        member = await active_plan(events, store)
        waiting = [await active_plan(events, store) for _ in range(4)]
        positions = [data["position"] for topic, data in await queued(database[PLANS])
                     if topic == "iop.group.waitlisted"]  # fmt: skip
        assert positions == [1, 2, 3, 4]
        await change_plan(store, small, member, lambda plan, now: (discharged(plan, now), [], None))
        assert await admit_waitlisted(counting, small) == 1  # type: ignore[arg-type]
        joined = await store.get(waiting[0])
        assert joined is not None and joined.plan.group is not None  # the one waiting longest
