"""Texts through the SMS provider (a real HTTP server on loopback), its outages, and opt-outs: a STOP
reply or an API call stops messages to that recipient, never a safety alert to staff."""

from __future__ import annotations

from typing import Any

from .conftest import (
    CARE_TEAM_EMAIL,
    IOP_DIMENSIONS,
    Episode,
    Stack,
    assess,
    events_of,
    eventually,
    mail_to,
    new_episode,
    record_during,
    wait_consumed,
)

OUTREACH = "We missed you"


async def miss(stack: Stack, episode: Episode, nth: int) -> None:
    """Record the episode's ``nth`` session (from 0) missed, once it has begun."""
    response = await record_during(stack, episode, nth, "missed")
    assert response.status_code == 200, response.text


async def outreach(stack: Stack, episode: Episode, channel: str, count: int = 1) -> list[dict[str, Any]]:
    """The episode's missed-session outreach on ``channel`` once ``count`` of them are settled."""

    async def settled() -> list[dict[str, Any]] | None:
        async with stack.http("notifications", "clinician") as client:
            params = {"episode_id": episode.episode_id, "purpose": "missed_session_outreach"}
            log = (await client.get("/v1/notifications", params=params)).json()
        entries = [e for e in log if e["channel"] == channel and e["status"] != "pending"]
        return entries if len(entries) >= count else None

    return await eventually(settled, f"{count} {channel} outreach settled")


async def started(stack: Stack, *, national_phone: bool = False) -> Episode:
    """An episode with an active care plan whose messages notifications has planned."""
    episode = await new_episode(stack, national_phone=national_phone)
    await assess(stack, episode)
    [assigned] = await eventually(lambda: events_of(stack, "iop.care_level.assigned", episode.episode_id), "a plan")
    await wait_consumed(stack, "notifications", assigned.topic, assigned.partition, assigned.offset)
    return episode


async def test_a_missed_session_texts_the_patient_and_a_provider_outage_is_retried(stack: Stack) -> None:
    episode = await started(stack)
    stack.texts.fail_next(episode.phone, 2, status=503)
    await miss(stack, episode, 0)
    [entry] = await outreach(stack, episode, "sms")
    assert (entry["status"], entry["attempts"]) == ("sent", 3)  # two refusals, then through
    [text] = stack.texts.to(episode.phone)
    assert stack.texts.refused[episode.phone] == 2
    assert text.reference == text.idempotency_key == entry["notification_id"]
    assert "We missed you" in text.body and "STOP" in text.body
    assert all(value not in text.body for value in episode.pii.values())
    await mail_to(stack, episode.email, subject=OUTREACH)  # and by email, as the policy says


async def test_a_number_the_provider_refuses_for_good_fails_without_retrying(stack: Stack) -> None:
    episode = await started(stack)
    stack.texts.fail_next(episode.phone, 1, status=400)
    await miss(stack, episode, 0)
    [entry] = await outreach(stack, episode, "sms")
    assert (entry["status"], entry["attempts"], entry["last_error"]) == ("failed", 1, "SMS provider answered 400")
    assert stack.texts.to(episode.phone) == []


async def test_a_stop_reply_stops_texts_to_that_number_until_start(stack: Stack) -> None:
    episode = await started(stack)
    async with stack.http("notifications", "sms_provider") as provider:
        stopped = await provider.post("/v1/sms/inbound", json={"from": episode.phone, "text": " Stop "})
    async with stack.http("notifications", "clinician") as not_the_provider:
        refused = await not_the_provider.post("/v1/sms/inbound", json={"from": episode.phone, "text": "START"})
    assert (stopped.json(), refused.status_code) == ({"action": "opted_out"}, 403)

    await miss(stack, episode, 0)
    [entry] = await outreach(stack, episode, "sms")
    assert (entry["status"], entry["last_error"]) == ("cancelled", "the number replied STOP")
    await mail_to(stack, episode.email, subject=OUTREACH)  # STOP is about texts: email still goes

    async with stack.http("notifications", "sms_provider") as provider:
        resumed = await provider.post("/v1/sms/inbound", json={"from": episode.phone, "text": "START"})
    assert resumed.json() == {"action": "opted_in"}
    await miss(stack, episode, 1)
    entries = await outreach(stack, episode, "sms", count=2)
    assert sorted(e["status"] for e in entries) == ["cancelled", "sent"]
    assert len(stack.texts.to(episode.phone)) == 1


