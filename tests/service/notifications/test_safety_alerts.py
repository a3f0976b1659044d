"""Safety alerts in notifications, in-process: kept until a clinician acknowledges them (HTTP, audited), escalated
once to the on-call route by the store's timer, never delayed by quiet hours; and a service without a route to
the care team or the on-call clinician is not ready, holding their messages until one is configured.

The fixtures (a fake intake, the assembled service, its HTTP client, the event broker) are the notifications
tier's (conftest.py).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import time, timedelta
from typing import Any

import httpx
import pytest

from services.common.audit import AUDIT_LOG
from services.common.auth import Role
from services.common.dependencies import Dependencies
from services.common.outbox import no_relay
from services.common.utc import utc_now
from services.notifications import handlers
from services.notifications.app import assemble
from services.notifications.changes import Messaging
from services.notifications.dispatcher import Dispatcher, QuietHours, Senders
from services.notifications.domain.delivery import Notification
from services.notifications.escalation import Escalations
from services.notifications.settings import NotificationsSettings
from services.notifications.store import SAFETY_ALERTS
from stepwise_contract import AlertLevel, SafetyAlertRaised
from tests.service.conftest import Events, as_role, queued
from tests.service.conftest import api as client_of
from tests.service.fake_intake import FakeIntake
from tests.service.memory_mongo import MemoryDatabase
from tests.service.notifications.helpers import (
    APP,
    CLINICIAN,
    POLICY,
    SETTINGS,
    STAFF,
    TEMPLATES,
    intake_event,
    log_of,
)

ON_CALL_PHONE, PAGER = SETTINGS.on_call_phone, SETTINGS.on_call_webhook_url
ACK = timedelta(seconds=SETTINGS.safety_ack_seconds)


async def raise_alert(
    events: Events, intake: FakeIntake, level: AlertLevel = "immediate", ago: timedelta = timedelta(0)
) -> tuple[str, str]:
    """An alert intake raised ``ago``, delivered to notifications: (episode id, alert id)."""
    episode_id, alert_id = intake.episode(), str(uuid.uuid4())
    data = SafetyAlertRaised(episode_id=episode_id, alert_id=alert_id, assessment_id="as-1", level=level,
                             reasons=["cssrs_high_risk"], raised_at=utc_now() - ago)  # fmt: skip
    await events.deliver(intake_event(data))
    return episode_id, alert_id


class Recorded:
    """A sender that takes every message: (notification id, address, what was sent)."""

    configured = True

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any]] = []

    async def send(self, notification_id: str, to: str, message: Any) -> None:
        self.sent.append((notification_id, to, message))

    async def close(self) -> None:
        return None


def recording(dispatcher: Dispatcher) -> dict[str, Recorded]:
    senders = {"email": Recorded(), "sms": Recorded(), "webhook": Recorded()}
    dispatcher._senders = Senders(senders["email"], senders["sms"], senders["webhook"])  # type: ignore[arg-type]
    return senders


def escalations(messaging: Messaging) -> Escalations:
    return Escalations(messaging, poll_seconds=1.0, lease_seconds=30.0)


async def topics(database: MemoryDatabase) -> list[str]:
    return [topic for topic, _ in await queued(database[SAFETY_ALERTS])]


def pages(notifications: list[Notification]) -> list[Notification]:
    return sorted((n for n in notifications if n.purpose == "safety_escalation"), key=lambda n: n.channel)


# Keeping and listing alerts


async def test_a_safety_alert_is_kept_open_until_its_deadline(
    events: Events, messaging: Messaging, intake: FakeIntake
) -> None:
    episode_id, alert_id = await raise_alert(events, intake)
    [kept] = await messaging.safety.alerts.find(episode_id=episode_id)
    assert (kept.alert_id, kept.status, kept.level, kept.escalated_at) == (alert_id, "open", "immediate", None)
    assert kept.acknowledge_by == kept.raised_at + ACK
    assert await escalations(messaging).work_once() == 0  # not due yet
    assert (await messaging.safety.alerts.find(episode_id=episode_id))[0].escalated_at is None


async def test_list_safety_alerts(
    http: httpx.AsyncClient, events: Events, messaging: Messaging, intake: FakeIntake, database: MemoryDatabase
) -> None:
    _, first = await raise_alert(events, intake)
    _, second = await raise_alert(events, intake, "same_day")
    assert (await http.post(f"/v1/safety-alerts/{first}/acknowledge", headers=CLINICIAN)).status_code == 200
    open_ = await http.get("/v1/safety-alerts", params={"status": "open"}, headers=CLINICIAN)
    assert open_.status_code == 200 and [(a["alert_id"], a["level"]) for a in open_.json()] == [(second, "same_day")]
    done = await http.get("/v1/safety-alerts", params={"status": "acknowledged"}, headers=as_role(Role.INTEGRATION))
    assert [a["alert_id"] for a in done.json()] == [first] and done.json()[0]["acknowledged_by"].startswith("token:")
    every = await http.get("/v1/safety-alerts", headers=CLINICIAN)
    assert [a["alert_id"] for a in every.json()] == [second, first]  # newest first
    assert (await http.get("/v1/safety-alerts", params={"status": "closed"}, headers=CLINICIAN)).status_code == 422
    assert (await http.get("/v1/safety-alerts", headers=STAFF)).status_code == 403
    reads = [entry async for entry in database[AUDIT_LOG].find({"action": "read_safety_alerts"})]
    assert [entry["alert_ids"] for entry in reads] == [[second], [first], [second, first]]
    assert {(entry["role"], entry["token_id"] is not None) for entry in reads} == {("clinician", True),
                                                                                  ("integration", True)}  # fmt: skip


async def test_acknowledge_safety_alert(
    http: httpx.AsyncClient, events: Events, messaging: Messaging, intake: FakeIntake, database: MemoryDatabase
) -> None:
    episode_id, alert_id = await raise_alert(events, intake)
    acknowledged = await http.post(f"/v1/safety-alerts/{alert_id}/acknowledge", headers=CLINICIAN)
    assert acknowledged.status_code == 200
    body = acknowledged.json()
    assert (body["status"], body["episode_id"], body["escalated_at"]) == ("acknowledged", episode_id, None)
    assert body["acknowledged_by"].startswith("token:") and body["acknowledged_at"] is not None
    again = await http.post(f"/v1/safety-alerts/{alert_id}/acknowledge", headers=CLINICIAN)
    assert again.status_code == 200 and again.json() == body  # the first acknowledgement stands
    [(topic, data)] = await queued(database[SAFETY_ALERTS])
    assert topic == "iop.safety.alert_acknowledged"
    assert set(data) == {"schema_version", "episode_id", "alert_id", "acknowledged_at"}  # never who
    [entry] = [entry async for entry in database[AUDIT_LOG].find({"action": "acknowledge_safety_alert"})]
    assert (entry["alert_id"], entry["episode_id"], entry["role"]) == (alert_id, episode_id, "clinician")
    assert body["acknowledged_by"] == f"token:{entry['token_id']}"
    unknown = await http.post("/v1/safety-alerts/no-such-alert/acknowledge", headers=CLINICIAN)
    assert unknown.status_code == 404 and unknown.json() == {"detail": "no such safety alert"}
    assert (await http.post(f"/v1/safety-alerts/{alert_id}/acknowledge", headers=STAFF)).status_code == 403
    await escalations(messaging).work_once()
    assert await topics(database) == ["iop.safety.alert_acknowledged"]  # acknowledged: never escalated


# Escalation to the on-call route


async def test_an_unacknowledged_alert_pages_the_on_call_route_once_whatever_the_quiet_hours(
    http: httpx.AsyncClient, events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher,
    database: MemoryDatabase,
) -> None:  # fmt: skip
    episode_id, alert_id = await raise_alert(events, intake, ago=ACK + timedelta(seconds=1))
    timer = escalations(messaging)
    assert await timer.work_once() == 1
    assert await timer.work_once() == 0  # once
    assert await topics(database) == ["iop.safety.alert_escalated"]
    [(_, escalated)] = await queued(database[SAFETY_ALERTS])
    assert escalated["alert_id"] == alert_id and escalated["level"] == "immediate"
    log = await log_of(messaging, episode_id)
    assert [(n.channel, n.recipient_kind, n.urgent, n.status) for n in pages(log)] == [
        ("sms", "care_team", True, "pending"), ("webhook", "care_team", True, "pending")]  # fmt: skip

    dispatcher._quiet = QuietHours(time(0, 0), time(23, 59, 59), SETTINGS.clinic_timezone)  # quiet all day
    sent = recording(dispatcher)
    await dispatcher.work_once()
    [(_, number, text)] = sent["sms"].sent
    assert number == ON_CALL_PHONE and alert_id in text.body and "immediate" in text.body
    assert episode_id not in text.body and "cssrs" not in text.body  # generic: no episode, patient or reasons
    page = next(payload for _, url, payload in sent["webhook"].sent if url == PAGER)
    assert page["purpose"] == "safety_escalation" and page["alert_id"] == alert_id and "episode_id" not in page
    assert {n.status for n in pages(await log_of(messaging, episode_id))} == {"sent"}

    late = await http.post(f"/v1/safety-alerts/{alert_id}/acknowledge", headers=CLINICIAN)
    assert late.json()["status"] == "acknowledged" and late.json()["escalated_at"] is not None
    assert await topics(database) == ["iop.safety.alert_escalated", "iop.safety.alert_acknowledged"]


async def test_an_acknowledgement_cancels_the_pages_still_waiting(
    http: httpx.AsyncClient, events: Events, messaging: Messaging, intake: FakeIntake
) -> None:
    episode_id, alert_id = await raise_alert(events, intake, ago=ACK * 2)
    await escalations(messaging).work_once()
    await http.post(f"/v1/safety-alerts/{alert_id}/acknowledge", headers=CLINICIAN)
    assert {(n.status, n.last_error) for n in pages(await log_of(messaging, episode_id))} == {
        ("cancelled", "the safety alert was acknowledged")
    }


async def test_a_same_day_alert_is_escalated_by_the_policys_deadline(
    events: Events, messaging: Messaging, intake: FakeIntake, database: MemoryDatabase
) -> None:
    _, alert_id = await raise_alert(events, intake, "same_day", ago=timedelta(hours=5))  # past 4 hours, open or not
    await escalations(messaging).work_once()
    [(topic, data)] = await queued(database[SAFETY_ALERTS])
    assert (topic, data["alert_id"], data["level"]) == ("iop.safety.alert_escalated", alert_id, "same_day")


async def another_instance(database: MemoryDatabase, settings: NotificationsSettings = SETTINGS) -> Messaging:
    """The service started again (or a second instance) over the same database."""
    messaging, _ = await assemble(settings, POLICY, TEMPLATES, database, no_relay, Dependencies())  # type: ignore[arg-type]
    return messaging


async def test_two_instances_escalate_an_alert_once(
    events: Events, messaging: Messaging, intake: FakeIntake, database: MemoryDatabase
) -> None:
    episode_id, _ = await raise_alert(events, intake, ago=ACK * 2)
    other = await another_instance(database)
    done = await asyncio.gather(escalations(messaging).work_once(), escalations(other).work_once())
    assert sorted(done) == [0, 1]  # one of them claimed it
    assert await topics(database) == ["iop.safety.alert_escalated"]
    assert len(pages(await log_of(messaging, episode_id))) == 2  # sms and webhook, once each


async def test_the_timer_is_in_the_store_and_a_crash_before_the_pages_loses_none(
    events: Events, messaging: Messaging, intake: FakeIntake, database: MemoryDatabase
) -> None:
    episode_id, alert_id = await raise_alert(events, intake, ago=ACK * 2)  # kept by the instance that then died
    restarted = await another_instance(database)
    real_add = restarted.store.add_leasing

    async def dies(*_: Any) -> int:
        raise RuntimeError("killed between the escalation and its pages")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(restarted.store, "add_leasing", dies)
        with pytest.raises(RuntimeError):
            await escalations(restarted).work_once()
    assert await topics(database) == ["iop.safety.alert_escalated"] and pages(await log_of(messaging, episode_id)) == []
    await escalations(restarted).work_once()  # its lease has not run out: nothing yet
    ended = utc_now() - timedelta(seconds=1)
    await database[SAFETY_ALERTS].update_one({"_id": alert_id}, {"$set": {"lease_until": ended}})  # now it has
    assert restarted.store.add_leasing == real_add and await escalations(restarted).work_once() == 1
    assert await topics(database) == ["iop.safety.alert_escalated"]  # escalated once
    assert len(pages(await log_of(messaging, episode_id))) == 2


# Configuration: a route that reaches nobody is loud, and what it should carry waits


NO_ROUTES = SETTINGS.model_copy(
    update={"care_team_email": None, "care_team_webhook_url": None, "on_call_phone": None, "on_call_webhook_url": None}
)


async def test_without_routes_to_staff_the_service_is_not_ready_and_their_messages_wait(
    intake: FakeIntake, database: MemoryDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    problems = Dependencies()
    with caplog.at_level(logging.ERROR):
        unrouted, dispatcher = await assemble(NO_ROUTES, POLICY, TEMPLATES, database, no_relay,  # type: ignore[arg-type]
                                              problems)  # fmt: skip
    logged = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert any("care_team" in line and "CARE_TEAM_EMAIL" in line for line in logged)
    assert any("on_call" in line and "ON_CALL_PHONE" in line for line in logged)
    state = {"messaging": unrouted, "dependencies": problems}
    async with await client_of("notifications", APP, database, state) as client:
        ready = await client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["problems"]["care_team"].startswith("misconfigured: no route: set CARE_TEAM_EMAIL")
    assert ready.json()["problems"]["on_call"].startswith("misconfigured: no route: set ON_CALL_PHONE")

    episode_id = intake.episode()
    data = SafetyAlertRaised(episode_id=episode_id, alert_id=str(uuid.uuid4()), assessment_id="as-1",
                             level="immediate", reasons=["cssrs_high_risk"],
                             raised_at=utc_now() - ACK * 2)  # fmt: skip
    await handlers.on_safety_alert_raised(intake_event(data), unrouted)  # as this instance's consumer applies it
    await escalations(unrouted).work_once()
    sent = recording(dispatcher)
    await dispatcher.work_once()
    log = await log_of(unrouted, episode_id)
    assert sorted((n.purpose, n.channel, n.status, n.attempts) for n in log) == [
        ("safety_alert", "email", "pending", 0), ("safety_alert", "webhook", "pending", 0),
        ("safety_escalation", "sms", "pending", 0), ("safety_escalation", "webhook", "pending", 0)]  # fmt: skip
    assert {n.last_error.split(":")[1].strip() for n in log if n.last_error} <= {"care_team", "on_call"}
    assert all(not s.sent for s in sent.values())

    fixed = NO_ROUTES.model_copy(update={"care_team_email": "care-team@clinic.test", "on_call_phone": ON_CALL_PHONE})
    _, restarted = await assemble(fixed, POLICY, TEMPLATES, database, no_relay, Dependencies())  # type: ignore[arg-type]
    sent = recording(restarted)
    await database["notifications"].update_many({}, {"$set": {"next_attempt_at": utc_now()}})
    await restarted.work_once()  # the clinic set a mailbox and an on-call number, and restarted the service
    assert [to for _, to, _ in sent["email"].sent] == ["care-team@clinic.test"]
    assert [to for _, to, _ in sent["sms"].sent] == [ON_CALL_PHONE]
    assert sorted((n.channel, n.status, n.last_error) for n in await log_of(unrouted, episode_id)) == [
        ("email", "sent", None),
        ("sms", "sent", None),
        ("webhook", "failed", "no care-team webhook configured"),
        ("webhook", "failed", "no on-call webhook configured"),
    ]
