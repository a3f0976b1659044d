"""Consuming events: typed reading, setting aside what cannot be applied, retrying what can.

Subscribers use ``AckPolicy.NACK_ON_ERROR`` (see ``subscriber_options``): the offset is committed
only after the handler returned, i.e. after its effect is stored. Only an event that is malformed, or
that our rules reject (``EventRejected``), is set aside: stored in the service's ``set_aside_events``
collection with its reason and committed, so one bad record never blocks its partition. Any other
failure (MongoDB, intake or another dependency down, or a bug) rewinds to the event and tries it again
after a capped backoff, without limit: an outage is waited out, never turned into lost or set-aside work.
Readiness names a dependency that is down (see ``dependencies.py``); the log names the event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, NamedTuple, TypeVar

from faststream import BaseMiddleware
from faststream.kafka import KafkaRouter
from faststream.kafka.message import KafkaMessage
from faststream.middlewares import AckPolicy
from pydantic import ValidationError
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

from stepwise_contract import CloudEvent, EventData, MalformedEvent, describe_validation_error, from_headers

from .dependencies import DependencyDown
from .mongo import Document
from .settings import ServiceSettings
from .utc import utc_now

log = logging.getLogger(__name__)

DataT = TypeVar("DataT", bound=EventData)


GroupLayout = Literal["per_service", "per_topic"]


def consumer_group(service_group: str, topic: str, layout: GroupLayout) -> str:
    """The consumer group of a service's subscriber to ``topic``: the service's one group, or one per topic."""
    return service_group if layout == "per_service" else f"{service_group}.{topic}"


def subscriber_options(settings: ServiceSettings, group: str, topic: str) -> dict[str, Any]:
    """Options every state-changing subscriber uses.

    - commit after the handler returned (its effect stored), rewind on error; no auto-commit;
    - a new group starts from the beginning of the topic, so no event published before it is lost;
    - static group membership (unless the instance id is empty): a restarted instance takes its
      partitions back at once instead of waiting for the broker to expire the dead member; each
      subscriber is its own member (``instance.topic``);
    - the group: see ``KAFKA_CONSUMER_GROUPS`` (settings) and README, "Consumer groups".
    """
    instance = settings.kafka_group_instance_id
    return {
        "group_id": consumer_group(group, topic, settings.kafka_consumer_groups),
        "group_instance_id": f"{instance}.{topic}" if instance else None,
        "ack_policy": AckPolicy.NACK_ON_ERROR,
        "auto_offset_reset": "earliest",
    }


class Subscription(NamedTuple):
    """What a service does on one event type: its handler, and a line for the AsyncAPI document."""

    handle: Callable[..., Awaitable[None]]
    description: str


EventHandlers = Mapping[type[EventData], Subscription]
"""A service's handlers: one function per event type it consumes."""


def subscribe(settings: ServiceSettings, group: str, service: str, handlers: EventHandlers) -> KafkaRouter:
    """A router with a subscriber per event type in ``handlers``, each with the options every one uses."""
    router = KafkaRouter()
    for model, (handle, description) in handlers.items():
        topic = model.event_type
        router.subscriber(
            topic, title=f"{topic}:{service}", description=description, **subscriber_options(settings, group, topic)
        )(handle)
    return router


