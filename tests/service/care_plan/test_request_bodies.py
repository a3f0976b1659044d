"""What the OpenAPI document says care_plan's request bodies take: the rules in the schema, checked before the
plan is read."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from services.care_plan.store import CarePlanStore
from services.common.utc import utc_now
from tests.service.care_plan.helpers import CLINICIAN, active_plan, first_session_id, once_the_first_session_began
from tests.service.conftest import Events


async def test_attendance_takes_notice_only_with_excused_and_minutes_only_with_attendance_before_the_plan_is_read(
    http: httpx.AsyncClient, events: Events, store: CarePlanStore
) -> None:
    nobody = f"/v1/episodes/nobody/sessions/{first_session_id()}/attendance"  # no plan: a body it takes is a 404
    body: dict[str, Any]
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
