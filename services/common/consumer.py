"""Consuming events: one consumer per service and lane, episodes concurrently, each episode's events in order.

A service's handlers (``EVENT_HANDLERS``) are read by one batch subscriber per lane: the urgent lane (the
topics whose ``Subscription`` says ``urgent``, e.g. safety alerts in notifications) and the routine lane (the
rest), each its own consumer and consumer group, so an urgent event never waits behind a routine backlog.
A batch (what the broker has, up to ``KAFKA_MAX_BATCH`` records) is split by record key (the episode): the
episodes are applied concurrently, each episode's records one after another in the order they came.

While a batch runs, ``bulk.GATHERING`` holds how many of its episodes are still being applied, so that their
handlers' writes can go to the store together (``bulk.py``); each handler still awaits its own write's outcome.
Offsets are committed only after the whole batch is applied, i.e. after every effect is stored
(``AckPolicy.NACK_ON_ERROR``). Only an event that is malformed, or that our rules reject (``EventRejected``), is
set aside: stored in the service's ``set_aside_events`` collection with its reason, so one bad record never blocks
its partition; so is one whose effect would take its record past the store's document limit (``store_errors.py``),
which no retry can store. Any other failure (MongoDB, intake or another dependency down, or a bug) stops that
episode's later records, waits a capped backoff, and rewinds the batch's partitions: the batch comes again and
what was applied already is recognised and skipped (every handler ignores a redelivery), without limit, so an
outage is waited out, never turned into lost or set-aside work. Readiness names a dependency that is down (see
``dependencies.py``); the log names the event. A failure that is no outage (a bug, an answer no one expected)
holds its partition the same way: readiness lists the event from its first attempt, without failing
(``RetryingEvents``), and the log names its topic, partition and error class, never the error's message, which may
quote the event."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, NamedTuple

from aiokafka import ConsumerRecord
from faststream import ContextRepo
from faststream._internal.context import Context as ContextField  # what faststream.Context() makes (no public name)
from faststream.kafka import KafkaRouter
from faststream.kafka.message import KafkaMessage
from faststream.middlewares import AckPolicy
from opentelemetry.trace import SpanKind
from pydantic import ValidationError
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DocumentTooLarge, DuplicateKeyError, PyMongoError, WriteError

from stepwise_contract import CloudEvent, EventData, MalformedEvent, describe_validation_error, from_headers

from . import tracing
from .bulk import EPISODE_RECORDS, GATHERING, EpisodeRecords, Gathering
from .dependencies import DependencyDown
from .fetch_pace import IDLE_MIN_BYTES, FetchPace, batch_bytes
from .logs import about, reported
from .metrics import EVENTS_APPLIED, EVENTS_SET_ASIDE
from .mongo import Document
from .priority import URGENT_FIRST
from .settings import ServiceSettings
from .store_errors import RecordTooLarge, too_large
from .utc import utc_now, wall_clock

log = logging.getLogger(__name__)

HANDLER_CONTEXT = "handler_context"
"""The name under which a service puts, in its broker's context, what its handlers work with."""
URGENT_LANE_GROUP_SUFFIX = ".urgent"


class Subscription(NamedTuple):
    """What a service does on one event type: its handler, a line for the AsyncAPI document, and its lane."""

    handle: Callable[[CloudEvent[Any], Any], Awaitable[None]]
    """Called with the event and what the service's handlers work with (``HANDLER_CONTEXT``)."""
    description: str
    urgent: bool = False


EventHandlers = Mapping[type[EventData], Subscription]
"""A service's handlers: one function per event type it consumes."""


def lanes(handlers: EventHandlers) -> dict[bool, EventHandlers]:
    """The handlers of the urgent lane (True) and of the routine lane (False), leaving out an empty lane."""
    split = {urgent: {m: s for m, s in handlers.items() if s.urgent == urgent} for urgent in (True, False)}
    return {urgent: lane for urgent, lane in split.items() if lane}


