"""Transactional outbox without multi-document transactions.

Every aggregate document (an episode, a care plan, a notification) carries its own outbox:
a state change and the events it causes are written by one atomic single-document update.
``OutboxRelay`` then publishes pending events to Kafka in order and removes them. A process
that dies between the write and the publish leaves the events in the document; the next relay
pass (after a restart, or by another instance once the lease expires) publishes them. Kafka may
see an event twice in that window; consumers drop repeats by CloudEvents source + id.

What it costs the store: a write that queues events claims them for this process's relay in the same write (a
lease and a claim token set with the change; an outbox that was empty then holds that write's events alone, else the
write reads the whole outbox back), so the relay publishes them
without a claim of its own; what went out is removed by one update conditioned on the claim token, and the removals
of the aggregates relayed at the same moment go in one bulk write. A change with events therefore costs its write
and a share of one removal. Only a pass (events left by a crash, another instance, a broker away) claims first.

Document fields this module owns: ``version`` (optimistic concurrency), ``outbox`` (wire records
as JSON strings: opaque to queries, pulled by exact value),
``outbox_pending`` (count kept in the same updates, so finding pending work needs no array
query), ``outbox_lease_until`` and ``outbox_claim`` (who holds the outbox until when: only the holder of the
token removes what it published) and ``applied_events`` (source#id of events already applied).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pymongo import ReturnDocument, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from stepwise_contract import CloudEvent, to_kafka

from .bulk import BulkWrites, Insert
from .indexes import Index, create_index
from .mongo import Document
from .outcomes import retrieved, settle
from .priority import URGENT_EVENTS, URGENT_FIRST
from .store_errors import writing
from .tracing import current_traceparent
from .utc import wall_clock
from .worker import PollingWorker

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
APPLIED_EVENTS_KEPT = 500
"""How many consumed-event keys an aggregate remembers; far more than any redelivery window."""
DRAIN_SECONDS = 2.0
"""How long a stopping relay waits for the acknowledgements of what writes handed over, and for the removals of what
went out."""

REMOVAL_LINGER = 0.25
"""Seconds a removal waits for others to go with it in one round trip (its events are out already: only the lease
is held meanwhile)."""
REMOVALS_AT_ONCE = 200


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


def new_aggregate(
    fields: Document, events: Sequence[CloudEvent[Any]] = (), applied: str | Sequence[str] | None = None
) -> Document:
    """A fresh aggregate document with its events already in the outbox; ``applied``: the key of the event that made
    it (or the keys of those it took)."""
    return {
        **fields,
        "version": 1,
        "outbox": [stored_record(event) for event in events],
        "outbox_pending": len(events),
        "outbox_lease_until": EPOCH,
        "applied_events": [applied] if isinstance(applied, str) else list(applied or []),
    }


@dataclass(frozen=True)
class Claim:
    """A relay's hold on an aggregate's outbox: until ``until``, only the holder of ``token`` publishes and removes."""

    token: str
    until: datetime
    over_own: bool = False
    """The relay of this process is at work on the aggregate (it goes on with this claim): a write takes it over. A
    write takes no other holder's: it claims only an outbox whose lease has ended (another holder publishes)."""

    def fields(self) -> Document:
        return {"outbox_claim": self.token, "outbox_lease_until": self.until}


@dataclass(frozen=True)
class Claimed:
    """An outbox claimed by a write: its records (every one pending, in order) and the claim."""

    claim: Claim
    records: Sequence[str]


class Relay(Protocol):
    """What a store hands the events it wrote to: this process's relay, or none (``no_relay``)."""

    def claim(self, aggregate_id: str) -> Claim | None:
        """A claim for a write of the aggregate to take with its events; None: leave them to a pass (no relay runs
        here)."""

    def hand_over(self, collection: str, aggregate_id: str, claimed: Claimed) -> None:
        """Publish what a write claimed, now."""

    def relay_now(self, collection: str, aggregate_id: str) -> None:
        """Events were written without a claim: publish them soon."""


