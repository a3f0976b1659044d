"""What the welcome of a new episode asks of notifications' store on a real server (issue 31): the calendar's insert,
the message's insert (leased to this instance) and the record of its send; the look-ups of a returning patient's
alumni enrolments and of opt-outs only where they can find something."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.common.dependencies import Dependencies
from services.common.outbox import no_relay
from services.common.utc import set_clock_offset
from services.notifications import changes, handlers
from services.notifications.app import assemble
from services.notifications.changes import Messaging
from services.notifications.channels import IntakeContacts
from services.notifications.dispatcher import Dispatcher, Senders
from services.notifications.domain.delivery import Notification
from services.notifications.store import ALUMNI, NOTIFICATIONS, OPT_OUTS, SCHEDULES
from stepwise_contract import new_event
from tests.service.conftest import TIER_CLOCK
from tests.service.fake_intake import FakeIntake
from tests.service.notifications.helpers import POLICY, SETTINGS, TEMPLATES, FakeChannel, assigned, calendar, in_days
from tests.store.conftest import CommandLog, noted_client
from tools.dev.devstack import Backends

HERE = (SCHEDULES, NOTIFICATIONS, ALUMNI, OPT_OUTS)


@dataclasses.dataclass
class SendingHere:
    """This instance's dispatcher as the handlers see it: new messages due now are stored leased, and noted."""

    handed: list[Notification] = dataclasses.field(default_factory=list)

    def lease_for_new(self) -> timedelta | None:
        return timedelta(seconds=30)

    def hand_over(self, notifications: Sequence[Notification]) -> None:
        self.handed.extend(notifications)


@dataclasses.dataclass
class Welcoming:
    messaging: Messaging
    dispatcher: Dispatcher
    intake: FakeIntake
    sending: SendingHere
    commands: CommandLog
    email: FakeChannel

    async def welcome(self, episode_id: str) -> list[tuple[str, str]]:
        """The care plan of ``episode_id`` starts: its welcome is planned and sent at once; the commands it took."""
        self.commands.seen.clear()
        event = new_event(assigned(episode_id, calendar(in_days(2))), source="/stepwise/care-plan")
        await handlers.on_care_level_assigned(event, self.messaging)
        for notification in self.sending.handed:
            await self.dispatcher._deliver(notification)
        self.sending.handed.clear()
        return [(name, collection) for name, collection, _ in self.commands.seen if collection in HERE]


@pytest.fixture
async def welcoming(running_backends: Backends) -> AsyncIterator[Welcoming]:
    set_clock_offset((TIER_CLOCK - datetime.now(UTC)).total_seconds())  # a weekday afternoon: no quiet hours
    async with noted_client(running_backends.mongodb_url) as (client, commands):
        database = client[f"stepwise_welcome_{uuid.uuid4().hex[:12]}"]
        intake, dependencies = FakeIntake(), Dependencies()
        contacts = IntakeContacts(SETTINGS, dependencies, transport=httpx.MockTransport(intake.handle))
        messaging, dispatcher = await assemble(SETTINGS, POLICY, TEMPLATES, database, no_relay, dependencies,
                                               contacts=contacts)  # fmt: skip
        email = FakeChannel()
        dispatcher._senders = Senders(email, FakeChannel(), FakeChannel())  # type: ignore[arg-type]
        sending = SendingHere()
        try:
            yield Welcoming(dataclasses.replace(messaging, sending_now=sending), dispatcher, intake, sending, commands,
                            email)  # fmt: skip
        finally:
            set_clock_offset(0)
            await contacts.close()
            await client.drop_database(database.name)


async def test_a_new_patients_welcome_costs_two_inserts_and_the_record_of_its_send(welcoming: Welcoming) -> None:
    episode_id = welcoming.intake.episode()
    commands = await welcoming.welcome(episode_id)
    assert len(welcoming.email.sent) == 1
    recorded = [name for name, collection in commands if collection == NOTIFICATIONS][1:]
    assert commands == [("insert", SCHEDULES), ("insert", NOTIFICATIONS), *[(r, NOTIFICATIONS) for r in recorded]]
    assert recorded in (["update"], ["findAndModify"])  # the record of the send (the claim of its events, with a relay)


async def test_a_returning_patients_alumni_enrolments_are_looked_up(welcoming: Welcoming) -> None:
    patient_id = str(uuid.uuid4())
    first, again = welcoming.intake.episode(patient_id), welcoming.intake.episode(patient_id)
    assert ("find", ALUMNI) not in await welcoming.welcome(first)
    assert ("find", ALUMNI) in await welcoming.welcome(again)


async def test_an_opt_out_recorded_before_the_first_calendar_stops_the_welcome(welcoming: Welcoming) -> None:
    episode_id = welcoming.intake.episode()
    await changes.opt_out(welcoming.messaging, episode_id, "patient", None)
    commands = await welcoming.welcome(episode_id)
    assert welcoming.email.sent == [] and ("find", OPT_OUTS) in commands
    [welcome] = await welcoming.messaging.store.find(episode_id=episode_id, purpose="welcome")
    assert (welcome.status, welcome.last_error) == ("cancelled", "the recipient opted out")


async def test_the_opt_outs_a_previous_version_recorded_are_looked_up_after_the_upgrade(welcoming: Welcoming) -> None:
    """An opt-out stored with no calendar record of its episode (as before issue 31): the start-up makes that
    record, so the episode's first calendar does not stand for "nobody opted out"."""
    episode_id = welcoming.intake.episode()
    key = f"recipient:{episode_id}:patient:-"
    await welcoming.messaging.opt_outs.opt_outs.insert_one({"_id": key, "source": "api", "opted_out_at": in_days(0),
                                                            "episode_id": episode_id, "recipient_kind": "patient",
                                                            "consent_id": None})  # fmt: skip
    store = welcoming.messaging.schedules
    await store.before_opt_out(*await welcoming.messaging.opt_outs.episodes_opted_out_of())  # as ``assemble`` does
    await welcoming.welcome(episode_id)
    assert welcoming.email.sent == []
