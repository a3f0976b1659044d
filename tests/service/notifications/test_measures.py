"""notifications in-process for due measures: iop.measure.due plans a message to the patient whose questionnaire
link intake makes when it is sent (never stored in the delivery log, never logged); opt-outs and the window's end
hold as for every message; a reliable deterioration (iop.measure.recorded) tells the care team, ids and codes only
on the webhook."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import time, timedelta
from typing import Any

import pytest

from services.common.utc import utc_now
from services.notifications.changes import Messaging
from services.notifications.dispatcher import Dispatcher, QuietHours
from services.notifications.domain.opt_outs import OptOut
from services.notifications.rendering import RenderedMessage
from stepwise_contract import InstrumentMeasure, MeasureClassification, MeasureDue, MeasureRecorded
from tests.service.conftest import Events
from tests.service.fake_intake import PATIENT_CONTACT, FakeIntake
from tests.service.memory_mongo import MemoryDatabase
from tests.service.notifications.helpers import FakeChannel, care_plan_event, intake_event, log_of, what


class Capturing(FakeChannel):
    """A channel that keeps what it was given to send (address and rendered text), as the recipient gets it."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[str] = []

    async def send(self, notification_id: str, *args: Any) -> None:
        await super().send(notification_id, *args)
        _to, message = args
        self.bodies.append(message.body if isinstance(message, RenderedMessage) else json.dumps(message))


@pytest.fixture
def sent(dispatcher: Dispatcher) -> dict[str, Capturing]:
    fakes = {"email": Capturing(), "sms": Capturing(), "webhook": Capturing()}
    dispatcher._senders = type(dispatcher._senders)(fakes["email"], fakes["sms"], fakes["webhook"])  # type: ignore[arg-type]
    return fakes


def due(episode_id: str, closes_in: timedelta = timedelta(days=3)) -> MeasureDue:
    now = utc_now()
    return MeasureDue(episode_id=episode_id, due_id=str(uuid.uuid4()), instruments=["phq9", "gad7"],
                      reason="schedule", window_opens_at=now - timedelta(hours=1),
                      window_closes_at=now + closes_in)  # fmt: skip


def recorded(episode_id: str, classification: MeasureClassification) -> MeasureRecorded:
    scored = InstrumentMeasure(instrument="phq9", score=17, band="moderately_severe", baseline_score=9,
                                previous_score=11, classification=classification, recovered=False,
                                response=False)  # fmt: skip
    return MeasureRecorded(episode_id=episode_id, measure_id="m-1", source="measure", recorded_at=utc_now(),
                           instruments=[scored])  # fmt: skip


async def everything_stored(database: MemoryDatabase) -> str:
    """Every document of every collection, as text: where a link must not be."""
    names = database._database.list_collection_names()
    return json.dumps([[doc async for doc in database[name].find({})] for name in names], default=str)


async def test_a_due_measure_sends_the_patient_a_link_made_at_send_time_and_kept_nowhere(
    events: Events, messaging: Messaging, dispatcher: Dispatcher, intake: FakeIntake, sent: dict[str, Capturing],
    database: MemoryDatabase, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    episode_id = intake.episode()
    await events.deliver(care_plan_event(due(episode_id)))
    planned = await log_of(messaging, episode_id)
    assert what(planned) == [("measure_due", "patient", "email"), ("measure_due", "patient", "sms")]
    assert intake.links == []  # nothing asked of intake before sending
    assert all(n.context["link_instruments"] == ["phq9", "gad7"] for n in planned)
    await dispatcher.work_once()
    assert [n.status for n in await log_of(messaging, episode_id)] == ["sent", "sent"]
    assert len(intake.links) == 2  # one single-use link per message
    assert sorted(link in body for link in intake.links for body in sent["email"].bodies + sent["sms"].bodies) == [
        False, False, True, True]  # fmt: skip
    [email] = sent["email"].bodies
    assert "works once and until Fri 04 Dec 15:38" in " ".join(email.split())  # intake's 72 hours, the clinic's time
    stored, logs = await everything_stored(database), caplog.text
    assert "measure_due" in stored and "link_instruments" in stored  # the delivery log is in what is read
    for link in intake.links:
        token = link.rsplit("/", 1)[1]
        assert token not in stored and token not in logs


async def test_an_opted_out_number_and_a_closed_window_ask_intake_for_no_link(
    events: Events, messaging: Messaging, dispatcher: Dispatcher, intake: FakeIntake, sent: dict[str, Capturing]
) -> None:
    episode_id = intake.episode()
    number = messaging.opt_outs.number_key(str(PATIENT_CONTACT["phone"]))
    await messaging.opt_outs.add(OptOut(opt_out_id=number, source="sms_reply", opted_out_at=utc_now()))
    await events.deliver(care_plan_event(due(episode_id)))
    closed = intake.episode()
    await events.deliver(care_plan_event(due(closed, closes_in=timedelta(seconds=-1))))
    await dispatcher.work_once()
    by_channel = {n.channel: n.status for n in await log_of(messaging, episode_id)}
    assert by_channel == {"email": "sent", "sms": "cancelled"}
    assert {n.status for n in await log_of(messaging, closed)} == {"cancelled"}
    assert len(intake.links) == 1 and sent["sms"].bodies == []


async def test_intake_refusing_the_link_fails_the_message_without_a_link(
    events: Events, messaging: Messaging, dispatcher: Dispatcher, intake: FakeIntake, sent: dict[str, Capturing]
) -> None:
    episode_id = intake.episode()
    data = due(episode_id).model_copy(update={"instruments": ["unknown"]})
    await events.deliver(care_plan_event(data))
    await dispatcher.work_once()
    logged = await log_of(messaging, episode_id)
    assert {(n.status, n.last_error) for n in logged} == {("failed", "intake made no questionnaire link (422)")}
    assert sent["email"].bodies == [] and sent["sms"].bodies == []


async def test_a_reliable_deterioration_tells_the_care_team_with_ids_and_codes_on_the_webhook(
    events: Events, messaging: Messaging, dispatcher: Dispatcher, intake: FakeIntake, sent: dict[str, Capturing]
) -> None:
    episode_id = intake.episode()
    await events.deliver(intake_event(recorded(episode_id, "reliable_deterioration")))
    planned = await log_of(messaging, episode_id)
    assert what(planned) == [("measure_deterioration", "care_team", "email"),
                             ("measure_deterioration", "care_team", "webhook")]  # fmt: skip
    webhook = next(n for n in planned if n.channel == "webhook")
    assert webhook.context == {"measure_id": "m-1", "classification": "reliable_deterioration",
                               "instruments": ["phq9"]}  # fmt: skip
    await dispatcher.work_once()
    assert "PHQ-9: 17 (moderately severe), baseline 9" in sent["email"].bodies[0]
    steady = intake.episode()
    await events.deliver(intake_event(recorded(steady, "no_reliable_change")))
    assert await log_of(messaging, steady) == []


async def test_in_quiet_hours_the_message_waits_and_no_link_is_made_until_it_goes(
    events: Events, messaging: Messaging, dispatcher: Dispatcher, intake: FakeIntake, sent: dict[str, Capturing]
) -> None:
    episode_id = intake.episode()
    await events.deliver(care_plan_event(due(episode_id)))
    awake = dispatcher._quiet
    dispatcher._quiet = QuietHours(start=time(0, 0), end=time(23, 59), default_zone="UTC")  # quiet all day
    await dispatcher.work_once()
    assert {n.status for n in await log_of(messaging, episode_id)} == {"pending"} and intake.links == []
    dispatcher._quiet = awake