class NoRelay:
    """The relay of a process that runs none (a tool, an API-only instance, a test): the passes of the instances that
    run one publish what is written here."""

    def claim(self, aggregate_id: str) -> Claim | None:  # noqa: ARG002 - nothing runs here to claim for
        return None

    def hand_over(self, collection: str, aggregate_id: str, claimed: Claimed) -> None:
        """Nothing is claimed without a relay."""

    def relay_now(self, collection: str, aggregate_id: str) -> None:
        """Nothing runs here to wake."""


no_relay = NoRelay()
"""A store's relay where none runs in the process."""


async def insert_aggregate(
    collection: AsyncCollection[Document],
    fields: Document,
    events: Sequence[CloudEvent[Any]] = (),
    applied: str | Sequence[str] | None = None,
    relay: Relay = no_relay,
) -> bool:
    """Insert a new aggregate, its events claimed for ``relay`` and handed over; False if one with the same _id exists
    already."""
    claim = relay.claim(str(fields["_id"])) if events else None
    document = new_aggregate(fields, events, applied) | (claim.fields() if claim else {})
    try:
        with writing(collection.name):
            await NEW_AGGREGATES.write(collection, Insert(document))
    except DuplicateKeyError:
        return False
    if events:
        _hand_over(relay, collection.name, str(fields["_id"]), Claimed(claim, document["outbox"]) if claim else None)
    return True


NEW_AGGREGATES = BulkWrites()
"""New aggregates of a consumer batch's episodes, inserted together (one command per collection); outside a batch
each insert goes at once."""


def _hand_over(relay: Relay, collection: str, aggregate_id: str, claimed: Claimed | None) -> None:
    """After a write that queued events: what it claimed to the relay, or (nothing claimed) a wake-up."""
    if claimed is not None:
        relay.hand_over(collection, aggregate_id, claimed)
    else:
        relay.relay_now(collection, aggregate_id)


async def inserted_new_aggregates(
    collection: AsyncCollection[Document], documents: Sequence[Document]
) -> list[Document]:
    """Insert aggregates (without events) in one round trip (in a consumer batch, with its other episodes' inserts),
    those whose _id exists left alone; the aggregates that were new, as stored. Unordered, so one that exists does not
    stop the others."""
    if not documents:
        return []
    aggregates = [new_aggregate(document) for document in documents]
    with writing(collection.name):
        outcomes = await NEW_AGGREGATES.write_all(collection, [Insert(aggregate) for aggregate in aggregates])
        refused = next((error for error in outcomes if error and not isinstance(error, DuplicateKeyError)), None)
        if refused is not None:
            raise refused
    return [aggregate for aggregate, outcome in zip(aggregates, outcomes, strict=True) if outcome is None]


async def update_aggregate(
    collection: AsyncCollection[Document],
    aggregate_id: str,
    version: int,
    changes: Document,
    events: Sequence[CloudEvent[Any]] = (),
    applied: str | None = None,
    relay: Relay = no_relay,
) -> bool:
    """Apply ``changes`` and queue ``events`` in one atomic write, if nobody wrote since ``version``; the events are
    claimed for ``relay`` by that write and handed over.

    False means a concurrent write won: reload and decide again. Raises ``RecordTooLarge`` when the write would
    take the record past the store's document limit.
    """
    update = {"$set": dict(changes), "$inc": {"version": 1}}
    if applied:
        update["$push"] = {"applied_events": {"$each": [applied], "$slice": -APPLIED_EVENTS_KEPT}}
    return await update_with_events(collection, {"_id": aggregate_id, "version": version}, update, events, relay)


