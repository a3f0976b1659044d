"""Quiet hours (21:00 to 08:00 in the recipient's zone) delay non-urgent messages; safety alerts ignore them."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from aiokafka import AIOKafkaProducer

from stepwise_contract import CareLevel, CareLevelAssigned, Reason, Schedule, ScheduledSession, new_event, to_kafka

from .conftest import (
    CARE_TEAM_EMAIL,
    HTTP_TIMEOUT,
    IOP_DIMENSIONS,
    TOKENS,
    Episode,
    Stack,
    assess,
    eventually,
    instance_beside,
    mail_to,
    new_episode,
    notifications_replaced,
)

NEW_YORK = ZoneInfo("America/New_York")


def next_local(hour: int, zone: ZoneInfo) -> datetime:
    now = datetime.now(zone)
    moment = datetime.combine(now.date(), time(hour), tzinfo=zone)
    return moment if moment > now + timedelta(minutes=5) else moment + timedelta(days=1)


async def patient_in(stack: Stack, zone: str) -> Episode:
    episode = await new_episode(stack)
    async with stack.http("intake", "intake_staff") as intake:
        response = await intake.patch(f"/v1/patients/{episode.patient_id}", json={"timezone": zone})
    assert response.json()["timezone"] == zone
    return episode


async def test_quiet_hours_hold_patient_mail_in_their_zone_but_never_a_safety_alert(
    stack: Stack, tmp_path: Path
) -> None:
    late_evening = next_local(23, NEW_YORK)  # 23:00 in New York, 20:00 in Los Angeles
    offset = (late_evening - datetime.now(UTC)).total_seconds()
    quiet = {"QUIET_HOURS_START": "21:00", "QUIET_HOURS_END": "08:00", "CLOCK_OFFSET_SECONDS": str(offset)}
    with notifications_replaced(stack, quiet, tmp_path / "n.log") as shifted:
        new_yorker, angeleno = (
            await patient_in(stack, "America/New_York"),
            await patient_in(stack, "America/Los_Angeles"),
        )
        await assess(stack, new_yorker)
        await assess(stack, angeleno)
        await mail_to(stack, angeleno.email, subject="Your session schedule")  # 20:00 there: not quiet

        async def deferred() -> list[dict[str, Any]] | None:
            headers = {"Authorization": f"Bearer {TOKENS['clinician']}"}
            async with httpx.AsyncClient(base_url=shifted.url, headers=headers, timeout=HTTP_TIMEOUT) as client:
                log = (await client.get("/v1/notifications", params={"episode_id": new_yorker.episode_id})).json()
            waiting = [e for e in log if e["purpose"] == "welcome" and e["not_before"] > e["created_at"]]
            return waiting or None

        [waiting] = await eventually(deferred, "the New Yorker's welcome to wait")
        morning = datetime.combine(late_evening.date() + timedelta(days=1), time(8), tzinfo=NEW_YORK)
        assert (waiting["status"], waiting["attempts"]) == ("pending", 0)
        assert datetime.fromisoformat(waiting["not_before"]) == morning

        async with stack.http("intake", "clinician") as intake:
            await intake.post(f"/v1/episodes/{new_yorker.episode_id}/assessments",
                              json={"dimensions": IOP_DIMENSIONS, "instruments": {"phq9": [1] * 9}})  # fmt: skip

        async def alerted() -> bool:
            return any(new_yorker.episode_id in str(m["Subject"]) for m in stack.mailbox.to(CARE_TEAM_EMAIL))

        await eventually(alerted, "the safety alert, quiet hours or not")
        assert stack.mailbox.to(new_yorker.email) == []


async def test_a_session_reminder_due_in_the_patients_night_waits_for_their_morning(
    stack: Stack, tmp_path: Path, kafka_producer: AIOKafkaProducer
) -> None:
    angeleno = await patient_in(stack, "America/Los_Angeles")
    zone = ZoneInfo("America/Los_Angeles")
    day = datetime.now(zone).date() + timedelta(days=2)
    starts = datetime.combine(day, time(9), tzinfo=zone)  # reminders due 24 h and 2 h before: 09:00, then 07:00
    session = ScheduledSession(session_id="s001", starts_at=starts, ends_at=starts + timedelta(hours=3))
    schedule = Schedule(timezone="America/Los_Angeles", track="morning", days_per_week=3, hours_per_session=3,
                        weeks=8, sessions=[session])  # fmt: skip
    assigned = CareLevelAssigned(
        episode_id=angeleno.episode_id, level=CareLevel.IOP, status="active", assigned_at=datetime.now(UTC),
        assessment_id="a-1", schedule=schedule, rationale=[Reason(code="offered", text="offered")], policy_version="p",
    )  # fmt: skip
    record = to_kafka(new_event(assigned, source="/stepwise/care-plan"))
    await kafka_producer.send_and_wait(record.topic, record.value, key=record.key, headers=record.headers)

    async def planned() -> list[dict[str, Any]] | None:
        async with stack.http("notifications", "clinician") as client:
            params = {"episode_id": angeleno.episode_id, "purpose": "session_reminder"}
            return (await client.get("/v1/notifications", params=params)).json() or None

    assert len(await eventually(planned, "the reminders")) == 2
    early = datetime.combine(day, time(7, 30), tzinfo=zone)  # 10:30 in New York, the clinic's zone: not quiet there
    offset = (early - datetime.now(UTC)).total_seconds()
    quiet = {"QUIET_HOURS_START": "21:00", "QUIET_HOURS_END": "08:00", "KAFKA_CONSUMERS_ENABLED": "0",
             "KAFKA_GROUP_INSTANCE_ID": "", "CLOCK_OFFSET_SECONDS": str(offset)}  # fmt: skip
    with instance_beside(stack, "notifications", quiet, tmp_path / "n.log"):

        async def both_wait() -> list[dict[str, Any]] | None:
            reminders = await planned() or []
            return reminders if all(datetime.fromisoformat(e["not_before"]) > early for e in reminders) else None

        # The instance with the shifted clock starts, then its first pass moves them: on a loaded 2-core machine
        # that took longer than the usual wait (a bound on a condition, not a sleep).
        reminders = await eventually(both_wait, "both reminders to wait for the morning", within=90)
    morning = datetime.combine(day, time(8), tzinfo=zone)
    assert [(e["status"], e["attempts"], datetime.fromisoformat(e["not_before"])) for e in reminders] == [
        ("pending", 0, morning)
    ] * 2
    assert stack.texts.to(angeleno.phone) == []
