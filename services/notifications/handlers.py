"""Events notifications consumes: each stores the notifications it causes, once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, get_type_hints

from faststream import Context
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaMessage

from services.common.consumer import read_event, subscriber_options
from stepwise_contract import (
    AttendanceRuleTriggered,
    CareLevelAssigned,
    CloudEvent,
    EventData,
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


SUBSCRIPTIONS: tuple[tuple[type[EventData], str], ...] = (
    (CareLevelAssigned, "A started care plan sends the patient a welcome."),
    (SessionMissed, "A missed session sends the patient an outreach message."),
    (SafetyAlertRaised, "A safety alert reaches the care team at once, day or night."),
    (StepUpRecommended, "The care team hears of a step-up recommendation."),
    (StepDownRecommended, "The care team hears of a step-down recommendation."),
    (AttendanceRuleTriggered, "The care team hears of a missed-session rule."),
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

    async def handle(data: EventData, message: KafkaMessage, store: StoreDep, dispatcher: DispatcherDep) -> None:
        await _store_notifications(read_event(message, data), store, dispatcher)

    handle.__annotations__ = {**get_type_hints(handle, include_extras=True), "data": model}
    handle.__name__ = handle.__qualname__ = f"on_{model.event_type.replace('.', '_')}"
    return handle