async def update_with_events(
    collection: AsyncCollection[Document],
    query: Document,
    update: Document,
    events: Sequence[CloudEvent[Any]],
    relay: Relay = no_relay,
) -> bool:
    """``update`` of the one aggregate ``query`` names (by its ``_id``), queuing ``events`` in its outbox in the same
    write; with a relay here, that write claims the outbox (one round trip: the write is the claim) and hands it over:
    an outbox that was empty holds these events alone, else it is read back with the write. An outbox another
    holder's lease covers (another instance publishes it) is not claimed: the write is made again without a claim, and
    the events wait for that holder's next pass or this relay's. False when ``query`` matched nothing (a lost race:
    three round trips then, the claims' two and the write without a claim)."""
    aggregate_id = str(query["_id"])
    claim = relay.claim(aggregate_id) if events else None
    records = [stored_record(event) for event in events]
    update = with_records(update, records)
    claimed = None
    with writing(collection.name):
        if claim is not None and not claim.over_own:
            # An outbox empty before the write holds this write's records alone: claimed without reading it back (the
            # store need not send the whole document). Else (a conflict, older records pending) as below.
            emptied = query | {"outbox_pending": 0, "outbox_lease_until": {"$lt": wall_clock()}}
            if (await collection.update_one(emptied, _claiming(update, claim))).matched_count == 1:
                claimed = Claimed(claim, records)
        if claim is not None and claimed is None:
            claiming = query if claim.over_own else query | {"outbox_lease_until": {"$lt": wall_clock()}}
            # The whole document: FerretDB cannot project a findAndModify (docs/development.md, "Backends").
            written = await collection.find_one_and_update(
                claiming, _claiming(update, claim), return_document=ReturnDocument.AFTER
            )
            claimed = Claimed(claim, written["outbox"]) if written is not None else None
        matched = claimed is not None
        if claimed is None and (claim is None or not claim.over_own):  # no relay here, or the lease is another's
            matched = (await collection.update_one(query, update)).matched_count == 1
    if matched and events:
        _hand_over(relay, collection.name, aggregate_id, claimed)
    return matched


def _claiming(update: Document, claim: Claim) -> Document:
    return update | {"$set": {**update.get("$set", {}), **claim.fields()}}


def with_records(update: Document, records: Sequence[str]) -> Document:
    """``update`` extended to queue ``records`` (``stored_record``) in the document's outbox, in the same write."""
    if not records:
        return update
    update.setdefault("$inc", {})["outbox_pending"] = len(records)
    update.setdefault("$push", {})["outbox"] = {"$each": list(records)}
    return update


def outbox_index(collection: str) -> Index:
    return Index(collection, (("outbox_pending", 1), ("outbox_lease_until", 1)),
                 "the relay's pass: documents with events to publish, their lease run out (and /metrics' "
                 "backlog)")  # fmt: skip


async def ensure_outbox_index(collection: AsyncCollection[Document]) -> None:
    await create_index(collection, outbox_index(collection.name))


Publish = Callable[[Document], Awaitable[Awaitable[object] | None]]
"""Hands a stored record to Kafka; returns what to await for the broker's acknowledgement (None: acknowledged
already). The relay hands over all of an aggregate's records, then awaits their acknowledgements in order: they
go out in one request, not one request (and one wait) each."""