def lane_group(service_group: str, urgent: bool) -> str:
    """The consumer group of a lane: the service's group (``stepwise.notifications``), ``….urgent`` for urgent."""
    return service_group + (URGENT_LANE_GROUP_SUFFIX if urgent else "")


FETCHER_LOOKS_EVERY_MS = 1_000
"""How often a lane's fetch routine looks again with nothing to wake it (aiokafka's ``consumer_timeout_ms``, 200 ms
by default: 5 wake-ups a second per idle lane). A fetch's answer, records taken, a rebalance and a partition's backoff
wake it anyway."""
URGENT_BATCH = 16
URGENT_WAIT_MS = 50
"""The urgent lane reads small batches and, while busy, fetches again soon: its events are few, each waited for."""


def subscriber_options(settings: ServiceSettings, group: str, urgent: bool = False) -> dict[str, Any]:
    """Options of every lane's subscriber.

    - a batch of what the client holds, handed over as soon as it holds any (``FetchPace.wait_for_records``);
    - a fetch the broker holds until a record arrives, ``KAFKA_FETCH_MAX_WAIT_MS`` at most: idle, a lane sends a
      fetch every two seconds, not twice a second (aiokafka's default); while the lane has records, its fetches
      are held for the batch wait (``KAFKA_BATCH_WAIT_MS``; the urgent lane's 50 ms) at most, a routine lane's until
      about a batch has gathered: ``fetch_pace.py``;
    - the fetch routine looks again once a second when nothing wakes it (``FETCHER_LOOKS_EVERY_MS``);
    - commit after the handlers returned (their effects stored), rewind on error; no auto-commit;
    - a new group starts from the beginning of its topics, so no event published before it is lost;
    - static group membership (unless the instance id is empty): a restarted instance takes its
      partitions back at once instead of waiting for the broker to expire the dead member.
    """
    instance = settings.kafka_group_instance_id
    return {
        "group_id": group,
        "group_instance_id": f"{instance}.{group}" if instance else None,
        "batch": True,
        "max_records": min(URGENT_BATCH, settings.kafka_max_batch) if urgent else settings.kafka_max_batch,
        "batch_timeout_ms": min(URGENT_WAIT_MS, settings.kafka_batch_wait_ms)
        if urgent
        else settings.kafka_batch_wait_ms,
        "fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms,
        "consumer_timeout_ms": FETCHER_LOOKS_EVERY_MS,
        "ack_policy": AckPolicy.NACK_ON_ERROR,
        "auto_offset_reset": "earliest",
        "decoder": _undecoded,
        "include_in_schema": False,  # the AsyncAPI document shows one operation per event: see ``documented``
    }


async def _undecoded(_: KafkaMessage) -> None:
    """Records are read one by one (``EventBatch``), so that one that is not JSON is set aside alone."""
    return None


def subscribe(
    settings: ServiceSettings, group: str, handlers: EventHandlers, retrying: RetryingEvents | None = None
) -> KafkaRouter:
    """A router with a batch subscriber per lane of ``handlers``; ``retrying`` lists the events they are held by."""
    router = KafkaRouter()
    for urgent, lane in lanes(handlers).items():
        topics = [model.event_type for model in lane]
        options = subscriber_options(settings, lane_group(group, urgent), urgent)
        pace = FetchPace(busy_ms=options["batch_timeout_ms"], idle_ms=settings.kafka_fetch_max_wait_ms,
                         busy_min_bytes=IDLE_MIN_BYTES if urgent else batch_bytes(options["max_records"]))  # fmt: skip
        subscriber = router.subscriber(*topics, **options)
        subscriber(_applying(EventBatch(lane, urgent, retrying), pace))
        pace.wait_for_records(subscriber, options["max_records"])
    return router


