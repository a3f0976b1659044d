"""notifications' lanes: urgent messages are claimed and sent apart from routine ones."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from services.common.bulk import GATHERING, Gathering
from services.common.utc import utc_now, wall_clock
from services.notifications.changes import Messaging
from services.notifications.channels import Audience
from services.notifications.dispatcher import UNCONFIGURED_SWEEP, Dispatcher
from tests.service.conftest import Events
from tests.service.fake_intake import FakeIntake
from tests.service.memory_mongo import MemoryDatabase
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
    assert intake.asked == ["/v1/audiences"]  # the patient and the supports, together
    assert {n.recipient_kind for n in await log_of(messaging, episode_id)} >= {"patient", "family"}
    await asyncio.gather(*(messaging.contacts.audience(episode_id, frozenset({"attendance"})) for _ in range(3)))
    assert len(intake.asked) == 2  # concurrent identical questions share one request


async def test_the_episodes_of_one_consumer_batch_are_asked_of_intake_in_one_request(
    messaging: Messaging, intake: FakeIntake
) -> None:
    episodes = [intake.episode() for _ in range(3)]
    intake.consent(episodes[1], "family", "appointments")
    gathering = Gathering(len(episodes))

    async def lane(episode_id: str) -> Audience:
        try:
            return await messaging.contacts.audience(episode_id, frozenset({"appointments"}), True)
        finally:
            gathering.finished()

    token = GATHERING.set(gathering)
    try:
        audiences = await asyncio.gather(*(lane(episode_id) for episode_id in episodes))
    finally:
        GATHERING.reset(token)
    assert intake.asked == ["/v1/audiences"]
    assert [a.patient_id for a in audiences] == [intake.patients[episode_id] for episode_id in episodes]
    assert [len(a.supports("appointments")) for a in audiences] == [0, 1, 0]
    assert all(a.patient_channels == frozenset({"email", "sms"}) for a in audiences)


async def test_an_intake_of_an_earlier_release_is_asked_one_episode_at_a_time(
    events: Events, messaging: Messaging, intake: FakeIntake, channels: dict[str, FakeChannel]
) -> None:
    intake.answers_audiences = False
    episode_id = intake.episode()
    await events.deliver(care_plan_event(assigned(episode_id, calendar(in_days(2), in_days(4)))))
    assert intake.asked == ["/v1/audiences", f"/v1/episodes/{episode_id}/audience"]
    assert {n.recipient_kind for n in await log_of(messaging, episode_id) if n.purpose == "welcome"} == {"patient"}


class Dispatching:
    """The dispatcher running as in the service (its lanes' passes counted: each waits for a wake-up or its poll)."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.passes = [0, 0]
        for n, lane in enumerate(dispatcher.lanes):
            counted = lane.work_once

            async def work_once(n: int = n, counted: Any = counted) -> int:
                done = int(await counted())
                self.passes[n] += 1
                return done

            lane.work_once = work_once  # type: ignore[method-assign]

    async def __aenter__(self) -> Dispatching:
        self.task = asyncio.create_task(self.dispatcher.run())
        await until(lambda: min(self.passes) >= 1)  # each lane's first pass is done: it waits now
        return self

    async def __aexit__(self, *_: object) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def until(condition: Any, seconds: float = 5.0) -> None:
    began = asyncio.get_running_loop().time()
    while not condition():
        assert asyncio.get_running_loop().time() - began < seconds, "timed out"
        await asyncio.sleep(0.01)


async def until_logged(messaging: Messaging, episode_id: str, statuses: set[str], seconds: float = 5.0) -> None:
    """Wait until the episode's delivery log holds exactly ``statuses``."""
    began = asyncio.get_running_loop().time()
    while {n.status for n in await log_of(messaging, episode_id)} != statuses:
        assert asyncio.get_running_loop().time() - began < seconds, "timed out"
        await asyncio.sleep(0.01)


async def test_a_welcome_due_as_it_is_stored_goes_out_at_once_leased_by_the_write_that_stores_it(
    events: Events,
    messaging: Messaging,
    intake: FakeIntake,
    dispatcher: Dispatcher,
    channels: dict[str, FakeChannel],
    database: MemoryDatabase,
) -> None:
    episode_id = intake.episode()
    async with Dispatching(dispatcher) as running:
        database.calls.clear()
        await events.deliver(care_plan_event(assigned(episode_id, calendar(in_days(2), in_days(4)))))
        await until(lambda: len(channels["email"].sent) == 1)
        [welcome] = [n for n in await log_of(messaging, episode_id) if n.purpose == "welcome"]
        await until(lambda: ("update", "notifications") in database.calls)  # its send recorded
        assert running.passes == [1, 1]  # no pass was needed: nothing woke a lane
    assert welcome.notification_id in channels["email"].sent
    assert ("findAndModify", "notifications") not in database.calls  # never claimed: stored leased
    [sent] = [n for n in await log_of(messaging, episode_id) if n.purpose == "welcome"]
    assert (sent.status, sent.attempts) == ("sent", 1)


async def test_a_safety_alert_goes_to_the_care_team_at_once_without_a_claim(
    events: Events,
    messaging: Messaging,
    intake: FakeIntake,
    dispatcher: Dispatcher,
    channels: dict[str, FakeChannel],
    database: MemoryDatabase,
) -> None:
    async with Dispatching(dispatcher):
        database.calls.clear()
        episode_id = await alert(events, intake)
        await until(lambda: len(channels["email"].sent) == 1 and len(channels["webhook"].sent) == 1)
        await until_logged(messaging, episode_id, {"sent"})
    assert ("findAndModify", "notifications") not in database.calls


async def test_without_a_running_dispatcher_a_new_message_is_stored_unleased_for_a_pass(
    events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher, wakes: list[str]
) -> None:
    assert dispatcher.lease_for_new() is None
    episode_id = intake.episode()
    await events.deliver(care_plan_event(assigned(episode_id, calendar(in_days(2), in_days(4)))))
    assert {(n.status, n.attempts) for n in await log_of(messaging, episode_id)} == {("pending", 0)}
    assert "dispatcher" in wakes


async def test_the_welcome_sent_as_it_is_planned_asks_intake_once(
    events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher, channels: dict[str, FakeChannel]
) -> None:
    """The audience planning the welcome brings the patient's contact: its send asks intake nothing more."""
    episode_id = intake.episode()
    async with Dispatching(dispatcher):
        await events.deliver(care_plan_event(assigned(episode_id, calendar(in_days(2), in_days(4)))))
        await until(lambda: len(channels["email"].sent) == 1)
        assert intake.asked == ["/v1/audiences"]
        later = intake.episode()  # a message sent later asks for the contact then, as ever
        await messaging.contacts.patient_contact(later)
        assert intake.asked[-1] == f"/v1/episodes/{later}/contact"