class OutboxRelay(PollingWorker):
    """Publishes the pending events of the aggregates in a service's outbox collections.

    A write in this process claims its events in the same write and hands them over (``hand_over``): published
    within a round trip or two, without waiting for a pass or claiming again. The passes (every ``poll_seconds``)
    are the safety net: events left by a crash, by another instance, or by a publish that failed while the broker
    was away; each of those is claimed first (``find_one_and_update``).
    """

    def __init__(
        self,
        collections: Sequence[AsyncCollection[Document]],
        publish: Publish,
        *,
        poll_seconds: float = 1.0,
        idle_seconds: float | None = None,
        lease_seconds: float = 5.0,
        batch: int = 100,
        concurrency: int = 16,
        removal_linger: float = REMOVAL_LINGER,
        removals_at_once: int = REMOVALS_AT_ONCE,
        drain_seconds: float = DRAIN_SECONDS,
    ) -> None:
        super().__init__()
        self._collections = collections
        self._publish = publish
        self.poll_seconds = poll_seconds
        self.idle_seconds = idle_seconds
        self._lease = timedelta(seconds=lease_seconds)
        self._batch = batch
        self._concurrency = concurrency
        self._by_name = {collection.name: collection for collection in collections}
        self._now_slots = asyncio.Semaphore(concurrency)
        self._now: set[asyncio.Task[int]] = set()
        self._running = False
        self._busy: set[str] = set()
        self._again: dict[str, Claimed | None] = {}
        self._more: dict[str, asyncio.Event] = {}
        """Set when a write claims more of an aggregate whose relay waits for a removal (``_removed_unless_more``)."""
        self._removals = Removals(removal_linger, removals_at_once)
        self._drain_seconds = drain_seconds

    def claim(self, aggregate_id: str) -> Claim | None:
        """A claim for a write of this process (None while the relay is not running: a pass publishes them)."""
        if not self._running:
            return None
        return Claim(secrets.token_hex(8), _to_milliseconds(wall_clock() + self._lease), aggregate_id in self._busy)

    def hand_over(self, collection: str, aggregate_id: str, claimed: Claimed) -> None:
        """Publish what a write of this process just claimed, now (after what is being relayed of it here)."""
        self._start(collection, aggregate_id, claimed)

    def relay_now(self, collection: str, aggregate_id: str) -> None:
        """Publish this aggregate's pending events now (claiming them first): a write queued them without a claim."""
        if not self._running:
            self.wake()
            return
        self._start(collection, aggregate_id, None)

    def _start(self, collection: str, aggregate_id: str, claimed: Claimed | None) -> None:
        if aggregate_id in self._busy:  # being relayed here: it goes on with the newest claim when done
            if claimed is not None or aggregate_id not in self._again:
                self._again[aggregate_id] = claimed
            if aggregate_id in self._more:
                self._more[aggregate_id].set()
            return
        self._busy.add(aggregate_id)  # from now: a write of it meanwhile takes its claim over (``claim``)
        task = asyncio.create_task(self._relay_soon(self._by_name[collection], aggregate_id, claimed))
        self._now.add(task)
        task.add_done_callback(self._now.discard)

    async def _relay_soon(
        self, collection: AsyncCollection[Document], aggregate_id: str, claimed: Claimed | None
    ) -> int:
        try:
            return await self._relay_one(collection, aggregate_id, self._now_slots, claimed)
        except Exception as error:  # the pass publishes it once the broker or the store is back
            log.debug("relaying %s now failed (%s); the next pass will", aggregate_id, type(error).__name__)
            return 0

    async def run(self) -> None:
        self._running = True
        try:
            await super().run()
        finally:
            self._running = False
            await self._stopped(list(self._now))

    async def _stopped(self, relaying: list[asyncio.Task[int]]) -> None:
        """What writes handed over is acknowledged and removed before the process ends, within ``drain_seconds``
        (what is not by then is cancelled, and left to the next pass of this instance or another): left, it would go
        out again once its lease ended. Consumers ignore a repeat, but a stop need not make one."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._removals.drain(relaying), self._drain_seconds)
        self._busy.clear()

    async def work_once(self) -> int:
        """One pass over aggregates with pending events; returns how many events went out.

        Aggregates are relayed ``concurrency`` at a time (the producer batches their records on the wire);
        each aggregate's own events are handed over together, in order, and removed once acknowledged."""
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
        outcomes = await asyncio.gather(
            *(self._relay_one(collection, aggregate_id, slots) for aggregate_id in aggregate_ids),
            return_exceptions=True,
        )
        failure = next((outcome for outcome in outcomes if isinstance(outcome, BaseException)), None)
        if failure is not None:
            raise failure  # what was not published stays in its outbox for the next pass
        return sum(outcome for outcome in outcomes if isinstance(outcome, int))

    async def _relay_one(
        self,
        collection: AsyncCollection[Document],
        aggregate_id: str,
        slots: asyncio.Semaphore,
        claimed: Claimed | None = None,
    ) -> int:
        """Publish the aggregate's outbox in order (as ``claimed`` by a write, or claimed here), remove what went out;
        again when a write in this process claimed more meanwhile (``_again``), without publishing twice what this
        relay published already. ``slots`` bound the aggregates claimed and published at once (not their removals,
        which wait for the store only)."""
        published: set[str] = set()
        self._busy.add(aggregate_id)
        try:
            while True:
                removal = await self._relay_claimed(collection, aggregate_id, claimed, published, slots)
                if removal is not None:
                    await self._removed_unless_more(aggregate_id, removal)
                if aggregate_id not in self._again:
                    return len(published)
                claimed = self._again.pop(aggregate_id)
        except BaseException:
            self._again.pop(aggregate_id, None)  # what is left waits for the next pass
            raise
        finally:
            self._busy.discard(aggregate_id)
            self._more.pop(aggregate_id, None)

    async def _removed_unless_more(self, aggregate_id: str, removal: asyncio.Future[None]) -> None:
        """Wait for the removal of what went out, unless a write of the aggregate claims more meanwhile: that claim
        holds what went out too (it is not published again) and its removal takes all, so this one need not end
        first (its own then finds another claim and changes nothing). Events written without a claim wait for the
        removal: this relay's lease ends with it, and they are claimed then."""
        more = self._more.setdefault(aggregate_id, asyncio.Event())
        while self._again.get(aggregate_id) is None and not removal.done():  # None: a write to claim for here
            more.clear()
            waiting = asyncio.ensure_future(more.wait())
            either: list[asyncio.Future[Any]] = [removal, waiting]
            try:
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiting.cancel()
        if removal.done():
            removal.result()  # a failed removal fails this relay, as before: the events go out again later

    async def _relay_claimed(
        self,
        collection: AsyncCollection[Document],
        aggregate_id: str,
        claimed: Claimed | None,
        published: set[str],
        slots: asyncio.Semaphore,
    ) -> asyncio.Future[None] | None:
        """Publish what ``claimed`` holds (claiming it first if None) that ``published`` lacks; the removal of what
        went out, queued (None: nothing was claimed)."""
        sent: list[str] = []
        try:
            async with _slot(slots, claimed):
                if claimed is None:
                    claimed = await self._claim(collection, aggregate_id)
                    if claimed is None:
                        return None  # another instance holds it, or it was emptied meanwhile
                await _published_in_order(self._publish, claimed.records, published, sent)
        except BaseException:
            if claimed is not None:
                await self._removals.queue(collection, aggregate_id, claimed.claim, sent)
            raise
        return self._removals.queue(collection, aggregate_id, claimed.claim, sent)

    async def _claim(self, collection: AsyncCollection[Document], aggregate_id: str) -> Claimed | None:
        claim = Claim(secrets.token_hex(8), _to_milliseconds(wall_clock() + self._lease))
        # The whole document: FerretDB cannot project a findAndModify (docs/development.md, "Backends").
        document = await collection.find_one_and_update(
            {"_id": aggregate_id, "outbox_pending": {"$gt": 0}, "outbox_lease_until": {"$lt": wall_clock()}},
            {"$set": claim.fields()},
        )
        return None if document is None else Claimed(claim, document["outbox"])


