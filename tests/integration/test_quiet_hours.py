"""Quiet hours (21:00 to 08:00 in the recipient's zone) delay non-urgent messages; safety alerts ignore them."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from tools.devstack import ServiceProcess, free_port

from .conftest import CARE_TEAM_EMAIL, IOP_DIMENSIONS, TOKENS, Episode, Stack, assess, eventually, mail_to, new_episode

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
    regular = stack.services["notifications"]
    regular.kill()
    quiet = {"QUIET_HOURS_START": "21:00", "QUIET_HOURS_END": "08:00", "CLOCK_OFFSET_SECONDS": str(offset)}
    shifted = ServiceProcess("notifications", free_port(), regular.env | quiet, tmp_path / "n.log").start()
    try:
        new_yorker, angeleno = (
            await patient_in(stack, "America/New_York"),
            await patient_in(stack, "America/Los_Angeles"),
        )
        await assess(stack, new_yorker)
        await assess(stack, angeleno)
        await mail_to(stack, angeleno.email, subject="Your session schedule")  # 20:00 there: not quiet

        async def deferred() -> list[dict[str, Any]] | None:
            headers = {"Authorization": f"Bearer {TOKENS['clinician']}"}
            async with httpx.AsyncClient(base_url=shifted.url, headers=headers) as client:
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
    finally:
        shifted.kill()
        regular.start()