class EventRejected(Exception):
    """A well-formed event or command that cannot be applied (e.g. an unknown session); set aside."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_event(message: KafkaMessage, data: DataT) -> CloudEvent[DataT]:
    """The CloudEvent around data FastStream has decoded; raises MalformedEvent naming what is wrong."""
    record = message.raw_message
    assert not isinstance(record, tuple), "batch subscribers are not used"
    return from_headers(record.headers, data)


class EventShelf:
    """Where events that cannot be applied are set aside, with their reason, for review and replay."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def set_aside(self, message: KafkaMessage, reason: str, attempts: int) -> None:
        record = message.raw_message
        assert not isinstance(record, tuple)
        headers = {name: value.decode(errors="replace") for name, value in record.headers}
        document = {
            "_id": f"{record.topic}:{record.partition}:{record.offset}",
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "key": (record.key or b"").decode(errors="replace"),
            "headers": headers,
            "value": (record.value or b"").decode(errors="replace"),
            "reason": reason,
            "attempts": attempts,
            "set_aside_at": utc_now(),
        }
        with contextlib.suppress(DuplicateKeyError):  # set aside before, then redelivered
            await self.collection.insert_one(document)
        # Never log the value: a malformed record may hold what an event must not.
        log.warning(
            "set aside %s[%d]@%d (ce_id=%s): %s",
            record.topic,
            record.partition,
            record.offset,
            headers.get("ce_id", "?"),
            reason,
        )


SET_ASIDE = (MalformedEvent, EventRejected, json.JSONDecodeError, UnicodeDecodeError, ValidationError)
"""What is wrong with the event itself: set aside. (FastStream's decoder raises the JSON and Unicode errors,
and pydantic the ValidationError of data that fails its schema.)"""


def set_aside_reason(error: Exception) -> str:
    if isinstance(error, EventRejected):
        return f"rejected: {error.reason}"
    if isinstance(error, MalformedEvent):
        return f"malformed: {error.reason}"
    if isinstance(error, ValidationError):
        return f"malformed: {describe_validation_error(error)}"
    return f"malformed: value is not JSON: {error}"


def retry_delay(attempt: int) -> float:
    """Seconds before the ``attempt``-th retry of an event: 0.2, 0.4, 0.8 … capped at 10."""
    return float(min(0.2 * 2 ** (attempt - 1), 10.0))


class SetAsideMiddleware:
    """FastStream broker middleware factory: set aside what is wrong with the event, retry everything else."""

    def __init__(self, shelf: Callable[[], EventShelf], *, backoff: Callable[[int], float] | None = None) -> None:
        self._shelf = shelf
        self._backoff = backoff
        self._attempts: dict[tuple[str, int, int], int] = {}

    def __call__(self, msg: Any, /, *, context: Any) -> BaseMiddleware:
        return _SetAsideScope(msg, context=context, policy=self)

    async def handle(self, call_next: Callable[[Any], Awaitable[Any]], message: KafkaMessage) -> Any:
        record = message.raw_message
        assert not isinstance(record, tuple)
        position = (record.topic, record.partition, record.offset)
        try:
            try:
                result = await call_next(message)
            except SET_ASIDE as error:
                await self._shelf().set_aside(message, set_aside_reason(error), self._attempts.get(position, 0) + 1)
                result = None
        except Exception as error:
            attempt = self._attempts[position] = self._attempts.get(position, 0) + 1
            _report(error, position, attempt)
            await asyncio.sleep((self._backoff or retry_delay)(attempt))
            raise  # NACK_ON_ERROR rewinds to this event
        self._attempts.pop(position, None)
        return result


def _report(error: Exception, position: tuple[str, int, int], attempt: int) -> None:
    """One line per failing event at its first attempt and at every tenth: an outage must not flood the log."""
    if attempt != 1 and attempt % 10:
        return
    if isinstance(error, DependencyDown | PyMongoError):
        what = str(error) if isinstance(error, DependencyDown) else f"MongoDB: {type(error).__name__}"
        log.warning("%s[%d]@%d waits: %s (attempt %d); retrying until it is back", *position, what, attempt)
    else:
        log.error("%s[%d]@%d failed (attempt %d); retrying", *position, attempt, exc_info=error)


class _SetAsideScope(BaseMiddleware):
    def __init__(self, msg: Any, /, *, context: Any, policy: SetAsideMiddleware) -> None:
        super().__init__(msg, context=context)
        self._policy = policy

    async def consume_scope(self, call_next: Callable[[Any], Awaitable[Any]], msg: Any) -> Any:
        return await self._policy.handle(call_next, msg)