async def _published_in_order(publish: Publish, records: Sequence[str], published: set[str], sent: list[str]) -> None:
    """Hand ``records`` not yet ``published`` to Kafka, then await their acknowledgements in order; ``sent`` gets each
    record up to the first that failed (whose error is raised: the records after it may have gone out too, and go
    again, consumers ignoring what they applied before)."""
    handed: list[tuple[str, Awaitable[object] | None]] = []
    refused: Exception | None = None
    try:
        for stored in records:
            handed.append((stored, None if stored in published else await publish(json.loads(stored))))
    except Exception as error:  # the producer took none of the rest: what it took is still acknowledged below
        refused = error
    outcomes = await asyncio.gather(*(_acknowledged(ack) for _, ack in handed), return_exceptions=True)
    for (stored, _), outcome in zip(handed, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            raise outcome
        published.add(stored)
        sent.append(stored)
    if refused is not None:
        raise refused


async def _acknowledged(ack: Awaitable[object] | None) -> None:
    if ack is not None:
        await ack


@contextlib.asynccontextmanager
async def _slot(slots: asyncio.Semaphore, claimed: Claimed | None) -> AsyncIterator[None]:
    """A slot to publish in; a write's urgent events (a safety alert) take none, and routine work in the process waits
    while they go (``URGENT_FIRST``): they never queue behind the routine events of the moment."""
    if claimed is not None and any(_topic_of(stored) in URGENT_EVENTS for stored in claimed.records):
        with URGENT_FIRST.urgent():
            yield
        return
    async with slots:
        yield


def _topic_of(stored: str) -> str:
    return str(json.loads(stored)["topic"])


def _to_milliseconds(moment: datetime) -> datetime:
    """A lease as the store keeps it (BSON dates are milliseconds)."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class Removals:
    """Removes what relays published from their outboxes: one update per aggregate, conditioned on the claim token
    (a write that claimed the outbox since, here or elsewhere, publishes and removes it all again: nothing is removed
    twice), and the removals of the moment (``linger`` seconds, or ``REMOVALS_AT_ONCE``) go together, one bulk write
    per collection. A partial failure is safe: a removal that fails leaves its events to be published again (a
    consumer drops the repeat) once the lease ends, and the others are done or refused alike."""

    def __init__(self, linger: float = REMOVAL_LINGER, at_once: int = REMOVALS_AT_ONCE) -> None:
        self._waiting: dict[str, tuple[AsyncCollection[Document], list[tuple[UpdateOne, asyncio.Future[None]]]]] = {}
        self._flushing: asyncio.Task[None] | None = None
        self._linger = linger
        self._at_once = at_once
        self._full = asyncio.Event()

    def queue(
        self, collection: AsyncCollection[Document], aggregate_id: str, claim: Claim, sent: list[str]
    ) -> asyncio.Future[None]:
        """Queue the removal of ``sent`` (published under ``claim``); done once it is stored."""
        update: Document = {"$set": {"outbox_lease_until": EPOCH, "outbox_claim": ""}}
        if sent:
            update |= {"$pullAll": {"outbox": sent}, "$inc": {"outbox_pending": -len(sent)}}
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        operation = UpdateOne({"_id": aggregate_id, "outbox_claim": claim.token}, update)
        self._waiting.setdefault(collection.name, (collection, []))[1].append((operation, done))
        if sum(len(operations) for _, operations in self._waiting.values()) >= self._at_once:
            self._full.set()
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())
        done.add_done_callback(retrieved)  # a removal another claim made moot may fail unheard
        return done

    async def drain(self, relaying: Sequence[asyncio.Task[int]]) -> None:
        """Wait for ``relaying`` to end, their removals and the others' made at once: no more lingering (cancelled, it
        cancels ``relaying``)."""
        self._linger = 0.0
        self._full.set()
        await asyncio.gather(*relaying, return_exceptions=True)
        if self._flushing is not None:
            await self._flushing

    async def _flush(self) -> None:
        while self._waiting:
            with contextlib.suppress(TimeoutError):  # the removals of this moment join
                await asyncio.wait_for(self._full.wait(), self._linger)
            self._full.clear()
            waiting, self._waiting = self._waiting, {}
            for collection, operations in waiting.values():
                try:
                    await collection.bulk_write([operation for operation, _ in operations], ordered=False)
                except Exception as error:  # each relay waiting on it hears of it
                    for _, done in operations:
                        settle(done, error)
                else:
                    for _, done in operations:
                        settle(done)


class ConcurrentChange(Exception):
    """An aggregate kept changing under a writer; the request or event may be tried again."""
