"""notifications' metrics: an open safety alert, messages by status and channel, and a failing channel's sends."""

from __future__ import annotations

import httpx
from prometheus_client import REGISTRY

from services.notifications.app import delivery_metrics
from services.notifications.changes import Messaging
from services.notifications.channels import DeliveryError
from services.notifications.dispatcher import Dispatcher
from tests.service.conftest import Events
from tests.service.fake_intake import FakeIntake
from tests.service.notifications.helpers import CLINICIAN, FakeChannel, alert


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_an_open_alert_and_a_failing_channel_show_in_the_metrics(
    events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher, channels: dict[str, FakeChannel],
    http: httpx.AsyncClient,
) -> None:  # fmt: skip
    failed_before = sample("stepwise_notification_send_seconds_count", channel="email", outcome="failed")
    channels["email"].failures = [DeliveryError("SMTP unavailable: ConnectionRefusedError", permanent=False)]
    await alert(events, intake)
    await dispatcher.work_once()  # the care team's email fails once, the webhook goes
    await delivery_metrics(messaging)()
    scraped = (await http.get("/metrics")).text
    assert "stepwise_safety_alerts_open 1.0" in scraped
    assert sample("stepwise_notification_send_seconds_count", channel="email", outcome="failed") == failed_before + 1
    assert sample("stepwise_notifications", status="pending", channel="email") == 1
    assert sample("stepwise_notification_send_seconds_count", channel="webhook", outcome="sent") >= 1
    # Sent messages are counted as they go, not in the delivery log (which keeps them for ever).
    assert REGISTRY.get_sample_value("stepwise_notifications", {"status": "sent", "channel": "webhook"}) is None

    [listed] = (await http.get("/v1/safety-alerts", headers=CLINICIAN)).json()
    acknowledged = await http.post(f"/v1/safety-alerts/{listed['alert_id']}/acknowledge", headers=CLINICIAN)
    assert acknowledged.status_code == 200, acknowledged.text
    await delivery_metrics(messaging)()
    assert sample("stepwise_safety_alerts_open") == 0
