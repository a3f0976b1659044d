"""Events notifications consumes: each stores the notifications it causes, once.

Besides planning messages by the policy, some events change what is still wanted: a new calendar
replaces the reminders of the old one, an ended episode ends its reminders, a graduation (with a
consent naming the alumni group) enrols the graduate, and a new episode or a withdrawn consent ends
an alumni enrolment.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, get_type_hints

from faststream import Context
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaMessage

from services.common.consumer import read_event, subscriber_options
from stepwise_contract import (
    AttendanceRuleTriggered,
    CareLevelAssigned,
    CareLevelChanged,
    CloudEvent,
    ConsentChanged,
    EpisodeDischarged,
    EpisodeGraduated,
    EventData,
    SafetyAlertRaised,
    ScheduleChanged,
    SessionMissed,
    StepDownRecommended,
    StepUpRecommended,
)

from .channels import IntakeContacts
from .dispatcher import Dispatcher
from .domain.messages import (
    PlannedNotification,
    Support,
    plan_alumni,
    plan_notifications,
    plan_session_reminders,
    schedule_series,
    support_scopes,
)
from .domain.policy import NotificationPolicy
from .settings import CONSUMER_GROUP, NotificationsSettings
from .store import AlumniEnrolments, EpisodeSchedules, LeaveReason, NotificationStore


@dataclass(frozen=True)
class Messaging:
    """What the handlers work with (one per service instance, in the broker's context)."""

    policy: NotificationPolicy
    store: NotificationStore
    schedules: EpisodeSchedules
    alumni: AlumniEnrolments
    contacts: IntakeContacts
    dispatcher: Dispatcher
    clinic_zone: str

    async def end_alumni_enrolment(self, episode_id: str, reason: LeaveReason) -> bool:
        """End a graduate's enrolment (publishing iop.alumni.left) and cancel what it still had to send."""
        left = await self.alumni.leave(episode_id, reason)
        await self.store.cancel_pending({"episode_id": episode_id, "series_kind": "alumni"}, f"alumni: {reason}")
        return left


MessagingDep = Annotated[Messaging, Context("messaging")]


async def apply_event(event: CloudEvent[Any], messaging: Messaging) -> None:
    """Store every notification ``event`` causes (redelivery adds none), after updating what is still wanted."""
    data = event.data
    planned = await _by_policy(event, messaging)
    if isinstance(data, CareLevelAssigned | CareLevelChanged | ScheduleChanged):
        planned += await _new_calendar(event, messaging)
    if isinstance(data, CareLevelAssigned) and data.status == "active":
        await _end_alumni_enrolments_of_returning_patient(event.subject, messaging)
    if isinstance(data, EpisodeGraduated | EpisodeDischarged):
        await messaging.schedules.end(event.subject)
        query = {"episode_id": event.subject, "series_kind": "sessions"}
        await messaging.store.cancel_pending(query, "the episode ended")
    if isinstance(data, EpisodeGraduated):
        planned += await _enrol_alumnus(event, messaging)
    if isinstance(data, ConsentChanged) and data.status == "revoked":
        await messaging.store.cancel_pending({"consent_id": data.consent_id}, "consent no longer in force")
        if data.recipient_kind == "alumni_group":
            await messaging.end_alumni_enrolment(event.subject, "consent_withdrawn")
    cause = {"event_id": event.id, "event_source": event.source, "event_type": event.type}
    if await messaging.store.add(planned, cause):
        messaging.dispatcher.wake()


async def _by_policy(event: CloudEvent[Any], messaging: Messaging) -> list[PlannedNotification]:
    supports = {
        scope: [
            Support(consent_id, kind) for consent_id, kind in await messaging.contacts.supports(event.subject, scope)
        ]
        for scope in support_scopes(event, messaging.policy)
    }
    return plan_notifications(event, messaging.policy, messaging.dispatcher.reachable, supports)


async def _new_calendar(
    event: CloudEvent[CareLevelAssigned] | CloudEvent[CareLevelChanged] | CloudEvent[ScheduleChanged],
    messaging: Messaging,
) -> list[PlannedNotification]:
    """Adopt the event's calendar unless a later one is current; its reminders replace the old ones."""
    data = event.data
    as_of = data.assigned_at if isinstance(data, CareLevelAssigned) else data.changed_at
    active = isinstance(data, ScheduleChanged) or data.status == "active"
    series = schedule_series(as_of)
    if not await messaging.schedules.adopt(event.subject, series, as_of):
        return []  # an older calendar arriving late (the topics are read in parallel)
    query = {"episode_id": event.subject, "series_kind": "sessions", "series": {"$ne": series}}
    await messaging.store.cancel_pending(query, "the session calendar changed")
    reminders = messaging.policy.session_reminders
    if not active or data.schedule is None or reminders is None:
        return []
    return plan_session_reminders(event, data.schedule, as_of, reminders, messaging.dispatcher.reachable)


async def _enrol_alumnus(event: CloudEvent[EpisodeGraduated], messaging: Messaging) -> list[PlannedNotification]:
    program = messaging.policy.alumni
    if program is None:
        return []
    consents = await messaging.contacts.supports(event.subject, program.consent_scope)
    consent_id = next((consent for consent, kind in consents if kind == "alumni_group"), None)
    if consent_id is None:
        return []  # no consent naming the alumni group: a graduate is not told of it, nor anyone of them
    patient_id = await messaging.contacts.patient_of(event.subject) or ""
    graduated_at = event.data.graduated_at
    if not await messaging.alumni.enrol(event.subject, patient_id, consent_id, graduated_at, program.check_in_days):
        enrolment = await messaging.alumni.get(event.subject)  # a redelivery: plan again only if still enrolled
        if enrolment is None or enrolment["status"] != "enrolled":
            return []
    reachable = messaging.dispatcher.reachable
    return plan_alumni(event.subject, consent_id, graduated_at, program, reachable, messaging.clinic_zone)


async def _end_alumni_enrolments_of_returning_patient(episode_id: str, messaging: Messaging) -> None:
    patient_id = await messaging.contacts.patient_of(episode_id)
    if not patient_id:
        return
    for enrolment in await messaging.alumni.enrolled(patient_id=patient_id):
        if enrolment["_id"] != episode_id:
            await messaging.end_alumni_enrolment(enrolment["_id"], "new_episode")


SUBSCRIPTIONS: tuple[tuple[type[EventData], str], ...] = (
    (CareLevelAssigned, "A started care plan: the patient's welcome, supports' notice, session reminders."),
    (CareLevelChanged, "A changed level: the patient hears of the new schedule; reminders follow it."),
    (ScheduleChanged, "A custom calendar: the patient hears of it; reminders follow it."),
    (SessionMissed, "A missed session: outreach to the patient and consented supports."),
    (SafetyAlertRaised, "A safety alert reaches the care team at once, day or night."),
    (StepUpRecommended, "The care team hears of a step-up recommendation."),
    (StepDownRecommended, "The care team hears of a step-down recommendation."),
    (AttendanceRuleTriggered, "The care team hears of a missed-session rule."),
    (EpisodeGraduated, "A graduation: congratulations, reminders end, alumni enrolment with consent."),
    (EpisodeDischarged, "A discharge: the care team reviews it; reminders end."),
    (ConsentChanged, "A withdrawn consent cancels what waits for that recipient and ends alumni enrolment."),
)


def subscriptions(settings: NotificationsSettings) -> KafkaRouter:
    router = KafkaRouter()
    for model, description in SUBSCRIPTIONS:
        router.subscriber(
            model.event_type,
            title=f"{model.event_type}:notifications",
            description=description,
            **subscriber_options(settings, CONSUMER_GROUP, model.event_type),
        )(_handler_for(model))
    return router


def _handler_for(model: type[EventData]) -> Callable[..., Awaitable[None]]:
    """A subscriber for ``model``: the same work for every event; FastStream reads the data type from the
    annotations (validation, AsyncAPI schema), so each gets its own."""

    async def handle(data: EventData, message: KafkaMessage, messaging: MessagingDep) -> None:
        await apply_event(read_event(message, data), messaging)

    handle.__annotations__ = {**get_type_hints(handle, include_extras=True), "data": model}
    handle.__name__ = handle.__qualname__ = f"on_{model.event_type.replace('.', '_')}"
    return handle
