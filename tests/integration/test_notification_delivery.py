"""Delivery outcomes: published atomically with the status, SMTP outages retried and recovered, log filters."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from stepwise_contract import (
    CareLevel,
    CareLevelAssigned,
    Reason,
    Schedule,
    ScheduledSession,
    new_event,
    to_kafka,
)
from stepwise_contract.webhooks import verify
from tools.dev.servers import free_port
from tools.dev.smtp_sink import SmtpSink

from .conftest import (
    CARE_TEAM_EMAIL,
    HTTP_TIMEOUT,
    IOP_DIMENSIONS,
    TOKENS,
    WEBHOOK_SECRET,
    WELCOME,
    Stack,
    assess,
    events_of,
    eventually,
    mail_to,
    new_episode,
    notifications_replaced,
)
from .conftest import events as outcomes


async def delivery_log(stack: Stack, **params: str) -> list[dict[str, Any]]:
    async with stack.http("notifications", "clinician") as notifications:
        response = await notifications.get("/v1/notifications", params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_a_sent_message_publishes_its_outcome_without_content(stack: Stack) -> None:
    started = datetime.now(UTC) - timedelta(seconds=1)
    episode = await new_episode(stack)
    await assess(stack, episode)
    await mail_to(stack, episode.email, subject=WELCOME)

    [sent] = await eventually(lambda: outcomes(stack, "iop.notification.sent", episode.episode_id), "the outcome")
    [entry] = await delivery_log(stack, episode_id=episode.episode_id, purpose="welcome")
    assert (sent.data.notification_id, sent.data.purpose) == (entry["notification_id"], "welcome")
    assert (sent.data.recipient_kind, sent.data.channel, sent.data.attempts) == ("patient", "email", 1)
    [record] = await events_of(stack, "iop.notification.sent", episode.episode_id)
    assert episode.email.encode() not in record.value and b"session" not in record.value.lower()

    since = started.isoformat()
    assert [e["notification_id"] for e in await delivery_log(stack, episode_id=episode.episode_id, since=since,
            recipient_kind="patient", status="sent")] == [entry["notification_id"]]  # fmt: skip
    assert (
        len(await delivery_log(stack, episode_id=episode.episode_id, purpose="session_reminder", status="pending")) > 0
    )
    assert await delivery_log(stack, episode_id=episode.episode_id, status="failed") == []
    assert await delivery_log(stack, episode_id=episode.episode_id, until=since) == []


async def test_a_permanent_failure_is_recorded_and_published(stack: Stack, kafka_producer: AIOKafkaProducer) -> None:
    unknown = "episode-intake-never-saw"
    start = datetime.now(UTC) + timedelta(days=1)
    schedule = Schedule(
        timezone="America/New_York",
        track="morning",
        days_per_week=3,
        hours_per_session=3,
        weeks=8,
        sessions=[ScheduledSession(session_id="s001", starts_at=start, ends_at=start + timedelta(hours=3))],
    )
    assigned = CareLevelAssigned(episode_id=unknown, level=CareLevel.IOP, status="active", assigned_at=start,
                                 assessment_id="a-x", schedule=schedule, rationale=[Reason(code="x", text="x")],
                                 policy_version="p")  # fmt: skip
    record = to_kafka(new_event(assigned, source="/stepwise/care-plan"))
    await kafka_producer.send_and_wait(record.topic, record.value, key=record.key, headers=record.headers)

    [failed] = await eventually(lambda: outcomes(stack, "iop.notification.failed", unknown), "the failure")
    assert (failed.data.reason_code, failed.data.purpose, failed.data.attempts) == ("permanent", "welcome", 1)
    [entry] = await delivery_log(stack, episode_id=unknown, purpose="welcome")
    assert (entry["status"], entry["last_error"]) == ("failed", "episode unknown to intake")


async def test_an_smtp_outage_is_retried_until_the_server_is_back(stack: Stack, tmp_path: Path) -> None:
    mail_port = free_port()  # nothing listens here yet: the outage
    with notifications_replaced(stack, {"SMTP_PORT": str(mail_port)}, tmp_path / "notifications.log") as stand_in:
        episode = await new_episode(stack)
        await assess(stack, episode)

        async def retrying() -> list[dict[str, Any]] | None:
            headers = {"Authorization": f"Bearer {TOKENS['clinician']}"}
            async with httpx.AsyncClient(base_url=stand_in.url, headers=headers, timeout=HTTP_TIMEOUT) as client:
                params = {"episode_id": episode.episode_id, "purpose": "welcome"}
                log = (await client.get("/v1/notifications", params=params)).json()
            return log if log and log[0]["attempts"] >= 2 else None

        [entry] = await eventually(retrying, "a second attempt during the outage")
        assert entry["status"] == "pending" and entry["last_error"].startswith("SMTP unavailable")
        with SmtpSink(mail_port) as recovered:
            await eventually(lambda: _mail(recovered, episode.email), "the mail once the server is back", within=60)
            [sent] = await eventually(
                lambda: outcomes(stack, "iop.notification.sent", episode.episode_id), "the sent outcome"
            )
        assert sent.data.attempts >= 2
        assert len(recovered.mailbox.to(episode.email)) == 1


async def _mail(sink: SmtpSink, address: str) -> bool:
    return bool(sink.mailbox.to(address))


async def test_a_safety_alert_reaches_the_care_team_by_email_and_signed_webhook(stack: Stack) -> None:
    episode = await new_episode(stack)
    async with stack.http("intake", "clinician") as intake:
        response = await intake.post(
            f"/v1/episodes/{episode.episode_id}/assessments",
            json={"dimensions": IOP_DIMENSIONS, "instruments": {"phq9": [1] * 9}},
        )
    assert response.json()["safety_alert"]["level"] == "same_day"

    async def care_team_mail() -> list[Any] | None:
        found = [m for m in stack.mailbox.to(CARE_TEAM_EMAIL) if episode.episode_id in str(m["Subject"])]
        return found or None

    [mail] = await eventually(care_team_mail, "the care team's email")
    assert str(mail["Subject"]).strip() == f"Safety alert (same-day) for episode {episode.episode_id}"
    text = mail.get_content()
    assert "phq9_item9_positive" in text and "clinician review today" in text
    assert all(value not in text for value in episode.pii.values())  # ids only: no name, contact or birth date

    async def signed_call() -> tuple[dict[str, str], bytes] | None:
        return next(((h, b) for h, b in stack.webhooks.received if episode.episode_id.encode() in b), None)

    headers, body = await eventually(signed_call, "the on-call webhook")
    assert verify(WEBHOOK_SECRET, headers, body, now=time.time())
    assert not verify("another-secret", headers, body, now=time.time())
    payload = json.loads(body)
    assert (payload["purpose"], payload["level"], payload["reasons"]) == ("safety_alert", "same_day",
                                                                         ["phq9_item9_positive"])  # fmt: skip
    log = await delivery_log(stack, episode_id=episode.episode_id, recipient_kind="care_team")
    assert sorted(entry["channel"] for entry in log) == ["email", "webhook"]

    async def care_team_outcomes() -> list[Any] | None:
        sent = await outcomes(stack, "iop.notification.sent", episode.episode_id)
        found = [e for e in sent if e.data.recipient_kind == "care_team"]
        return found if len(found) >= 2 else None

    sent = await eventually(care_team_outcomes, "both care-team outcomes")
    assert {e.data.notification_id for e in sent} == {entry["notification_id"] for entry in log}
