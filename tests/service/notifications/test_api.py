"""notifications' HTTP API in-process: each endpoint's success and main error, and what the OpenAPI document
says the requests take."""

from __future__ import annotations

import httpx

from services.common.auth import Role
from services.common.dependencies import Dependencies
from services.notifications.changes import Messaging
from services.notifications.store import ALUMNI
from tests.service.conftest import Events, as_role, queued
from tests.service.conftest import api as client_of
from tests.service.fake_intake import FakeIntake
from tests.service.memory_mongo import MemoryDatabase
from tests.service.notifications.helpers import (
    ALUMNI_MESSAGES,
    APP,
    CLINICIAN,
    SMS_PROVIDER,
    STAFF,
    alumnus,
    log_of,
    started,
)

# Endpoints


async def test_list_notifications(
    http: httpx.AsyncClient, events: Events, messaging: Messaging, intake: FakeIntake
) -> None:
    episode_id = await started(events, intake)
    await started(events, intake)  # another episode's messages are not listed
    listed = await http.get("/v1/notifications", params={"episode_id": episode_id}, headers=CLINICIAN)
    assert listed.status_code == 200 and len(listed.json()) == 5
    welcome = next(entry for entry in listed.json() if entry["purpose"] == "welcome")
    assert (welcome["recipient_kind"], welcome["channel"], welcome["status"], welcome["attempts"]) == (
        "patient", "email", "pending", 0
    )  # fmt: skip
    assert welcome["cause_event_type"] == "iop.care_level.assigned" and "context" not in welcome
    by_purpose = await http.get("/v1/notifications", params={"episode_id": episode_id, "purpose": "session_reminder",
                                                             "status": "pending"}, headers=CLINICIAN)  # fmt: skip
    assert by_purpose.status_code == 200 and len(by_purpose.json()) == 4
    bad_status = await http.get("/v1/notifications", params={"status": "lost"}, headers=CLINICIAN)
    assert bad_status.status_code == 422 and bad_status.json()["detail"][0]["loc"] == ["query", "status"]
    anonymous = await http.get("/v1/notifications")
    assert anonymous.status_code == 401


async def test_post_opt_out(http: httpx.AsyncClient, events: Events, messaging: Messaging, intake: FakeIntake) -> None:
    episode_id = await started(events, intake)
    body = {"episode_id": episode_id, "recipient_kind": "patient"}
    first = await http.post("/v1/opt-outs", json=body, headers=STAFF)
    assert first.status_code == 201 and first.json()["opt_out_id"] == f"recipient:{episode_id}:patient:-"
    assert first.json()["source"] == "api"
    again = await http.post("/v1/opt-outs", json=body, headers=STAFF)
    assert again.status_code == 200 and again.json() == first.json()
    log = await log_of(messaging, episode_id)
    assert {(n.status, n.last_error) for n in log} == {("cancelled", "the recipient opted out")}
    no_consent = await http.post("/v1/opt-outs", json={"episode_id": episode_id, "recipient_kind": "family"},
                                 headers=STAFF)  # fmt: skip
    assert no_consent.status_code == 422 and "consent_id" in no_consent.json()["detail"][0]["msg"]
    care_team = await http.post("/v1/opt-outs", json={"episode_id": episode_id, "recipient_kind": "care_team"},
                                headers=STAFF)  # fmt: skip
    assert care_team.status_code == 422


async def test_an_opt_out_is_only_for_an_episode_intake_has(
    http: httpx.AsyncClient, messaging: Messaging, intake: FakeIntake, dependencies: Dependencies
) -> None:
    unknown = await http.post("/v1/opt-outs", json={"episode_id": "no-such-episode", "recipient_kind": "patient"},
                              headers=STAFF)  # fmt: skip
    assert unknown.status_code == 404 and not await messaging.opt_outs.recorded_by_staff(episode_id=None, limit=10)
    episode_id = intake.episode()
    intake.down = True
    down = await http.post("/v1/opt-outs", json={"episode_id": episode_id, "recipient_kind": "patient"},
                           headers=STAFF)  # fmt: skip
    assert down.status_code == 503 and "intake" in down.json()["detail"]
    assert "intake" in dependencies.problems()  # readiness says so too
    intake.down = False
    recorded = await http.post("/v1/opt-outs", json={"episode_id": episode_id, "recipient_kind": "patient"},
                               headers=STAFF)  # fmt: skip
    assert recorded.status_code == 201 and "intake" not in dependencies.problems()