async def test_a_stop_from_the_number_written_otherwise_stops_texts_to_it(stack: Stack) -> None:
    episode = await started(stack, national_phone=True)  # typed at intake as 555-…-…, the STOP comes from +1555…
    async with stack.http("intake", "clinician") as intake:
        stored = (await intake.get(f"/v1/patients/{episode.patient_id}")).json()["phone"]
    assert stored == episode.phone != episode.pii["phone"]  # intake keeps what was typed in E.164
    async with stack.http("notifications", "sms_provider") as provider:
        stopped = await provider.post("/v1/sms/inbound", json={"from": episode.phone, "text": "STOP"})
    assert stopped.json() == {"action": "opted_out"}
    await miss(stack, episode, 0)
    [entry] = await outreach(stack, episode, "sms")
    assert (entry["status"], entry["last_error"]) == ("cancelled", "the number replied STOP")
    assert stack.texts.to(episode.phone) == []

    async with stack.http("notifications", "sms_provider") as provider:  # START, written as the clinic typed it
        resumed = await provider.post("/v1/sms/inbound", json={"from": "1 " + episode.phone[2:], "text": "START"})
    assert resumed.json() == {"action": "opted_in"}
    await miss(stack, episode, 1)
    entries = await outreach(stack, episode, "sms", count=2)
    assert sorted(e["status"] for e in entries) == ["cancelled", "sent"]
    [text] = stack.texts.to(episode.phone)  # sent to the number in E.164
    assert "We missed you" in text.body


async def test_an_opt_out_stops_messages_to_the_patient_but_never_a_safety_alert(stack: Stack) -> None:
    episode = await started(stack)
    body = {"episode_id": episode.episode_id, "recipient_kind": "patient"}
    async with stack.http("notifications", "intake_staff") as notifications:
        created = await notifications.post("/v1/opt-outs", json=body)
        care_team = await notifications.post("/v1/opt-outs", json=body | {"recipient_kind": "care_team"})
        no_consent = await notifications.post("/v1/opt-outs", json=body | {"recipient_kind": "family"})
        listed = await notifications.get("/v1/opt-outs", params={"episode_id": episode.episode_id})
    assert created.status_code == 201, created.text
    assert (care_team.status_code, no_consent.status_code) == (422, 422)
    assert "recipient_kind" in care_team.text and "consent_id" in no_consent.text
    assert [o["opt_out_id"] for o in listed.json()] == [created.json()["opt_out_id"]]
    reminders = await _log(stack, episode, "session_reminder")
    assert reminders and {e["status"] for e in reminders} == {"cancelled"}  # what waited is cancelled too

    await miss(stack, episode, 0)
    entries = await outreach(stack, episode, "sms") + await outreach(stack, episode, "email")
    assert {(e["status"], e["last_error"]) for e in entries} == {("cancelled", "the recipient opted out")}

    async with stack.http("intake", "clinician") as intake:
        response = await intake.post(
            f"/v1/episodes/{episode.episode_id}/assessments",
            json={"dimensions": IOP_DIMENSIONS, "instruments": {"phq9": [1] * 9}},  # item 9 answered: an alert
        )
    assert response.status_code == 201, response.text

    async def alerted() -> bool:
        return any(episode.episode_id in str(m["Subject"]) for m in stack.mailbox.to(CARE_TEAM_EMAIL))

    await eventually(alerted, "the safety alert to the care team, opt-out or not")
    assert stack.mailbox.to(episode.email) == [m for m in stack.mailbox.to(episode.email) if m["Subject"] != OUTREACH]

    async with stack.http("notifications", "intake_staff") as notifications:
        withdrawn = await notifications.delete(f"/v1/opt-outs/{created.json()['opt_out_id']}")
        again = await notifications.delete(f"/v1/opt-outs/{created.json()['opt_out_id']}")
    assert (withdrawn.status_code, again.status_code) == (204, 404)


async def _log(stack: Stack, episode: Episode, purpose: str) -> list[dict[str, Any]]:
    async with stack.http("notifications", "clinician") as client:
        params: dict[str, str | int] = {"episode_id": episode.episode_id, "purpose": purpose, "limit": 500}
        return (await client.get("/v1/notifications", params=params)).json()  # type: ignore[no-any-return]
