"""notifications' lanes: urgent messages are claimed and sent apart from routine ones."""

from __future__ import annotations

import asyncio

from services.common.utc import utc_now, wall_clock
from services.notifications.changes import Messaging
from services.notifications.dispatcher import UNCONFIGURED_SWEEP, Dispatcher
from tests.service.conftest import Events
from tests.service.fake_intake import FakeIntake
from tests.service.notifications.helpers import FakeChannel, alert, assigned, calendar, care_plan_event, in_days, log_of


async def test_the_urgent_lane_sends_an_alert_while_a_routine_backlog_waits(
    events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher, channels: dict[str, FakeChannel]
) -> None:
    backlog = [intake.episode() for _ in range(5)]
    for episode_id in backlog:
        await events.deliver(care_plan_event(assigned(episode_id, calendar(in_days(2), in_days(4)))))
    episode_id = await alert(events, intake)
    urgent, routine = dispatcher.lanes
    assert (urgent.urgent, routine.urgent) == (True, False)
    assert await urgent.work_once() == 2  # the alert's email and webhook
    [sent] = channels["email"].sent
    assert sent in {n.notification_id for n in await log_of(messaging, episode_id)} and channels["webhook"].sent
    waiting = [n for episode in backlog for n in await log_of(messaging, episode)]
    assert all(n.status == "pending" for n in waiting)
    due = [n for n in waiting if n.not_before is not None and n.not_before <= utc_now()]
    assert len(due) >= 5 and await routine.work_once() == len(due)  # the welcomes and all due, several at once


async def test_channels_not_configured_are_looked_at_only_now_and_then(
    events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher, channels: dict[str, FakeChannel]
) -> None:
    episode_id = await alert(events, intake)  # the policy plans email and webhook for the care team
    urgent, _ = dispatcher.lanes
    urgent._configured, urgent._swept = ("email",), wall_clock()  # as if the webhook were not configured
    await urgent.work_once()  # a pass on the configured channels only
    assert {n.channel: n.status for n in await log_of(messaging, episode_id)} == {"email": "sent", "webhook": "pending"}
    urgent._swept = wall_clock() - UNCONFIGURED_SWEEP
    await urgent.work_once()  # now and then every channel: what waits on one removed from the settings ends
    assert {n.channel: n.status for n in await log_of(messaging, episode_id)} == {"email": "sent", "webhook": "sent"}


async def test_planning_an_event_asks_intake_once(events: Events, messaging: Messaging, intake: FakeIntake) -> None:
    episode_id = intake.episode()
    intake.consent(episode_id, "family", "appointments")
    await events.deliver(care_plan_event(assigned(episode_id, calendar(in_days(2), in_days(4)))))
    assert intake.asked == [f"/v1/episodes/{episode_id}/audience"]  # the patient and the supports, together
    assert {n.recipient_kind for n in await log_of(messaging, episode_id)} >= {"patient", "family"}
    await asyncio.gather(*(messaging.contacts.audience(episode_id, frozenset({"attendance"})) for _ in range(3)))
    assert len(intake.asked) == 2  # concurrent identical questions share one request