async def test_an_alumni_opt_out_ends_the_enrolment(
    http: httpx.AsyncClient, events: Events, messaging: Messaging, intake: FakeIntake, database: MemoryDatabase
) -> None:
    episode_id = await alumnus(events, messaging, intake)
    opted_out = await http.post("/v1/opt-outs", json={"episode_id": episode_id, "recipient_kind": "alumni"},
                                headers=STAFF)  # fmt: skip
    assert opted_out.status_code == 201
    enrolment = await messaging.alumni.get(episode_id)
    assert enrolment is not None and (enrolment.status, enrolment.left_reason) == ("left", "opted_out")
    assert [topic for topic, _ in await queued(database[ALUMNI])] == ["iop.alumni.enrolled", "iop.alumni.left"]
    alumni = [n for n in await log_of(messaging, episode_id) if n.recipient_kind == "alumni"]
    assert len(alumni) == ALUMNI_MESSAGES and {n.status for n in alumni} == {"cancelled"}


async def test_list_opt_outs(http: httpx.AsyncClient, intake: FakeIntake) -> None:
    episode_id, other = intake.episode(), intake.episode()
    family = intake.consent(episode_id, "family", "attendance")
    for body in ({"episode_id": episode_id, "recipient_kind": "patient"},
                 {"episode_id": episode_id, "recipient_kind": "family", "consent_id": family},
                 {"episode_id": other, "recipient_kind": "patient"}):  # fmt: skip
        assert (await http.post("/v1/opt-outs", json=body, headers=STAFF)).status_code == 201
    await http.post("/v1/sms/inbound", json={"from": "+12025550100", "text": "STOP"}, headers=SMS_PROVIDER)
    listed = await http.get("/v1/opt-outs", params={"episode_id": episode_id}, headers=CLINICIAN)
    assert listed.status_code == 200
    assert sorted((o["recipient_kind"], o["consent_id"]) for o in listed.json()) == [("family", family),
                                                                                     ("patient", None)]  # fmt: skip
    everyone = await http.get("/v1/opt-outs", headers=CLINICIAN)
    assert len(everyone.json()) == 3  # a STOP reply is kept by number, not listed as a recipient's
    provider = await http.get("/v1/opt-outs", headers=SMS_PROVIDER)
    assert provider.status_code == 403


async def test_withdraw_opt_out(http: httpx.AsyncClient, messaging: Messaging, intake: FakeIntake) -> None:
    episode_id = intake.episode()
    opt_out_id = (await http.post("/v1/opt-outs", json={"episode_id": episode_id, "recipient_kind": "patient"},
                                  headers=STAFF)).json()["opt_out_id"]  # fmt: skip
    withdrawn = await http.delete(f"/v1/opt-outs/{opt_out_id}", headers=STAFF)
    assert withdrawn.status_code == 204 and not await messaging.opt_outs.has(opt_out_id)
    again = await http.delete(f"/v1/opt-outs/{opt_out_id}", headers=STAFF)
    assert again.status_code == 404
    await http.post("/v1/sms/inbound", json={"from": "+12025550100", "text": "STOP"}, headers=SMS_PROVIDER)
    number = messaging.opt_outs.number_key("+12025550100")
    by_number = await http.delete(f"/v1/opt-outs/{number}", headers=STAFF)
    assert by_number.status_code == 404 and await messaging.opt_outs.has(number)  # only the number may say START


async def test_inbound_sms(http: httpx.AsyncClient, messaging: Messaging) -> None:
    number = messaging.opt_outs.number_key("+1 (202) 555-0100")
    stop = await http.post("/v1/sms/inbound", json={"from": "+1 (202) 555-0100", "text": " Stop! "},
                           headers=SMS_PROVIDER)  # fmt: skip
    assert stop.status_code == 200 and stop.json() == {"action": "opted_out"}
    assert await messaging.opt_outs.has(number) and number == messaging.opt_outs.number_key("+12025550100")
    chat = await http.post("/v1/sms/inbound", json={"from": "+12025550100", "text": "see you tuesday"},
                           headers=SMS_PROVIDER)  # fmt: skip
    assert chat.json() == {"action": "ignored"} and await messaging.opt_outs.has(number)
    start = await http.post("/v1/sms/inbound", json={"from": "+12025550100", "text": "START"}, headers=SMS_PROVIDER)
    assert start.json() == {"action": "opted_in"} and not await messaging.opt_outs.has(number)
    clinician = await http.post("/v1/sms/inbound", json={"from": "+12025550100", "text": "STOP"}, headers=CLINICIAN)
    assert clinician.status_code == 403 and not await messaging.opt_outs.has(number)


async def test_list_alumni(http: httpx.AsyncClient, events: Events, messaging: Messaging, intake: FakeIntake) -> None:
    episode_id = await alumnus(events, messaging, intake)
    listed = await http.get("/v1/alumni", headers=CLINICIAN)
    assert listed.status_code == 200 and [(a["episode_id"], a["status"]) for a in listed.json()] == [
        (episode_id, "enrolled")
    ]
    left = await http.get("/v1/alumni", params={"status": "left"}, headers=CLINICIAN)
    assert left.status_code == 200 and left.json() == []
    bad_status = await http.get("/v1/alumni", params={"status": "graduated"}, headers=CLINICIAN)
    assert bad_status.status_code == 422


