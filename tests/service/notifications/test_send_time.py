"""What notifications checks when a message is sent: consent and quiet hours by the tier's fixed clock, a care
team reached by webhook only, a store refusing an alert's write."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from pymongo.errors import DocumentTooLarge

from services.common.utc import utc_now
from services.notifications.changes import Messaging
from services.notifications.channels import WebhookSender
from services.notifications.dispatcher import Dispatcher, Senders
from services.notifications.settings import NotificationsSettings
from services.notifications.store import SAFETY_ALERTS
from stepwise_contract import AttendanceRuleTriggered, CareLevel, StepUpRecommended
from stepwise_contract.webhooks import verify
from tests.service.conftest import Clock, Events
from tests.service.fake_intake import FakeIntake
from tests.service.memory_mongo import MemoryDatabase
from tests.service.notifications.helpers import (
    CLINICIAN,
    REASONS,
    SETTINGS,
    FakeChannel,
    alert,
    care_plan_event,
    log_of,
    session_missed,
    started,
    what,
)


async def test_a_consent_that_expires_while_its_message_waits_stops_the_message(
    events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher, channels: dict[str, FakeChannel],
    clock: Clock,
) -> None:  # fmt: skip
    episode_id = await started(events, intake)
    family = intake.consent(episode_id, "family", "attendance", expires_on=utc_now().date() + timedelta(days=1))
    await events.deliver(care_plan_event(session_missed(episode_id)))
    [waiting] = [n for n in await log_of(messaging, episode_id) if n.consent_id == family]
    assert waiting.status == "pending"
    clock.advance(timedelta(days=2))  # no event says a consent expired: intake answers 410 when asked at send time
    await dispatcher.work_once()
    [stopped] = [n for n in await log_of(messaging, episode_id) if n.consent_id == family]
    assert (stopped.status, stopped.last_error) == ("cancelled", "consent no longer in force")
    assert waiting.notification_id not in channels["email"].sent


async def test_in_quiet_hours_a_safety_alert_goes_at_once_and_a_welcome_waits_for_their_end(
    events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher, channels: dict[str, FakeChannel],
    clock: Clock,
) -> None:  # fmt: skip
    new_york = ZoneInfo(SETTINGS.clinic_timezone)
    clock.at(datetime(2026, 12, 1, 7, 31, tzinfo=new_york))  # quiet hours (21:00-08:00) by default
    welcomed = await started(events, intake)
    alerted = await alert(events, intake)
    await dispatcher.work_once()
    assert {n.channel: n.status for n in await log_of(messaging, alerted)} == {"email": "sent", "webhook": "sent"}
    [welcome] = [n for n in await log_of(messaging, welcomed) if n.purpose == "welcome"]
    assert (welcome.status, welcome.not_before) == ("pending", datetime(2026, 12, 1, 8, 0, tzinfo=new_york))
    assert welcome.notification_id not in channels["email"].sent
    clock.at(datetime(2026, 12, 1, 8, 0, 1, tzinfo=new_york))
    await dispatcher.work_once()
    assert welcome.notification_id in channels["email"].sent


WEBHOOK_ONLY = SETTINGS.model_copy(update={"care_team_email": None})
"""A clinic whose care team has only CARE_TEAM_WEBHOOK_URL."""


@pytest.mark.parametrize("settings", [WEBHOOK_ONLY])
async def test_a_care_team_with_only_a_webhook_gets_referrals_and_escalations_there(
    events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher, settings: NotificationsSettings
) -> None:
    posted: list[httpx.Request] = []

    def receive(request: httpx.Request) -> httpx.Response:
        posted.append(request)
        return httpx.Response(200)

    webhook = WebhookSender(settings.webhook_secret.get_secret_value())
    webhook._client = httpx.AsyncClient(transport=httpx.MockTransport(receive))
    dispatcher._senders = Senders(FakeChannel(), FakeChannel(), webhook)  # type: ignore[arg-type]
    episode_id = intake.episode()
    referral = StepUpRecommended(episode_id=episode_id, recommendation_id="r1", from_level=CareLevel.IOP,
                                 to_level=CareLevel.INPATIENT, rationale=REASONS, policy_version="test",
                                 recommended_at=utc_now(), refer_out=True)  # fmt: skip
    escalation = AttendanceRuleTriggered(episode_id=episode_id, rule_code="two_consecutive",
                                         action="care_team_review", session_id="s002", consecutive_misses=2,
                                         misses_in_window=2, rationale=REASONS, policy_version="test",
                                         triggered_at=utc_now())  # fmt: skip
    for data in (referral, escalation):
        await events.deliver(care_plan_event(data))
    assert what(await log_of(messaging, episode_id)) == [("attendance_escalation", "care_team", "webhook"),
                                                         ("step_recommendation", "care_team", "webhook")]  # fmt: skip
    await dispatcher.work_once()
    assert {n.status for n in await log_of(messaging, episode_id)} == {"sent"}
    secret = settings.webhook_secret.get_secret_value()
    assert all(verify(secret, request.headers, request.content, now=time.time()) for request in posted)
    bodies = {body["purpose"]: body for body in (json.loads(request.content) for request in posted)}
    assert {key: value for key, value in bodies["step_recommendation"].items() if key != "notification_id"} == {
        "purpose": "step_recommendation", "episode_id": episode_id, "recommendation_id": "r1", "direction": "up",
        "from_level": "IOP", "to_level": "INPATIENT", "refer_out": True, "reasons": ["test"],
    }  # fmt: skip
    assert {key: value for key, value in bodies["attendance_escalation"].items() if key != "notification_id"} == {
        "purpose": "attendance_escalation", "episode_id": episode_id, "rule_code": "two_consecutive",
        "action": "care_team_review", "session_id": "s002", "reasons": ["test"],
    }  # fmt: skip
    assert "A reason." not in str(bodies)  # a reason's text stays in the clinic's mailbox, never on a webhook
    await webhook.close()


async def test_a_store_refusing_an_alerts_write_is_a_409_naming_the_record_not_a_500(
    http: httpx.AsyncClient, events: Events, intake: FakeIntake, database: MemoryDatabase
) -> None:
    await alert(events, intake)

    async def too_large(*_: Any, **__: Any) -> None:
        raise DocumentTooLarge("BSON document too large")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(database[SAFETY_ALERTS], "update_one", too_large)
        refused = await http.post("/v1/safety-alerts/a1/acknowledge", headers=CLINICIAN)
    assert refused.status_code == 409, refused.text
    assert refused.json()["detail"].startswith("the record is at its size limit: the safety alert record")
    assert (await http.post("/v1/safety-alerts/a1/acknowledge", headers=CLINICIAN)).status_code == 200