class InTheLoop(ContextField):
    """FastStream's ``Context`` looked up in the event loop: fast_depends runs a field's plain ``use`` in a worker
    thread (two hand-offs to a thread and back per batch, for two dictionary look-ups)."""

    async def use(self, /, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        found: dict[str, Any] = super().use(**kwargs)
        return found


BatchMessage = Annotated[KafkaMessage, InTheLoop("message")]
Resources = Annotated[Any, InTheLoop("context")]
"""The broker's ``ContextRepo`` (FastStream's own annotation of it carries the thread-bound field)."""


def _applying(batch: EventBatch, pace: FetchPace) -> Callable[..., Awaitable[None]]:
    async def apply_events(message: BatchMessage, context: Resources) -> None:
        pace.batch_arrived(message.consumer)
        await batch(message, context)

    return apply_events


class EventRejected(Exception):
    """A well-formed event or command that cannot be applied (e.g. an unknown session); set aside."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EventShelf:
    """Where events that cannot be applied are set aside, with their reason, for review and replay."""

    def __init__(self, collection: AsyncCollection[Document]) -> None:
        self.collection = collection

    async def set_aside(self, record: ConsumerRecord[bytes, bytes], reason: str, attempts: int) -> None:
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
        EVENTS_SET_ASIDE.labels(record.topic, reason.split(":", 1)[0]).inc()
        # Never log the value: a malformed record may hold what an event must not.
        log.warning(
            "set aside %s[%d]@%d (ce_id=%s): %s",
            record.topic,
            record.partition,
            record.offset,
            headers.get("ce_id", "?"),
            reason,
        )


SET_ASIDE = (MalformedEvent, EventRejected, ValidationError)
"""What is wrong with the event itself: set aside. (pydantic raises the ValidationError of a value that is not
JSON, or whose data fails its schema.)"""


def set_aside_reason(error: Exception) -> str:
    if isinstance(error, EventRejected):
        return f"rejected: {error.reason}"
    if isinstance(error, MalformedEvent):
        return f"malformed: {error.reason}"
    if too_large(error):
        reason = str(error) if isinstance(error, RecordTooLarge) else "the record is at its size limit"
        return f"rejected: {reason}"
    if isinstance(error, ValidationError):
        return f"malformed: {describe_validation_error(error)}"
    return f"malformed: value is not JSON: {error}"


Position = tuple[str, int, int]
"""topic, partition, offset"""

OUTAGES = (DependencyDown, PyMongoError)
"""Failures that are a dependency down (readiness names it, and fails): waited out."""


@dataclass(frozen=True)
class Held:
    """A partition held by the event at ``offset``, which failed with ``error`` (its class) ``attempts`` times."""

    offset: int
    error: str
    attempts: int
    since: datetime


class RetryingEvents:
    """The events a handler failed on for a reason that is no outage (a bug, an answer no one expected): each holds
    its partition (the later events wait behind it) and is retried without end. Readiness lists them under
    ``problems`` from the first attempt, without failing (the rest of the service works), until applied."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, int], Held] = {}

    def failed(self, position: Position, error: Exception) -> None:
        topic, partition, offset = position
        known = self._held.get((topic, partition))
        if known is not None and known.offset == offset:
            self._held[topic, partition] = Held(offset, type(error).__name__, known.attempts + 1, known.since)
        else:
            self._held[topic, partition] = Held(offset, type(error).__name__, 1, wall_clock())

    def applied(self, records: Iterable[ConsumerRecord[bytes, bytes]]) -> None:
        """``records`` were applied (or set aside): a partition held by one of them is free again."""
        for record in records:
            held = self._held.get((record.topic, record.partition))
            if held is not None and held.offset <= record.offset:
                del self._held[record.topic, record.partition]

    def problems(self) -> dict[str, str]:
        """``topic[partition]`` -> what holds it, as readiness shows it."""
        return {
            f"{topic}[{partition}]": f"retrying: offset {held.offset} failed with {held.error} (attempt "
            f"{held.attempts}, since {held.since.isoformat(timespec='seconds')}); the partition's later events wait"
            for (topic, partition), held in sorted(self._held.items())
        }


class EventBatch:
    """The subscriber of one lane: applies a batch of records, episodes concurrently, each episode's in order."""

    def __init__(self, handlers: EventHandlers, urgent: bool = False, retrying: RetryingEvents | None = None) -> None:
        self._handlers = {model.event_type: (model, subscription.handle) for model, subscription in handlers.items()}
        self._urgent = urgent
        self._attempts: dict[Position, int] = {}
        self.retrying = retrying if retrying is not None else RetryingEvents()

    async def __call__(self, message: KafkaMessage, context: ContextRepo) -> None:
        records: Sequence[ConsumerRecord[bytes, bytes]] = message.raw_message
        by_episode: dict[bytes, list[ConsumerRecord[bytes, bytes]]] = {}
        for record in records:
            by_episode.setdefault(record.key or b"", []).append(record)
        shelf: EventShelf = context.get("event_shelf")
        resources = context.get(HANDLER_CONTEXT)
        gathering = Gathering(len(by_episode))
        token = GATHERING.set(gathering)  # the lanes' writes may go together (``bulk.py``)
        try:
            with URGENT_FIRST.urgent() if self._urgent else contextlib.nullcontext():
                outcomes = await asyncio.gather(
                    *(self._in_order(episode, shelf, resources) for episode in by_episode.values())
                )
        finally:
            GATHERING.reset(token)
        failures = [failure for failure in outcomes if failure is not None]
        for failed_at, unforeseen in failures:
            if not isinstance(unforeseen, OUTAGES):
                self.retrying.failed(failed_at, unforeseen)
        if failures:
            position, error = failures[0]
            attempt = self._attempts[position] = self._attempts.get(position, 0) + 1
            _report(error, position, attempt, len(failures))
            await asyncio.sleep(retry_delay(attempt))
            raise reported(error)  # NACK_ON_ERROR rewinds each partition of the batch to its first record
        for record in records:
            self._attempts.pop((record.topic, record.partition, record.offset), None)
        self.retrying.applied(records)

    async def _in_order(
        self, records: list[ConsumerRecord[bytes, bytes]], shelf: EventShelf, resources: Any
    ) -> tuple[Position, Exception] | None:
        """Apply one episode's records in order; at the first that fails, stop (its later ones must wait)."""
        try:
            return await self._each(records, shelf, resources)
        finally:
            gathering = GATHERING.get()
            if gathering is not None:
                gathering.finished()

    async def _each(
        self, records: list[ConsumerRecord[bytes, bytes]], shelf: EventShelf, resources: Any
    ) -> tuple[Position, Exception] | None:
        """The episode's records, each handler's effect stored before the lane ends: what handlers collected for
        the end (``EpisodeRecords``) is stored then; when that names something wrong with an event (``SET_ASIDE``) or
        is too large for the store, the records are applied again one at a time, so that only the event at fault is
        set aside. An event counts as applied (``EVENTS_APPLIED``) once its effect is stored: after the episode's
        collected write, or as each goes one at a time."""
        episode = EpisodeRecords()
        token = EPISODE_RECORDS.set(episode)
        applied: list[str] = []
        try:
            failed = await self._one_by_one(records, shelf, resources, applied)
            if failed is not None:
                return failed
            await episode.finish()
        except SET_ASIDE:
            pass
        except (RecordTooLarge, DocumentTooLarge, WriteError) as error:
            if not too_large(error):
                return _position(records[0]), error
        except Exception as error:
            return _position(records[0]), error
        else:
            _count_applied(applied)
            return None
        finally:
            EPISODE_RECORDS.reset(token)
        token = EPISODE_RECORDS.set(None)
        applied = []
        try:
            return await self._one_by_one(records, shelf, resources, applied)
        finally:
            _count_applied(applied)
            EPISODE_RECORDS.reset(token)

    async def _one_by_one(
        self, records: list[ConsumerRecord[bytes, bytes]], shelf: EventShelf, resources: Any, applied: list[str]
    ) -> tuple[Position, Exception] | None:
        """Each record in turn, up to the first that fails; ``applied`` gets the topic of each one applied (not set
        aside)."""
        for record in records:
            position = _position(record)
            if not self._urgent:
                await URGENT_FIRST.routine_turn()
            try:
                with handling(record):
                    if await self._apply_or_set_aside(record, shelf, resources, self._attempts.get(position, 0) + 1):
                        applied.append(record.topic)
            except Exception as error:
                return position, error
        return None

    async def _apply_or_set_aside(
        self, record: ConsumerRecord[bytes, bytes], shelf: EventShelf, resources: Any, attempt: int
    ) -> bool:
        """True: applied; False: set aside."""
        try:
            await self.apply(record, resources)
        except SET_ASIDE as error:
            await shelf.set_aside(record, set_aside_reason(error), attempt)
        except (RecordTooLarge, DocumentTooLarge, WriteError) as error:
            if not too_large(error):
                raise
            # Permanent for that record: retrying would hold the partition for ever.
            await shelf.set_aside(record, set_aside_reason(error), attempt)
        else:
            return True
        return False

    async def apply(self, record: ConsumerRecord[bytes, bytes], resources: Any) -> None:
        """Read one record as its event and hand it to its handler; raises what ``SET_ASIDE`` lists when the
        record is not a well-formed event of its topic."""
        model, handle = self._handlers[record.topic]
        data = model.model_validate_json(record.value or b"")
        await handle(from_headers(record.headers, data), resources)


def _position(record: ConsumerRecord[bytes, bytes]) -> Position:
    return record.topic, record.partition, record.offset


def _count_applied(topics: list[str]) -> None:
    for topic in topics:
        EVENTS_APPLIED.labels(topic).inc()


@contextlib.contextmanager
def handling(record: ConsumerRecord[bytes, bytes]) -> Iterator[None]:
    """While a record is applied: a span continuing the trace its event carries (``ce_traceparent``), and log
    lines naming its episode and event."""
    headers = {name: value.decode(errors="replace") for name, value in record.headers}
    attributes = {
        "messaging.system": "kafka",
        "messaging.destination.name": record.topic,
        "messaging.operation.type": "process",
        "messaging.destination.partition.id": str(record.partition),
    }
    with (
        tracing.continued(f"{record.topic} process", headers.get("ce_traceparent"), SpanKind.CONSUMER, attributes),
        about(episode_id=(record.key or b"").decode(errors="replace"), event_id=headers.get("ce_id")),
    ):
        yield


def retry_delay(attempt: int) -> float:
    """Seconds before the ``attempt``-th retry of a batch: 0.2, 0.4, 0.8 … capped at 10."""
    return float(min(0.2 * 2 ** (attempt - 1), 10.0))


def _report(error: Exception, position: Position, attempt: int, episodes: int) -> None:
    """One line per failing batch at its first attempt and at every tenth: an outage must not flood the log. An
    unforeseen error is named by its class, with where it was raised at the first attempt, never by its message
    (it may quote the event)."""
    if attempt != 1 and attempt % 10:
        return
    others = f" (and {episodes - 1} more episodes of the batch)" if episodes > 1 else ""
    if isinstance(error, OUTAGES):
        what = str(error) if isinstance(error, DependencyDown) else f"MongoDB: {type(error).__name__}"
        log.warning("%s[%d]@%d waits%s: %s (attempt %d); retrying until it is back", *position, others, what, attempt)
    else:
        where = "; raised at:\n" + "".join(traceback.format_tb(error.__traceback__)) if attempt == 1 else ""
        log.error(
            "%s[%d]@%d failed with %s (attempt %d)%s; its partition waits, retrying (readiness lists it)%s",
            *position, type(error).__name__, attempt, others, where,
        )  # fmt: skip
