"""Events notifications consumes: each stores the notifications it causes, once."""

from __future__ import annotations

from typing import Annotated, Any

from faststream import Context
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaMessage

from services.common.consumer import read_event, subscriber_options
from stepwise_contract import (
    AttendanceRuleTriggered,
    CareLevelAssigned,
    CloudEvent,
    SafetyAlertRaised,
    SessionMissed,
    StepDownRecommended,
    StepUpRecommended,
)

from .dispatcher import Dispatcher
from .domain.messages import plan_notifications, support_scope
from .settings import CONSUMER_GROUP, NotificationsSettings
from .store import NotificationStore

StoreDep = Annotated[NotificationStore, Context("notification_store")]
DispatcherDep = Annotated[Dispatcher, Context("dispatcher")]


async def _store_notifications(event: CloudEvent[Any], store: NotificationStore, dispatcher: Dispatcher) -> None:
    cause = {"event_id": event.id, "event_source": event.source, "event_type": event.type}
    scope = support_scope(event)
    supports = await dispatcher.supports(event.subject, scope) if scope else []
    planned = plan_notifications(event, dispatcher.care_team_channels, supports)
    added = [await store.add(notification, cause) for notification in planned]
    if any(added):
        dispatcher.wake()


def subscriptions(settings: NotificationsSettings) -> KafkaRouter:
    router = KafkaRouter()
    for model, handler, description in (
        (CareLevelAssigned, on_care_level_assigned, "A started care plan sends the patient a welcome."),
        (SessionMissed, on_session_missed, "A missed session sends the patient an outreach message."),
        (SafetyAlertRaised, on_safety_alert_raised, "A safety alert reaches the care team at once, day or night."),
        (StepUpRecommended, on_step_up_recommended, "The care team hears of a step-up recommendation."),
        (StepDownRecommended, on_step_down_recommended, "The care team hears of a step-down recommendation."),
        (AttendanceRuleTriggered, on_attendance_rule_triggered, "The care team hears of a missed-session rule."),
    ):
        router.subscriber(
            model.event_type,
            title=f"{model.event_type}:notifications",
            description=description,
            **subscriber_options(settings, CONSUMER_GROUP, model.event_type),
        )(handler)
    return router


async def on_care_level_assigned(
    data: CareLevelAssigned, message: KafkaMessage, store: StoreDep, dispatcher: DispatcherDep
) -> None:
    await _store_notifications(read_event(message, data), store, dispatcher)


async def on_session_missed(
    data: SessionMissed, message: KafkaMessage, store: StoreDep, dispatcher: DispatcherDep
) -> None:
    await _store_notifications(read_event(message, data), store, dispatcher)


async def on_safety_alert_raised(
    data: SafetyAlertRaised, message: KafkaMessage, store: StoreDep, dispatcher: DispatcherDep
) -> None:
    await _store_notifications(read_event(message, data), store, dispatcher)


async def on_step_up_recommended(
    data: StepUpRecommended, message: KafkaMessage, store: StoreDep, dispatcher: DispatcherDep
) -> None:
    await _store_notifications(read_event(message, data), store, dispatcher)


async def on_step_down_recommended(
    data: StepDownRecommended, message: KafkaMessage, store: StoreDep, dispatcher: DispatcherDep
) -> None:
    await _store_notifications(read_event(message, data), store, dispatcher)


async def on_attendance_rule_triggered(
    data: AttendanceRuleTriggered, message: KafkaMessage, store: StoreDep, dispatcher: DispatcherDep
) -> None:
    await _store_notifications(read_event(message, data), store, dispatcher)