async def test_get_alumni_enrolment(
    http: httpx.AsyncClient, events: Events, messaging: Messaging, intake: FakeIntake
) -> None:
    episode_id = await alumnus(events, messaging, intake)
    found = await http.get(f"/v1/alumni/{episode_id}", headers=CLINICIAN)
    assert found.status_code == 200
    assert (found.json()["status"], found.json()["left_at"], found.json()["left_reason"]) == ("enrolled", None, None)
    unknown = await http.get("/v1/alumni/nobody", headers=CLINICIAN)
    assert unknown.status_code == 404


async def test_set_aside_events_are_listed_for_admins(http: httpx.AsyncClient, events: Events) -> None:
    await events.deliver_missing_data("iop.session.missed")
    listed = await http.get("/v1/set-aside-events", headers=as_role(Role.ADMIN))
    assert listed.status_code == 200 and listed.json()[0]["reason"].startswith("malformed:")
    assert "value" not in listed.json()[0]
    forbidden = await http.get("/v1/set-aside-events", headers=CLINICIAN)
    assert forbidden.status_code == 403


async def test_health_live(http: httpx.AsyncClient) -> None:
    live = await http.get("/health/live")
    assert live.status_code == 200 and live.json() == {"status": "live"}


async def test_health_ready(database: MemoryDatabase, messaging: Messaging) -> None:
    async def reachable() -> bool:
        return True

    async def unreachable() -> bool:
        raise ConnectionError("no broker")

    checks = {"mongodb": reachable, "kafka": unreachable}
    state = {"messaging": messaging, "readiness_checks": checks}
    async with await client_of("notifications", APP, database, state) as client:
        down = await client.get("/health/ready")
        assert down.status_code == 503
        assert down.json() == {"status": "not_ready", "checks": {"mongodb": True, "kafka": False}}
        checks["kafka"] = reachable
        up = await client.get("/health/ready")
        assert up.status_code == 200 and up.json()["status"] == "ready"


# What the OpenAPI document says the requests take


async def test_an_opt_out_names_a_supports_consent_and_no_other_before_intake_is_asked(
    http: httpx.AsyncClient, events: Events, intake: FakeIntake, messaging: Messaging
) -> None:
    episode_id = await started(events, intake)
    intake.asked.clear()
    for body, field, rule in (
        ({"recipient_kind": "family"}, "consent_id", "missing"),
        ({"recipient_kind": "designated_support"}, "consent_id", "missing"),
        ({"recipient_kind": "patient", "consent_id": "c-1"}, "consent_id", "consent_only_for_supports"),
        ({"recipient_kind": "alumni", "consent_id": "c-1"}, "consent_id", "consent_only_for_supports"),
        ({"recipient_kind": "care_team"}, "recipient_kind", "literal_error"),
    ):
        refused = await http.post("/v1/opt-outs", json={"episode_id": episode_id} | body, headers=STAFF)
        assert refused.status_code == 422, body
        assert [(e["loc"], e["type"]) for e in refused.json()["detail"]] == [(["body", field], rule)], body
    assert intake.asked == [] and await messaging.opt_outs.recorded_by_staff(episode_id=episode_id, limit=10) == []
    taken = await http.post("/v1/opt-outs", json={"episode_id": episode_id, "recipient_kind": "patient",
                                                  "consent_id": None}, headers=STAFF)  # fmt: skip
    assert taken.status_code == 201  # a null consent_id, as before


async def test_a_filter_misspelt_given_twice_or_past_the_calendar_is_a_422_not_everything_or_a_server_error(
    http: httpx.AsyncClient, events: Events, intake: FakeIntake
) -> None:
    await started(events, intake)
    misspelt = await http.get("/v1/notifications", params={"stauts": "failed"}, headers=CLINICIAN)
    assert misspelt.status_code == 422 and misspelt.json()["detail"][0]["loc"] == ["query", "stauts"]
    twice = await http.get("/v1/notifications", params=[("status", "failed"), ("status", "sent")], headers=CLINICIAN)
    assert twice.status_code == 422 and twice.json()["detail"][0]["loc"] == ["query", "status"]
    for since in ("0001-01-01T00:00:00+00:01", "9999-12-31T23:59:59-00:01"):
        edge = await http.get("/v1/notifications", params={"since": since}, headers=CLINICIAN)
        assert edge.status_code == 422, since
        assert [(e["loc"], e["type"]) for e in edge.json()["detail"]] == [(["query", "since"], "datetime_range")]
    assert (await http.get("/v1/notifications", params={"since": "1970-01-01T00:00:00Z"},
                           headers=CLINICIAN)).status_code == 200  # fmt: skip
