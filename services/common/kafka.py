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

from .consumer import EventHandlers, subscribe
from .mongo import Document
from .settings import ServiceSettings

log = logging.getLogger(__name__)


def new_broker(settings: ServiceSettings, *, client_id: str) -> KafkaBroker:
    """A broker whose producer is idempotent with acks=all. Its consumers find the set-aside shelf and what
    the handlers work with in its context (``event_shelf``, ``HANDLER_CONTEXT``), set in the app's lifespan."""
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        graceful_timeout=10.0,
    )


class ServiceBroker(NamedTuple):
    """A service's broker with its subscribers, its declared publishers (by topic) and its handlers."""

    broker: KafkaBroker
    publishers: dict[str, DefaultPublisher]
    handlers: EventHandlers
    publishes: tuple[type[EventData], ...] = ()
    service: str = ""

    def documented(self, bootstrap_servers: str) -> KafkaBroker:
        """A broker that is never started, for the AsyncAPI document: the same publishers, and one subscriber per
        event this service consumes (its schema and its line), where the running broker has one per lane."""
        broker = KafkaBroker(bootstrap_servers)
        declare_publishers(broker, self.publishes)
        for model, subscription in self.handlers.items():
            broker.subscriber(model.event_type, title=f"{model.event_type}:{self.service}",
                              description=subscription.description)(_documentation_only(model))  # fmt: skip
        return broker


def _documentation_only(model: type[EventData]) -> Any:
    async def handle(data: EventData) -> None:  # pragma: no cover - never subscribed
        raise NotImplementedError

    handle.__annotations__ = {"data": model, "return": None}
    return handle


def service_broker(
    settings: ServiceSettings,
    service: str,
    publishes: Iterable[type[EventData]],
    handlers: EventHandlers,
    group: str,
) -> ServiceBroker:
    """The broker of a service: a batch subscriber per lane of the events it handles (unless consumers are off),
    in the consumer group ``group`` (``….urgent`` for the urgent lane), and a publisher per event it publishes."""
    broker = new_broker(settings, client_id=f"stepwise-{service.replace('_', '-')}")
    if handlers and settings.kafka_consumers_enabled:
        broker.include_router(subscribe(settings, group, handlers))
    publishes = tuple(publishes)
    return ServiceBroker(broker, declare_publishers(broker, publishes), handlers, publishes, service)


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
