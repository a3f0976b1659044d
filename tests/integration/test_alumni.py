"""Graduates with a consent naming the alumni group: enrolment, a welcome, check-ins and meeting reminders,
each sent once even with two instances; an opt-out, a withdrawn consent or a new episode ends it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from stepwise_contract import AlumniEnrolled, AlumniLeft, from_kafka
from tools.dev.devstack import ServiceProcess

from .conftest import (
    HTTP_TIMEOUT,
    TOKENS,
    Episode,
    Stack,
    assess,
    care_plan_of,
    events_of,
    eventually,
    instance_beside,
    mail_to,
    new_episode,
)

CHECK_IN, WELCOME, CONGRATULATIONS = "Checking in", "Welcome to the alumni group", "Congratulations"


async def grant_alumni_consent(stack: Stack, episode: Episode) -> str:
    body = {"recipient_kind": "alumni_group", "scopes": ["alumni_program"]}
    async with stack.http("intake", "intake_staff") as intake:
        response = await intake.post(f"/v1/episodes/{episode.episode_id}/consents", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["consent_id"])


async def graduated(stack: Stack, consent: bool = True) -> tuple[Episode, str | None]:
    episode = await new_episode(stack)
    consent_id = await grant_alumni_consent(stack, episode) if consent else None
    await assess(stack, episode)
    await eventually(lambda: care_plan_of(stack, episode), "the care plan")
    async with stack.http("care_plan", "clinician") as clinician:
        response = await clinician.post(f"/v1/episodes/{episode.episode_id}/graduate",
                                        json={"reason": "graduating early: moving away"})  # fmt: skip
    assert response.status_code == 200, response.text
    await mail_to(stack, episode.email, subject=CONGRATULATIONS)
    return episode, consent_id


async def enrolment(stack: Stack, episode: Episode, status: str = "enrolled") -> dict[str, Any] | None:
    async with stack.http("notifications", "clinician") as notifications:
        response = await notifications.get(f"/v1/alumni/{episode.episode_id}")
    found = response.json() if response.status_code == 200 else None
    return found if found and found["status"] == status else None


async def alumni_log(stack: Stack, episode: Episode, url: str | None = None) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {TOKENS['clinician']}"}
    async with httpx.AsyncClient(
        base_url=url or stack.services["notifications"].url, headers=headers, timeout=HTTP_TIMEOUT
    ) as client:
        response = await client.get("/v1/notifications", params={"episode_id": episode.episode_id, "limit": 500})
    return [entry for entry in response.json() if entry["recipient_kind"] == "alumni"]


@contextlib.contextmanager
def notifications_at(stack: Stack, moment: datetime, logs: Path) -> Iterator[list[ServiceProcess]]:
    """Two notifications instances that only send (no consumers), their clocks shifted to ``moment``."""
    offset = (moment - datetime.now(moment.tzinfo)).total_seconds()
    env = {"CLOCK_OFFSET_SECONDS": str(offset), "KAFKA_CONSUMERS_ENABLED": "0", "KAFKA_GROUP_INSTANCE_ID": ""}
    with contextlib.ExitStack() as instances:  # not a crash test: a clean stop
        yield [
            instances.enter_context(instance_beside(stack, "notifications", env, Path(f"{logs}n{n}.log")))
            for n in (1, 2)
        ]


async def test_a_graduate_is_enrolled_and_each_check_in_goes_out_once(stack: Stack, tmp_path: Path) -> None:
    episode, consent_id = await graduated(stack)
    enrolled = await eventually(lambda: enrolment(stack, episode), "the alumni enrolment")
    [record] = await eventually(lambda: events_of(stack, "iop.alumni.enrolled", episode.episode_id), "the event")
    event = from_kafka(record.headers, record.value, AlumniEnrolled)
    assert (event.data.consent_id, event.data.check_in_days) == (consent_id, [7, 30, 60, 90])
    assert not [value for value in episode.pii.values() if value.encode() in record.value]
    [welcome] = await mail_to(stack, episode.email, subject=WELCOME)
    assert all(value not in welcome.get_content() for value in episode.pii.values())

    graduated_at = datetime.fromisoformat(enrolled["graduated_at"])
    for n, days in enumerate((7, 30, 60, 90), start=1):
        with notifications_at(stack, graduated_at + timedelta(days=days + 1), tmp_path / f"day{days}-"):
            await mail_to(stack, episode.email, n, subject=CHECK_IN)  # the day-``days`` check-in
        check_ins = [m for m in stack.mailbox.to(episode.email) if m["Subject"] == CHECK_IN]
        assert len(check_ins) == n  # the next one is not due yet, and none went out twice
        assert f"It has been {days} days" in check_ins[-1].get_content()

    log = await alumni_log(stack, episode)
    check_in_entries = [e for e in log if e["purpose"] == "alumni_check_in"]
    assert [(e["status"], e["attempts"]) for e in check_in_entries] == [("sent", 1)] * 4
    # The clock jumped past most weekly meetings: a reminder found only after its meeting began is dropped.
    meetings = [e for e in log if e["purpose"] == "alumni_meeting"]
    jumped_past = [e for e in meetings if datetime.fromisoformat(e["not_before"]) < graduated_at + timedelta(days=91)]
    assert len(jumped_past) >= 12
    assert {(e["status"], e["last_error"]) for e in jumped_past} <= {
        ("sent", None),
        ("cancelled", "too late: its moment has passed"),
    }
    everything = stack.mailbox.to(episode.email)
    assert len({m["Message-ID"] for m in everything}) == len(everything)  # no message twice


async def test_opting_out_ends_the_enrolment_and_what_it_still_had_to_send(stack: Stack) -> None:
    episode, _ = await graduated(stack)
    await eventually(lambda: enrolment(stack, episode), "the alumni enrolment")
    body = {"episode_id": episode.episode_id, "recipient_kind": "alumni"}
    async with stack.http("notifications", "intake_staff") as notifications:
        first = await notifications.post("/v1/opt-outs", json=body)
        again = await notifications.post("/v1/opt-outs", json=body)
    assert (first.status_code, again.status_code) == (201, 200)
    left = await eventually(lambda: enrolment(stack, episode, "left"), "the enrolment to end")
    assert left["left_reason"] == "opted_out"
    [record] = await eventually(lambda: events_of(stack, "iop.alumni.left", episode.episode_id), "iop.alumni.left")
    assert from_kafka(record.headers, record.value, AlumniLeft).data.reason_code == "opted_out"
    scheduled = [e for e in await alumni_log(stack, episode) if e["purpose"] != "alumni_welcome"]
    assert scheduled and {e["status"] for e in scheduled} == {"cancelled"}


async def test_a_new_episode_ends_the_enrolment(stack: Stack) -> None:
    episode, _ = await graduated(stack)
    await eventually(lambda: enrolment(stack, episode), "the alumni enrolment")
    async with stack.http("intake", "intake_staff") as intake:
        response = await intake.post(f"/v1/patients/{episode.patient_id}/episodes", json={"program": "adult"})
    returning = Episode(episode.patient_id, response.json()["episode_id"], episode.email, episode.pii)
    await assess(stack, returning)
    left = await eventually(lambda: enrolment(stack, episode, "left"), "the enrolment to end")
    assert left["left_reason"] == "new_episode"
    assert {e["status"] for e in await alumni_log(stack, episode) if e["purpose"] == "alumni_check_in"} == {"cancelled"}


async def test_a_withdrawn_consent_ends_the_enrolment(stack: Stack) -> None:
    episode, consent_id = await graduated(stack)
    await eventually(lambda: enrolment(stack, episode), "the alumni enrolment")
    async with stack.http("intake", "intake_staff") as intake:
        response = await intake.post(f"/v1/episodes/{episode.episode_id}/consents/{consent_id}/revoke")
    assert response.status_code == 200, response.text
    left = await eventually(lambda: enrolment(stack, episode, "left"), "the enrolment to end")
    assert left["left_reason"] == "consent_withdrawn"


async def test_without_a_consent_a_graduate_is_not_enrolled(stack: Stack) -> None:
    episode, _ = await graduated(stack, consent=False)  # the congratulations arrived: graduation was handled
    async with stack.http("notifications", "clinician") as notifications:
        assert (await notifications.get(f"/v1/alumni/{episode.episode_id}")).status_code == 404
    assert await alumni_log(stack, episode) == []
    assert [m for m in stack.mailbox.to(episode.email) if m["Subject"] == WELCOME] == []
