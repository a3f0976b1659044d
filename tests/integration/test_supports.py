"""Family and designated supports hear only what a current consent naming them allows (42 CFR Part 2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from tools.dev.servers import free_port
from tools.dev.smtp_sink import SmtpSink

from .conftest import (
    Episode,
    Stack,
    assess,
    events_of,
    eventually,
    mail_to,
    new_episode,
    notifications_replaced,
    record_during,
    settled,
    wait_consumed,
)


async def grant(
    stack: Stack, episode: Episode, kind: str, email: str, scopes: list[str], expires_on: str | None = None
) -> str:
    body = {"recipient_kind": kind, "recipient": {"name": f"Support {email}", "email": email}, "scopes": scopes}
    body |= {"expires_on": expires_on} if expires_on else {}
    async with stack.http("intake", "intake_staff") as intake:
        response = await intake.post(f"/v1/episodes/{episode.episode_id}/consents", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["consent_id"])


async def revoke(stack: Stack, episode: Episode, consent_id: str) -> None:
    async with stack.http("intake", "intake_staff") as intake:
        response = await intake.post(f"/v1/episodes/{episode.episode_id}/consents/{consent_id}/revoke")
    assert response.json()["status"] == "revoked"


async def test_supports_are_told_only_what_their_consent_allows(stack: Stack) -> None:
    episode = await new_episode(stack)
    tag = episode.episode_id[:8]
    attendance, appointments, revoked = (f"{name}.{tag}@example.org" for name in ("att", "app", "rev"))
    await grant(stack, episode, "family", attendance, ["attendance"])
    await grant(stack, episode, "designated_support", appointments, ["appointments"])
    await revoke(stack, episode, await grant(stack, episode, "family", revoked, ["attendance", "appointments"]))

    await assess(stack, episode)
    await mail_to(stack, appointments, subject="Sessions scheduled")
    assert (await record_during(stack, episode, 0, "missed")).status_code == 200  # once the session has begun
    [told] = await mail_to(stack, attendance, subject="A session was missed")

    [missed] = await eventually(lambda: events_of(stack, "iop.session.missed", episode.episode_id), "the miss")
    await wait_consumed(stack, "notifications", missed.topic, missed.partition, missed.offset)
    log = await eventually(lambda: settled(stack, episode), "every message settled")
    assert sorted((e["purpose"], e["recipient_kind"], e["channel"]) for e in log) == [
        ("missed_session_outreach", "patient", "email"),
        ("missed_session_outreach", "patient", "sms"),
        ("support_missed_session", "family", "email"),
        ("support_schedule", "designated_support", "email"),
        ("welcome", "patient", "email"),
    ]
    assert (len(stack.mailbox.to(attendance)), len(stack.mailbox.to(appointments))) == (1, 1)
    assert stack.mailbox.to(revoked) == []  # a revoked consent: never contacted
    assert all(value not in told.get_content() for value in episode.pii.values())  # nothing about the patient


async def test_a_support_hears_of_a_family_session_booked_and_cancelled_and_of_no_other_change(stack: Stack) -> None:
    episode = await new_episode(stack)
    support = f"family.{episode.episode_id[:8]}@example.org"
    await grant(stack, episode, "family", support, ["appointments"])
    await assess(stack, episode)
    await mail_to(stack, support, subject="Sessions scheduled")
    family_at = (datetime.now(UTC) + timedelta(days=1)).replace(hour=23, minute=0, second=0, microsecond=0)
    individual_at = family_at + timedelta(days=1)
    appointments = f"/v1/episodes/{episode.episode_id}/appointments"
    async with stack.http("care_plan", "clinician") as care_plan:
        booked = await care_plan.post(appointments, json={"kind": "family", "starts_at": family_at.isoformat()})
        assert booked.status_code == 201, booked.text
        [invited] = await mail_to(stack, support, subject="Family sessions scheduled")
        other = await care_plan.post(appointments, json={"kind": "individual", "starts_at": individual_at.isoformat()})
        assert other.status_code == 201, other.text
        cancelled = await care_plan.delete(f"{appointments}/{booked.json()['session_id']}")
        assert cancelled.status_code == 200, cancelled.text
    [told] = await mail_to(stack, support, subject="Family session cancelled")
    local = family_at.astimezone(ZoneInfo("America/New_York")).strftime("%a %d %b %Y, %H:%M")
    assert local in invited.get_content() and local in told.get_content()
    # The individual appointment came between (one partition, in order): it told the support nothing.
    subjects = sorted(m["Subject"] for m in stack.mailbox.to(support))
    assert subjects == ["Family session cancelled", "Family sessions scheduled", "Sessions scheduled"]
    assert all(value not in told.get_content() for value in episode.pii.values())


async def test_a_consent_with_an_expiry_date_lets_its_support_be_told_until_then(stack: Stack) -> None:
    episode = await new_episode(stack)
    support = f"expiring.{episode.episode_id[:8]}@example.org"
    consent_id = await grant(stack, episode, "family", support, ["appointments"], expires_on="2030-12-31")
    async with stack.http("intake", "intake_staff") as intake:
        [consent] = (await intake.get(f"/v1/episodes/{episode.episode_id}/consents")).json()
    assert (consent["consent_id"], consent["expires_on"]) == (consent_id, "2030-12-31")
    await assess(stack, episode)
    await mail_to(stack, support, subject="Sessions scheduled")


async def test_a_consent_revoked_while_a_message_waits_cancels_it(stack: Stack, tmp_path: Path) -> None:
    mail_port = free_port()  # the SMTP server is down, so the first attempt leaves the message pending
    with notifications_replaced(stack, {"SMTP_PORT": str(mail_port)}, tmp_path / "notifications.log") as stand_in:
        episode = await new_episode(stack)
        support = f"waiting.{episode.episode_id[:8]}@example.org"
        consent_id = await grant(stack, episode, "family", support, ["appointments"])
        await assess(stack, episode)

        async def attempted() -> bool:
            async with stack.http("notifications", "clinician") as client:
                client.base_url = stand_in.url
                log = (await client.get("/v1/notifications", params={"episode_id": episode.episode_id})).json()
            return any(e["purpose"] == "support_schedule" and e["attempts"] >= 1 and e["last_error"] for e in log)

        await eventually(attempted, "a first, failed attempt to the support")
        await revoke(stack, episode, consent_id)
        with SmtpSink(mail_port) as server:
            log = await eventually(lambda: settled(stack, episode, stand_in.url), "every message settled", within=60)
            assert server.mailbox.to(support) == []
    support_entry = next(e for e in log if e["purpose"] == "support_schedule")
    assert (support_entry["status"], support_entry["last_error"]) == ("cancelled", "consent no longer in force")
    assert next(e for e in log if e["purpose"] == "welcome")["status"] == "sent"
