"""Outages and configuration mistakes in notifications: waited out, never set aside or lost."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from pymongo.errors import AutoReconnect, ServerSelectionTimeoutError

from services.common.auth import Role
from services.common.dependencies import Dependencies, DependencyDown
from services.common.utc import utc_now
from services.notifications.changes import Messaging
from services.notifications.channels import DeliveryError, EmailSender, IntakeContacts
from services.notifications.dispatcher import Dispatcher, Senders
from services.notifications.store import NOTIFICATIONS
from stepwise_contract import to_kafka
from tests.service.conftest import Events, as_role, queued, set_aside
from tests.service.fake_intake import FakeIntake
from tests.service.memory_mongo import MemoryDatabase
from tests.service.notifications.helpers import (
    CLINICIAN,
    SETTINGS,
    STAFF,
    FakeChannel,
    alert,
    assigned,
    calendar,
    care_plan_event,
    graduated,
    in_days,
    log_of,
    session_missed,
    started,
    what,
)
from tools.dev.servers import free_port
from tools.dev.smtp_sink import SmtpSink


async def test_intake_down_makes_an_event_wait_and_readiness_say_so(
    events: Events, messaging: Messaging, intake: FakeIntake, dependencies: Dependencies, database: MemoryDatabase,
    http: httpx.AsyncClient,
) -> None:  # fmt: skip
    episode_id = intake.episode()
    started = care_plan_event(assigned(episode_id, calendar(in_days(2), in_days(4))))
    intake.down = True
    for _ in range(10):  # as many redeliveries as an outage brings: none is ever set aside
        with pytest.raises(DependencyDown):
            await events.deliver(started)
    assert await set_aside(database) == [] and await log_of(messaging, episode_id) == []
    assert {name: problem.kind for name, problem in dependencies.problems().items()} == {"intake": "down"}
    ready = await http.get("/health/ready")
    assert ready.status_code == 503 and ready.json()["checks"] == {"mongodb": True, "kafka": True, "intake": False}
    assert ready.json()["problems"]["intake"].startswith("down: unreachable")
    intake.down = False
    await events.deliver(started)  # the redelivery after the outage
    assert what(await log_of(messaging, episode_id))
    assert dependencies.problems() == {} and (await http.get("/health/ready")).status_code == 200


async def test_an_unforeseen_error_in_a_handler_is_in_readiness_without_failing_it(
    events: Events, messaging: Messaging, intake: FakeIntake, http: httpx.AsyncClient
) -> None:
    """Not an outage: the event holds its partition, retried without end; readiness lists it from the first
    attempt (the rest of the service works, so it stays ready) until the event is applied."""
    episode_id = intake.episode()
    missed = care_plan_event(session_missed(episode_id))

    async def unforeseen(*_: Any) -> None:
        raise TypeError("an answer no one expected")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(messaging.store, "add_leasing", unforeseen)
        with pytest.raises(TypeError):
            await events.deliver(missed)
    ready = await http.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    [(held, problem)] = ready.json()["problems"].items()
    assert held == "iop.session.missed[0]"
    assert problem.startswith("retrying: offset 0 failed with TypeError (attempt 1, since ")
    await events.deliver(missed)  # the redelivery, once the cause is gone
    assert await log_of(messaging, episode_id)
    assert "problems" not in (await http.get("/health/ready")).json()


async def test_a_refused_intake_token_is_a_configuration_error_that_says_what_to_set(
    events: Events, messaging: Messaging, intake: FakeIntake, dependencies: Dependencies, database: MemoryDatabase
) -> None:
    episode_id = intake.episode()
    missed = session_missed(episode_id)
    intake.consent(episode_id, "family", "attendance")
    intake.headers.clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SETTINGS, "intake_token", SecretStr("a-token-intake-does-not-know"))
        contacts = IntakeContacts(SETTINGS, dependencies, transport=httpx.MockTransport(intake.handle))
    with pytest.raises(DependencyDown):
        await dataclasses.replace(messaging, contacts=contacts).contacts.audience(episode_id, frozenset({"attendance"}))
    [problem] = dependencies.problems().values()
    assert problem.kind == "misconfigured" and "INTAKE_TOKEN" in problem.detail
    await events.deliver(care_plan_event(missed))  # with the right token, the same event goes through
    assert await set_aside(database) == []


async def test_an_empty_token_is_not_sent(intake: FakeIntake, dependencies: Dependencies) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SETTINGS, "intake_token", SecretStr(""))
        contacts = IntakeContacts(SETTINGS, dependencies, transport=httpx.MockTransport(intake.handle))
    with pytest.raises(DependencyDown) as refused:
        await contacts.audience(intake.episode(), frozenset())
    assert "authorization" not in intake.headers[-1]
    assert "INTAKE_TOKEN is empty" in refused.value.detail


async def test_a_send_is_recorded_however_long_the_store_refuses_it(
    events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher, channels: dict[str, FakeChannel]
) -> None:
    episode_id = await alert(events, intake)
    refusals = [ServerSelectionTimeoutError("store down"), AutoReconnect("store down")]
    real_mark_sent = messaging.store.mark_sent

    async def flaky_mark_sent(*args: Any) -> None:
        if refusals:
            raise refusals.pop(0)
        await real_mark_sent(*args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(messaging.store, "mark_sent", flaky_mark_sent)
        await dispatcher.work_once()
    assert len(channels["email"].sent) == 1 and len(channels["webhook"].sent) == 1  # each sent once
    assert {n.status for n in await log_of(messaging, episode_id)} == {"sent"} and refusals == []


async def test_a_channel_outage_is_retried_for_the_time_budget_not_a_count(
    events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher, channels: dict[str, FakeChannel],
    dependencies: Dependencies,
) -> None:  # fmt: skip
    episode_id = await alert(events, intake)
    channels["email"].failures = [DeliveryError("SMTP unavailable: ConnectionRefusedError", permanent=False)] * 30
    for _ in range(30):  # thirty attempts in a row, far more than any count-based budget allowed
        await messaging.store.notifications.update_many({}, {"$set": {"next_attempt_at": utc_now()}})
        await dispatcher.work_once()
    [email] = [n for n in await log_of(messaging, episode_id) if n.channel == "email"]
    assert (email.status, email.attempts) == ("pending", 30)
    assert dependencies.problems()["smtp"].kind == "down"
    await messaging.store.notifications.update_many({}, {"$set": {"next_attempt_at": utc_now()}})
    await dispatcher.work_once()  # the relay is back
    assert len(channels["email"].sent) == 1 and "smtp" not in dependencies.problems()


async def test_a_recipient_greylisted_waits_alone_and_the_relay_stays_up(
    events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher, dependencies: Dependencies,
    http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A relay's temporary refusal of one recipient (SMTP 450) defers that message, with backoff; only a relay that
    cannot be reached marks the channel down (readiness 503, probing)."""
    with SmtpSink(free_port()) as relay:
        monkeypatch.setattr(SETTINGS, "smtp_host", "127.0.0.1")
        monkeypatch.setattr(SETTINGS, "smtp_port", relay.port)
        dispatcher._senders = Senders(EmailSender(SETTINGS), FakeChannel(), FakeChannel())  # type: ignore[arg-type]
        relay.mailbox.greylisted.add(SETTINGS.care_team_email or "")
        episode_id = await alert(events, intake)
        await dispatcher.work_once()
        [email] = [n for n in await log_of(messaging, episode_id) if n.channel == "email"]
        assert email.not_before is not None
        assert (email.status, email.attempts) == ("pending", 1) and email.not_before > utc_now()
        assert email.last_error is not None and "450" in email.last_error
        assert "smtp" not in dependencies.problems() and (await http.get("/health/ready")).status_code == 200
        relay.mailbox.greylisted.clear()  # the relay takes it at the next attempt
        await messaging.store.notifications.update_many({}, {"$set": {"next_attempt_at": utc_now()}})
        await dispatcher.work_once()
        assert len(relay.mailbox.to(SETTINGS.care_team_email or "")) == 1
        relay.pause()  # the relay itself goes away: that is the channel down
        await alert(events, intake)
        await dispatcher.work_once()
        assert dependencies.problems()["smtp"].kind == "down"
        assert (await http.get("/health/ready")).status_code == 503
        relay.resume()


