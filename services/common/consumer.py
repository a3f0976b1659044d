"""Consuming events: typed reading, setting aside what cannot be applied, retrying what can.

Subscribers use ``AckPolicy.NACK_ON_ERROR`` (see ``SUBSCRIBER_OPTIONS``): the offset is committed
only after the handler returned, i.e. after its effect is stored. A handler error rewinds to the
event and it is tried again after a backoff. An event that is malformed, or still fails after
``max_attempts``, is stored in the service's ``set_aside_events`` collection with its reason and
committed, so one bad record never blocks its partition.
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
from pymongo.errors import DuplicateKeyError

from stepwise_contract import CloudEvent, EventData, MalformedEvent, describe_validation_error, from_headers

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


class SetAsideMiddleware:
    """FastStream broker middleware factory: set aside malformed events, retry failing ones."""

    def __init__(
        self,
        shelf: Callable[[], EventShelf],
        *,
        max_attempts: int = 8,
        backoff: Callable[[int], float] = lambda attempt: min(0.2 * 2 ** (attempt - 1), 10.0),
    ) -> None:
        self._shelf = shelf
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._attempts: dict[tuple[str, int, int], int] = {}

    def __call__(self, msg: Any, /, *, context: Any) -> BaseMiddleware:
        return _SetAsideScope(msg, context=context, policy=self)

    async def handle(self, call_next: Callable[[Any], Awaitable[Any]], message: KafkaMessage) -> Any:
        record = message.raw_message
        assert not isinstance(record, tuple)
        position = (record.topic, record.partition, record.offset)
        try:
            result = await call_next(message)
        except MalformedEvent as error:
            await self._shelf().set_aside(message, f"malformed: {error.reason}", attempts=1)
            return None
        except EventRejected as error:
            await self._shelf().set_aside(message, f"rejected: {error.reason}", attempts=1)
            return None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:  # raised by FastStream's decoder
            await self._shelf().set_aside(message, f"malformed: value is not JSON: {error}", attempts=1)
            return None
        except ValidationError as error:
            await self._shelf().set_aside(message, f"malformed: {describe_validation_error(error)}", attempts=1)
            return None
        except Exception as error:
            attempt = self._attempts.get(position, 0) + 1
            if attempt >= self._max_attempts:
                self._attempts.pop(position, None)
                reason = f"handler failed {attempt} times: {type(error).__name__}"
                await self._shelf().set_aside(message, reason, attempts=attempt)
                return None
            self._attempts[position] = attempt
            log.warning("handling %s[%d]@%d failed (attempt %d), will retry", *position, attempt, exc_info=True)
            await asyncio.sleep(self._backoff(attempt))
            raise  # NACK_ON_ERROR rewinds to this event
        self._attempts.pop(position, None)
        return result


class _SetAsideScope(BaseMiddleware):
    def __init__(self, msg: Any, /, *, context: Any, policy: SetAsideMiddleware) -> None:
        super().__init__(msg, context=context)
        self._policy = policy

    async def consume_scope(self, call_next: Callable[[Any], Awaitable[Any]], msg: Any) -> Any:
        return await self._policy.handle(call_next, msg)
