"""Kafka wiring shared by the services: the broker, its publishers and the topics."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from typing import Any, NamedTuple

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker
from faststream.kafka.publisher.usecase import DefaultPublisher

from stepwise_contract import EventData

from .consumer import EventHandlers, EventShelf, SetAsideMiddleware, subscribe
from .mongo import Document
from .settings import ServiceSettings

log = logging.getLogger(__name__)


def new_broker(settings: ServiceSettings, *, client_id: str) -> KafkaBroker:
    """A broker whose producer is idempotent with acks=all, and whose consumers set aside bad events.

    The shelf is looked up at consume time in the broker context (``event_shelf``), because the
    MongoDB connection is made in the app's lifespan.
    """

    def shelf() -> EventShelf:
        return broker.context.get("event_shelf")  # type: ignore[no-any-return]

    broker = KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        graceful_timeout=10.0,
        middlewares=[SetAsideMiddleware(shelf)],
    )
    return broker


class ServiceBroker(NamedTuple):
    """A service's broker with its subscribers, its declared publishers (by topic) and its handlers."""

    broker: KafkaBroker
    publishers: dict[str, DefaultPublisher]
    handlers: EventHandlers


def service_broker(
    settings: ServiceSettings,
    service: str,
    publishes: Iterable[type[EventData]],
    handlers: EventHandlers,
    group: str,
) -> ServiceBroker:
    """The broker of a service: a subscriber per event it handles (unless consumers are off), in the consumer
    group ``group``, and a publisher per event it publishes."""
    broker = new_broker(settings, client_id=f"stepwise-{service.replace('_', '-')}")
    if handlers and settings.kafka_consumers_enabled:
        broker.include_router(subscribe(settings, group, service, handlers))
    return ServiceBroker(broker, declare_publishers(broker, publishes), handlers)


def declare_publishers(broker: KafkaBroker, events: Iterable[type[EventData]]) -> dict[str, DefaultPublisher]:
    """One documented publisher per event type, keyed by topic (= event type)."""
    return {
        model.event_type: broker.publisher(
            model.event_type,
            title=f"{model.event_type}:publish",
            description=(model.__doc__ or "").strip() or None,
            schema=model,
            include_in_schema=True,
        )
        for model in events
    }


def relay_publish(publishers: dict[str, DefaultPublisher]) -> Any:
    """The outbox relay's publish function: send a stored record through its declared publisher."""

    async def publish(record: Document) -> None:
        await publishers[record["topic"]].publish(
            record["value"].encode(),
            key=record["key"].encode(),
            headers={name: value for name, value in record["headers"]},
        )

    return publish


async def ensure_topics(settings: ServiceSettings, topics: Iterable[str]) -> None:
    """Create the topics a service reads or writes, if missing. Idempotent; safe with many instances."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(topic, settings.kafka_topic_partitions, settings.kafka_topic_replication)
            for topic in sorted(set(topics) - existing)
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # another instance was quicker
                await admin.create_topics(wanted)
            log.info("created topics %s", [topic.name for topic in wanted])
    finally:
        await admin.close()