async def test_a_message_fails_for_good_once_its_time_budget_is_spent(
    events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher, channels: dict[str, FakeChannel],
    database: MemoryDatabase,
) -> None:  # fmt: skip
    episode_id = await alert(events, intake)
    long_ago = utc_now() - timedelta(hours=SETTINGS.dispatch_retry_hours, minutes=1)
    await messaging.store.notifications.update_many({"channel": "email"}, {"$set": {"due_at": long_ago}})
    channels["email"].failures = [DeliveryError("SMTP 421", permanent=False)]
    await dispatcher.work_once()
    [email] = [n for n in await log_of(messaging, episode_id) if n.channel == "email"]
    assert email.status == "failed"
    [data] = [d for topic, d in await queued(database[NOTIFICATIONS]) if topic == "iop.notification.failed"]
    assert data["reason_code"] == "retries_exhausted"


async def test_when_a_channel_works_again_what_waits_on_it_goes_at_once(
    events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher, channels: dict[str, FakeChannel]
) -> None:
    first, second = await alert(events, intake), await alert(events, intake)
    channels["email"].failures = [DeliveryError("SMTP unavailable", permanent=False)] * 2
    await dispatcher.work_once()  # both emails fail and wait out their backoff
    waiting = [n for n in await log_of(messaging, first) + await log_of(messaging, second) if n.channel == "email"]
    assert all(n.status == "pending" and n.not_before is not None and n.not_before > utc_now() for n in waiting)
    third = await alert(events, intake)
    await dispatcher.work_once()  # the relay is back: the third goes, and releases the two
    await dispatcher.work_once()
    assert len(channels["email"].sent) == 3, (third, channels["email"].sent)


