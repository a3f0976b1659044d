"""Events notifications consumes: each stores the notifications it causes, once."""

from __future__ import annotations

from typing import Annotated, Any

from faststream import Context
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaMessage

from services.common.consumer import SUBSCRIBER_OPTIONS, read_event
from stepwise_contract import CareLevelAssigned, CloudEvent, SessionMissed

from .dispatcher import Dispatcher
from .domain.messages import plan_notifications
from .settings import CONSUMER_GROUP
from .store import NotificationStore

router = KafkaRouter()

StoreDep = Annotated[NotificationStore, Context("notification_store")]
DispatcherDep = Annotated[Dispatcher, Context("dispatcher")]


async def _store_notifications(event: CloudEvent[Any], store: NotificationStore, dispatcher: Dispatcher) -> None:
    cause = {"event_id": event.id, "event_source": event.source, "event_type": event.type}
    added = [await store.add(planned, cause) for planned in plan_notifications(event)]
    if any(added):
        dispatcher.wake()


@router.subscriber(
    CareLevelAssigned.event_type,
    group_id=CONSUMER_GROUP,
    title=f"{CareLevelAssigned.event_type}:notifications",
    description="A started care plan sends the patient a welcome with the first sessions.",
    **SUBSCRIBER_OPTIONS,
)
async def on_care_level_assigned(
    data: CareLevelAssigned, message: KafkaMessage, store: StoreDep, dispatcher: DispatcherDep
) -> None:
    await _store_notifications(read_event(message, data), store, dispatcher)


@router.subscriber(
    SessionMissed.event_type,
    group_id=CONSUMER_GROUP,
    title=f"{SessionMissed.event_type}:notifications",
    description="A missed session sends the patient an outreach message.",
    **SUBSCRIBER_OPTIONS,
)
async def on_session_missed(
    data: SessionMissed, message: KafkaMessage, store: StoreDep, dispatcher: DispatcherDep
) -> None:
    await _store_notifications(read_event(message, data), store, dispatcher)
