"""Transactional outbox without multi-document transactions.

Every aggregate document (an episode, a care plan, a notification) carries its own outbox:
a state change and the events it causes are written by one atomic single-document update.
``OutboxRelay`` then publishes pending events to Kafka in order and removes them. A process
that dies between the write and the publish leaves the events in the document; the next relay
pass (after a restart, or by another instance once the lease expires) publishes them. Kafka may
see an event twice in that window; consumers drop repeats by CloudEvents source + id.

Document fields this module owns: ``version`` (optimistic concurrency), ``outbox`` (wire records
as JSON strings: opaque to queries, pulled by exact value),
``outbox_pending`` (count kept in the same updates, so finding pending work needs no array
query), ``outbox_lease_until`` and ``applied_events`` (source#id of events already applied).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from stepwise_contract import CloudEvent, to_kafka

from .indexes import Index, create_index
from .mongo import Document
from .store_errors import writing
from .tracing import current_traceparent
from .utc import wall_clock
from .worker import PollingWorker

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DUPLICATE_KEY = 11000
APPLIED_EVENTS_KEPT = 500
"""How many consumed-event keys an aggregate remembers; far more than any redelivery window."""


def stored_record(event: CloudEvent[Any]) -> str:
    """The wire form of an event, kept in the outbox until relayed, with the trace context of the change that
    writes it (``ce_traceparent``: the relay publishes it, a consumer continues it)."""
    traceparent = event.traceparent or current_traceparent()
    record = to_kafka(event.model_copy(update={"traceparent": traceparent}) if traceparent else event)
    return json.dumps(
        {
            "id": event.id,
            "topic": record.topic,
            "key": record.key.decode(),
            "value": record.value.decode(),
            "headers": [[name, value.decode()] for name, value in record.headers],
        }
    )


def new_aggregate(fields: Document, events: Sequence[CloudEvent[Any]] = (), applied: str | None = None) -> Document:
    """A fresh aggregate document with its events already in the outbox."""
    return {
        **fields,
        "version": 1,
        "outbox": [stored_record(event) for event in events],
        "outbox_pending": len(events),
        "outbox_lease_until": EPOCH,
        "applied_events": [applied] if applied else [],
    }


async def insert_aggregate(
    collection: AsyncCollection[Document],
    fields: Document,
    events: Sequence[CloudEvent[Any]] = (),
    applied: str | None = None,
) -> bool:
    """Insert a new aggregate; False if one with the same _id exists already."""
    try:
        with writing(collection.name):
            await collection.insert_one(new_aggregate(fields, events, applied))
    except DuplicateKeyError:
        return False
    return True


async def insert_new_aggregates(collection: AsyncCollection[Document], documents: Sequence[Document]) -> int:
    """Insert aggregates (without events) in one round trip; those whose _id exists are left alone.

    Returns how many were new. Unordered, so one that exists does not stop the others.
    """
    if not documents:
        return 0
    try:
        result = await collection.insert_many([new_aggregate(document) for document in documents], ordered=False)
    except BulkWriteError as error:
        others = [e for e in error.details.get("writeErrors", []) if e.get("code") != DUPLICATE_KEY]
        if others:
            raise
        return int(error.details.get("nInserted", 0))
    return len(result.inserted_ids)


async def update_aggregate(
    collection: AsyncCollection[Document],
    aggregate_id: str,
    version: int,
    changes: Document,
    events: Sequence[CloudEvent[Any]] = (),
    applied: str | None = None,
) -> bool:
    """Apply ``changes`` and queue ``events`` in one atomic write, if nobody wrote since ``version``.

    False means a concurrent write won: reload and decide again. Raises ``RecordTooLarge`` when the write would
    take the record past the store's document limit.
    """
    update = with_events({"$set": changes, "$inc": {"version": 1}}, events)
    if applied:
        update.setdefault("$push", {})["applied_events"] = {"$each": [applied], "$slice": -APPLIED_EVENTS_KEPT}
    with writing(collection.name):
        result = await collection.update_one({"_id": aggregate_id, "version": version}, update)
    return result.matched_count == 1


def with_events(update: Document, events: Sequence[CloudEvent[Any]]) -> Document:
    """``update`` extended to queue ``events`` in the document's outbox, in the same atomic write."""
    if not events:
        return update
    update.setdefault("$inc", {})["outbox_pending"] = len(events)
    update.setdefault("$push", {})["outbox"] = {"$each": [stored_record(event) for event in events]}
    return update


def outbox_index(collection: str) -> Index:
    return Index(collection, (("outbox_pending", 1), ("outbox_lease_until", 1)),
                 "the relay's pass: documents with events to publish, their lease run out (and /metrics' "
                 "backlog)")  # fmt: skip


async def ensure_outbox_index(collection: AsyncCollection[Document]) -> None:
    await create_index(collection, outbox_index(collection.name))


Publish = Callable[[Document], Awaitable[None]]


RelayWake = Callable[[str, str], None]
"""What a store calls after a write that queued events: ``(collection name, aggregate id)``."""


def no_relay(_collection: str, _aggregate_id: str) -> None:
    """What a store wakes in a service without an outbox relay."""