async def test_a_provider_refusing_our_credentials_makes_messages_wait_without_counting(
    events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher, channels: dict[str, FakeChannel],
    dependencies: Dependencies,
) -> None:  # fmt: skip
    episode_id = await alert(events, intake)
    refused = DependencyDown(
        "care_team_webhook", "refused our signature (401): check WEBHOOK_SECRET", misconfigured=True
    )
    channels["webhook"].failures = [refused] * 5
    for _ in range(5):
        await messaging.store.notifications.update_many({}, {"$set": {"next_attempt_at": utc_now()}})
        await dispatcher.work_once()
    [webhook] = [n for n in await log_of(messaging, episode_id) if n.channel == "webhook"]
    assert (webhook.status, webhook.attempts) == ("pending", 0)
    assert webhook.last_error is not None and "WEBHOOK_SECRET" in webhook.last_error
    assert dependencies.problems()["care_team_webhook"].kind == "misconfigured"


async def test_an_event_an_outage_once_set_aside_is_replayed_and_its_messages_planned(
    http: httpx.AsyncClient, events: Events, messaging: Messaging, intake: FakeIntake, shelf: Any
) -> None:
    """Before outages were waited out, a care level assigned while intake was down was set aside for good."""
    episode_id = intake.episode()
    record = to_kafka(care_plan_event(assigned(episode_id, calendar(in_days(2), in_days(4)))))
    await shelf.collection.insert_one({
        "_id": f"{record.topic}:0:41", "topic": record.topic, "partition": 0, "offset": 41,
        "key": record.key.decode(), "headers": {name: value.decode() for name, value in record.headers},
        "value": record.value.decode(), "reason": "handler failed 8 times: RuntimeError", "attempts": 8,
        "set_aside_at": utc_now(),
    })  # fmt: skip
    admin = as_role(Role.ADMIN)
    replayed = await http.post("/v1/set-aside-events/replay", params={"reason": "handler failed"}, headers=admin)
    assert replayed.status_code == 200 and [e["replays"][-1]["outcome"] for e in replayed.json()] == ["applied"]
    assert ("welcome", "patient", "email") in what(await log_of(messaging, episode_id))
    once = await http.post(f"/v1/set-aside-events/{record.topic}:0:41/replay", headers=admin)
    assert once.json()["replays"][-1]["outcome"] == "applied" and len(once.json()["replays"]) == 1
    await events.deliver_missing_data("iop.session.missed")
    [malformed] = [e for e in (await http.get("/v1/set-aside-events", headers=admin)).json() if e["offset"] == 0]
    again = await http.post(f"/v1/set-aside-events/{malformed['id']}/replay", headers=admin)
    assert again.json()["replays"][-1]["outcome"] == "set_aside_again"
    assert again.json()["replays"][-1]["detail"].startswith("malformed:")
    assert (await http.post("/v1/set-aside-events/nope/replay", headers=admin)).status_code == 404
    assert (await http.post("/v1/set-aside-events/replay", headers=CLINICIAN)).status_code == 403
    intake.down = True
    down = await http.post(f"/v1/set-aside-events/{malformed['id']}/replay", headers=admin)
    assert down.status_code == 200  # a malformed event needs nothing from intake to be found malformed again


async def test_while_a_channel_is_down_one_waiting_message_probes_it(
    events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher, channels: dict[str, FakeChannel]
) -> None:
    first, second = await alert(events, intake), await alert(events, intake)
    channels["email"].failures = [DeliveryError("SMTP unavailable", permanent=False)] * 2
    await dispatcher.work_once()  # the relay is down: both wait out a backoff
    await dispatcher.work_once()  # the next pass probes with one of them at once: the relay is back
    await dispatcher.work_once()
    assert len(channels["email"].sent) == 2, (first, second)


async def test_an_alumni_opt_out_stops_the_alumni_messages_when_they_are_due(
    http: httpx.AsyncClient, events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher,
    channels: dict[str, FakeChannel],
) -> None:  # fmt: skip
    episode_id = await started(events, intake)
    intake.consent(episode_id, "alumni_group", "alumni_program")
    opted_out = await http.post("/v1/opt-outs", json={"episode_id": episode_id, "recipient_kind": "alumni"},
                                headers=STAFF)  # fmt: skip
    assert opted_out.status_code == 201  # before graduation: there is no enrolment to end yet
    await events.deliver(care_plan_event(graduated(episode_id)))  # its messages carry the alumni consent
    _, routine = dispatcher.lanes
    await routine.work_once()
    [welcome] = [n for n in await log_of(messaging, episode_id) if n.purpose == "alumni_welcome"]
    assert (welcome.status, welcome.last_error) == ("cancelled", "the recipient opted out")
    assert welcome.notification_id not in channels["email"].sent
