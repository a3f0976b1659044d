"""Events notifications consumes: what happens on each is one function, listed in ``EVENT_HANDLERS``.

Every event stores the messages the policy plans for it, once (``changes.notify``). Some also change what
is still wanted: a new calendar replaces the reminders of the old one, an ended episode ends its
reminders, a graduation (with a consent naming the alumni group) enrols the graduate, and a new episode or
a withdrawn consent ends an alumni enrolment.
"""

from __future__ import annotations

from typing import Annotated

from faststream import Context
from faststream.kafka.annotations import KafkaMessage

from services.common.consumer import EventHandlers, Subscription, read_event
from stepwise_contract import (
    AttendanceRuleTriggered,
    CareLevelAssigned,
    CareLevelChanged,
    ConsentChanged,
    EpisodeDischarged,
    EpisodeGraduated,
    SafetyAlertRaised,
    ScheduleChanged,
    SessionMissed,
    StepDownRecommended,
    StepUpRecommended,
)

from . import changes
from .changes import Messaging

MessagingDep = Annotated[Messaging, Context("messaging")]


async def on_care_level_assigned(data: CareLevelAssigned, message: KafkaMessage, messaging: MessagingDep) -> None:
    event = read_event(message, data)
    reminders = await changes.adopt_calendar(messaging, event)
    if data.status == "active":
        await changes.end_enrolments_of_returning_patient(messaging, event.subject)
    await changes.notify(messaging, event, reminders)


async def on_care_level_changed(data: CareLevelChanged, message: KafkaMessage, messaging: MessagingDep) -> None:
    event = read_event(message, data)
    await changes.notify(messaging, event, await changes.adopt_calendar(messaging, event))


async def on_schedule_changed(data: ScheduleChanged, message: KafkaMessage, messaging: MessagingDep) -> None:
    event = read_event(message, data)
    await changes.notify(messaging, event, await changes.adopt_calendar(messaging, event))


async def on_session_missed(data: SessionMissed, message: KafkaMessage, messaging: MessagingDep) -> None:
    await changes.notify(messaging, read_event(message, data))


async def on_safety_alert_raised(data: SafetyAlertRaised, message: KafkaMessage, messaging: MessagingDep) -> None:
    await changes.notify(messaging, read_event(message, data))


async def on_step_up_recommended(data: StepUpRecommended, message: KafkaMessage, messaging: MessagingDep) -> None:
    await changes.notify(messaging, read_event(message, data))


async def on_step_down_recommended(data: StepDownRecommended, message: KafkaMessage, messaging: MessagingDep) -> None:
    await changes.notify(messaging, read_event(message, data))


async def on_attendance_rule_triggered(
    data: AttendanceRuleTriggered, message: KafkaMessage, messaging: MessagingDep
) -> None:
    await changes.notify(messaging, read_event(message, data))


async def on_episode_graduated(data: EpisodeGraduated, message: KafkaMessage, messaging: MessagingDep) -> None:
    event = read_event(message, data)
    await changes.end_episode(messaging, event.subject)
    await changes.notify(messaging, event, await changes.enrol_alumnus(messaging, event))


async def on_episode_discharged(data: EpisodeDischarged, message: KafkaMessage, messaging: MessagingDep) -> None:
    event = read_event(message, data)
    await changes.end_episode(messaging, event.subject)
    await changes.notify(messaging, event)


async def on_consent_changed(data: ConsentChanged, message: KafkaMessage, messaging: MessagingDep) -> None:
    event = read_event(message, data)
    if data.status == "revoked":
        await changes.withdraw_consent(messaging, data)
    await changes.notify(messaging, event)


EVENT_HANDLERS: EventHandlers = {
    CareLevelAssigned: Subscription(
        on_care_level_assigned, "A started care plan: the patient's welcome, supports' notice, session reminders."
    ),
    CareLevelChanged: Subscription(
        on_care_level_changed, "A changed level: the patient hears of the new schedule; reminders follow it."
    ),
    ScheduleChanged: Subscription(
        on_schedule_changed, "A custom calendar: the patient hears of it; reminders follow it."
    ),
    SessionMissed: Subscription(on_session_missed, "A missed session: outreach to the patient and consented supports."),
    SafetyAlertRaised: Subscription(
        on_safety_alert_raised, "A safety alert reaches the care team at once, day or night."
    ),
    StepUpRecommended: Subscription(on_step_up_recommended, "The care team hears of a step-up recommendation."),
    StepDownRecommended: Subscription(on_step_down_recommended, "The care team hears of a step-down recommendation."),
    AttendanceRuleTriggered: Subscription(
        on_attendance_rule_triggered, "The care team hears of a missed-session rule."
    ),
    EpisodeGraduated: Subscription(
        on_episode_graduated, "A graduation: congratulations, reminders end, alumni enrolment with consent."
    ),
    EpisodeDischarged: Subscription(on_episode_discharged, "A discharge: the care team reviews it; reminders end."),
    ConsentChanged: Subscription(
        on_consent_changed, "A withdrawn consent cancels what waits for that recipient and ends alumni enrolment."
    ),
}