class OutboxRelay(PollingWorker):
    """Publishes the pending events of the aggregates in a service's outbox collections.

    A write in this process hands its aggregate over at once (``relay_now``): published within a round trip or
    two, without waiting for a pass. The passes (every ``poll_seconds``) are the safety net: events left by
    a crash, by another instance, or by a publish that failed while the broker was away.
    """

    def __init__(
        self,
        collections: Sequence[AsyncCollection[Document]],
        publish: Publish,
        *,
        poll_seconds: float = 1.0,
        lease_seconds: float = 5.0,
        batch: int = 100,
        concurrency: int = 16,
    ) -> None:
        super().__init__()
        self._collections = collections
        self._publish = publish
        self.poll_seconds = poll_seconds
        self._lease = timedelta(seconds=lease_seconds)
        self._batch = batch
        self._concurrency = concurrency
        self._by_name = {collection.name: collection for collection in collections}
        self._now_slots = asyncio.Semaphore(concurrency)
        self._now: set[asyncio.Task[int]] = set()
        self._running = False
        self._busy: set[str] = set()
        self._again: set[str] = set()

    def relay_now(self, collection: str, aggregate_id: str) -> None:
        """Publish this aggregate's pending events now (a write in this process just queued them)."""
        if not self._running:
            self.wake()
            return
        if aggregate_id in self._busy:  # being relayed here: it goes on with the new events when done
            self._again.add(aggregate_id)
            return
        task = asyncio.create_task(self._relay_soon(self._by_name[collection], aggregate_id))
        self._now.add(task)
        task.add_done_callback(self._now.discard)

    async def _relay_soon(self, collection: AsyncCollection[Document], aggregate_id: str) -> int:
        async with self._now_slots:
            try:
                return await self._relay_one(collection, aggregate_id)
            except Exception as error:  # the pass publishes it once the broker or the store is back
                log.debug("relaying %s now failed (%s); the next pass will", aggregate_id, type(error).__name__)
                return 0

    async def run(self) -> None:
        self._running = True
        try:
            await super().run()
        finally:
            self._running = False
            for task in list(self._now):
                task.cancel()

    async def work_once(self) -> int:
        """One pass over aggregates with pending events; returns how many events went out.

        Aggregates are relayed ``concurrency`` at a time (the producer batches their records on the wire);
        each aggregate's own events go out one after another, in order."""
        published = 0
        for collection in self._collections:
            cursor = collection.find(
                {"outbox_pending": {"$gt": 0}, "outbox_lease_until": {"$lt": wall_clock()}},
                {"_id": 1},
                limit=self._batch,
            )
            candidates = [candidate["_id"] async for candidate in cursor]
            published += await self._relay_all(collection, candidates)
        return published

    async def _relay_all(self, collection: AsyncCollection[Document], aggregate_ids: Sequence[str]) -> int:
        slots = asyncio.Semaphore(self._concurrency)

        async def relay(aggregate_id: str) -> int:
            async with slots:
                return await self._relay_one(collection, aggregate_id)

        outcomes = await asyncio.gather(
            *(relay(aggregate_id) for aggregate_id in aggregate_ids), return_exceptions=True
        )
        failure = next((outcome for outcome in outcomes if isinstance(outcome, BaseException)), None)
        if failure is not None:
            raise failure  # what was not published stays in its outbox for the next pass
        return sum(outcome for outcome in outcomes if isinstance(outcome, int))

    async def _relay_one(self, collection: AsyncCollection[Document], aggregate_id: str) -> int:
        """Claim the aggregate's outbox, publish it in order, remove what went out; again when a write in this
        process queued more meanwhile (its ``relay_now`` found the lease taken: it is left to us)."""
        published = 0
        while True:
            self._busy.add(aggregate_id)
            try:
                published += await self._relay_claimed(collection, aggregate_id)
            except BaseException:
                self._again.discard(aggregate_id)  # what is left waits for the next pass
                raise
            finally:
                self._busy.discard(aggregate_id)
            if aggregate_id not in self._again:
                return published
            self._again.discard(aggregate_id)

    async def _relay_claimed(self, collection: AsyncCollection[Document], aggregate_id: str) -> int:
        now = wall_clock()
        # The whole document: FerretDB cannot project a findAndModify (docs/development.md, "Backends").
        claimed = await collection.find_one_and_update(
            {"_id": aggregate_id, "outbox_pending": {"$gt": 0}, "outbox_lease_until": {"$lt": now}},
            {"$set": {"outbox_lease_until": now + self._lease}},
        )
        if claimed is None:
            return 0  # another instance holds it, or it was emptied meanwhile
        sent: list[str] = []
        try:
            for stored in claimed["outbox"]:
                await self._publish(json.loads(stored))
                sent.append(stored)
        finally:
            await collection.update_one(
                {"_id": aggregate_id},
                {
                    "$pullAll": {"outbox": sent},
                    "$inc": {"outbox_pending": -len(sent)},
                    "$set": {"outbox_lease_until": EPOCH},
                },
            )
        return len(sent)


class ConcurrentChange(Exception):
    """An aggregate kept changing under a writer; the request or event may be tried again."""
