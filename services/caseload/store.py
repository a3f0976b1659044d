"""Caseload's MongoDB database: one document per episode in the projection's collection, which a rebuild replaces
(``meta`` names the collection in use), and the audit log of reads.

A document holds the projection (``view``), its timeline apart (left out of list reads), and the fields worklists
find it by (``flags``, ``session_days``, ``status``, ``level``, ``group_id``, ``program``, ``primary_clinician``),
indexed. Writes are version-checked (two lanes, or two instances, may apply events of one episode at once): a lost
race reads again.

An event costs at most one round trip, its write, and shares it: the writes of one consumer batch (its episodes,
applied concurrently) go together in one ``bulk_write`` (``services/common/bulk.py``). The store keeps the
projections it wrote last (``KNOWN_KEPT``, with their versions) and applies the next event of such an episode to the
one it holds, as a rebuild applies events in memory. Each write is an upsert filtered by the episode and the
version it was applied to: when another writer changed the episode since, that write alone fails (its ``_id`` is
taken), which the bulk result names by its index; that event reads the episode and is applied again. An episode it
does not hold is read first, but for an event of a type that usually opens an episode the store does not hold
(``FirstEvents``, learnt; ``OPENING`` at first): it is written at once (version 0: none yet), and read only when that
write finds it exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import bson
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.common.audit import AUDIT_LOG, audit_entries, audit_entry, audit_indexes
from services.common.auth import Principal
from services.common.bulk import EPISODE_RECORDS, BulkWrites, versioned
from services.common.indexes import Index, create_index, create_indexes
from services.common.mongo import Document, count
from services.common.recent import Recent
from services.common.utc import utc_now
from stepwise_contract import AssessmentCompleted, CloudEvent

from .domain.model import PROJECTION_VERSION, EpisodeView, TimelineEntry
from .domain.projection import ENDED, apply
from .domain.worklists import flags, session_days

META_KEPT_SECONDS = 1.0
"""How long the name of the collection in use is kept before it is read again."""
KNOWN_KEPT = 500
"""How many episodes' projections the store holds (the last written): those an event is applied to without a read.
Enough for the episodes in flight at 20 intakes/s with a welcome 25 s behind (an episode's first events come within
about two seconds at 50 intakes/s). A new episode's projection takes some 30 KiB of memory held, most of it its
calendar's sessions (caseload's RSS after the benchmark's history fell by 14-16 MiB holding 500 fewer), a long one's
(months of attendance on its timeline) some 100 kB: this bounds the memory they take too."""
OPENING = frozenset({AssessmentCompleted.event_type})
"""The event type that comes first for an episode (intake's assessment): an episode not held is written with it at
once as a new one (read only when it exists already) rather than read first; others as ``FirstEvents`` learns."""
META = "meta"
PROJECTION = "projection"
EPISODES = "episodes_v*"
"""The projection's collections: ``collection_name`` of each projection version and build."""
FILTERS = {
    "flags": "a worklist (episodes holding its flag) and its count (multikey)",
    "session_days": "today's sessions: the episodes with a session that day, and their count (multikey)",
    "status": "GET /v1/caseload by status",
    "level": "GET /v1/caseload by level of care",
    "group_id": "GET /v1/caseload by group",
    "program": "GET /v1/caseload by program",
    "primary_clinician": "GET /v1/caseload?mine=true: a clinician's own episodes",
}
"""The fields worklists and the caseload find episodes by, and why: each indexed with the episode's id (``BY_ID``)."""
BY_ID = "view.episode_id"
"""The episode's id, what lists are in: a copy of ``_id`` (the MongoDB stand-in indexes no ``_id`` beside a field)."""
INDEXES = (
    *(Index(EPISODES, ((field, 1), (BY_ID, 1)), f"{why}, by episode id", replaces=(f"{field}_1",))
      for field, why in FILTERS.items()),
    Index(EPISODES, ((BY_ID, 1),), "GET /v1/caseload without a filter: the first episodes by id"),
    Index(EPISODES, (("changed_us", 1),), "the worklists' stream: episodes changed since its last look"),
    Index(EPISODES, (("care_until_us", 1), ("care_from_us", 1)),
          "the census: episodes in care at some time of a period (those that ended before it are not read)"),
    *audit_indexes(),
    Index(AUDIT_LOG, (("subject", 1), ("at", -1)), "the entries of one person, newest first: for an export (no "
          "endpoint asks by person yet)"),
)  # fmt: skip


class FirstEvents:
    """Which event types an episode the store does not hold is usually new for: an event of such a type is written at
    once as a new episode's (read only when that write finds the episode exists), another type's reads it first.
    Learnt from what the store finds, by type, the latest counting most (the events of one episode come on several
    topics, in no set order, and an instance may hold none of an episode another one applied): only a hint, a wrong
    guess costs a write that fails alone, then the read."""

    def __init__(self, opening: frozenset[str]) -> None:
        self._counts: dict[str, list[int]] = {event_type: [1, 0] for event_type in opening}
        """event type -> [times new, times stored already]"""

    def likely_new(self, event_type: str) -> bool:
        new, stored = self._counts.get(event_type, (0, 0))
        return new > stored

    def seen(self, event_type: str, new: bool) -> None:
        counts = self._counts.setdefault(event_type, [0, 0])
        counts[0 if new else 1] += 1
        if sum(counts) > 32:
            counts[:] = [count // 2 for count in counts]


def holding(value: str) -> Document:
    """A filter on an array field for documents whose array holds ``value``. ``$elemMatch`` rather than the bare
    value: the same on MongoDB (which serves both from the multikey index), and the form the MongoDB stand-in
    (nx-27017) answers correctly when the field is indexed."""
    return {"$elemMatch": {"$eq": value}}


def stamp(moment: datetime) -> int:
    """When a projection was stored, in microseconds since the epoch: a number compares the same on every server
    (the MongoDB stand-in keeps a date set by ``$set`` at the top level as a string)."""
    return int(moment.timestamp() * 1_000_000)


FOREVER_US = stamp(datetime(9999, 12, 31, tzinfo=UTC))
"""The end of care of an episode still in care."""


def collection_name(version: int, stamp: str) -> str:
    return f"episodes_v{version}_{stamp}"


class CaseloadStore:
    def __init__(self, database: AsyncDatabase[Document], missed_threshold: int, zone: ZoneInfo) -> None:
        self.database = database
        self.meta = database[META]
        self.audit_log = database[AUDIT_LOG]
        self.missed_threshold = missed_threshold
        self.zone = zone
        self._collection: str | None = None
        self._read_at = 0.0
        self._reading_meta = asyncio.Lock()
        self._first = FirstEvents(OPENING)
        self.writes = BulkWrites()
        """The consumer batch's writes, sent together."""
        self._known: Recent[tuple[str, str], tuple[int, Document]] = Recent(KNOWN_KEPT)
        """(collection, episode id) -> the version and projection this store wrote last, the latest last: as a read
        gives it back. An event is applied to a view made from it afresh (``view_of``), so that what is held never
        changes before its write is stored (no deep copy of a long episode's view on every event)."""

    async def create_indexes(self) -> None:
        await create_indexes(self.database, [index for index in INDEXES if index.collection == AUDIT_LOG])

    async def projection(self) -> Document | None:
        return await self.meta.find_one({"_id": PROJECTION})

    async def start(self) -> bool:
        """The projection's collection, made on a first start; False when it was built by another projection version
        (a rebuild is due)."""
        first = {"_id": PROJECTION, "collection": collection_name(PROJECTION_VERSION, "initial"),
                 "version": PROJECTION_VERSION, "built_at": utc_now()}  # fmt: skip
        with contextlib.suppress(DuplicateKeyError):  # not the first start
            await self.meta.insert_one(first)
        meta = await self.projection()
        assert meta is not None
        await index_episodes(self.database[meta["collection"]])
        return bool(meta["version"] == PROJECTION_VERSION)

    async def episodes(self) -> AsyncCollection[Document]:
        """The collection in use now: read again once ``META_KEPT_SECONDS`` passed (a rebuild swaps it, then waits
        twice that before its last catch-up, so that nothing applied to the old one is missed); one read at a time,
        the events waiting on it use what it read."""
        if self._collection is None or time.monotonic() - self._read_at > META_KEPT_SECONDS:
            async with self._reading_meta:
                if self._collection is None or time.monotonic() - self._read_at > META_KEPT_SECONDS:
                    meta = await self.projection()
                    self._collection = meta["collection"] if meta else collection_name(PROJECTION_VERSION, "initial")
                    self._read_at = time.monotonic()
        return self.database[self._collection]

    async def project(self, event: CloudEvent[Any]) -> None:
        """Apply ``event`` to its episode's projection: in a consumer batch, with the episode's other events of the
        batch, in one write when the last is applied (``EpisodeRecords``); else at once."""
        episode = EPISODE_RECORDS.get()
        if episode is None:
            await self.apply(event)
        else:
            episode.collect(self.apply_all, event)

    async def apply(self, event: CloudEvent[Any], into: AsyncCollection[Document] | None = None) -> bool:
        """Apply one event to its episode's projection; False when it was applied before."""
        return await self.apply_all([event], into)

    async def apply_all(self, events: Sequence[CloudEvent[Any]], into: AsyncCollection[Document] | None = None) -> bool:
        """Apply events, in order, to their episodes' projections, one write per episode; False when each was applied
        before. (A consumer batch's records of one key are one episode's: each event still goes to its own.)"""
        by_episode: dict[str, list[CloudEvent[Any]]] = {}
        for event in events:
            by_episode.setdefault(event.subject, []).append(event)
        return any([await self._apply_to_episode(of_one, into) for of_one in by_episode.values()])

    async def _apply_to_episode(
        self, events: Sequence[CloudEvent[Any]], into: AsyncCollection[Document] | None = None
    ) -> bool:
        episodes = into if into is not None else await self.episodes()
        first = events[0]
        known = (episodes.name, first.subject)
        guessed_new: bool | None = None  # an episode not held: written at once as new (True), or read (False)
        try:
            while True:
                held: tuple[int, Document | None] | None = self._known.get(known)
                if held is None and guessed_new is None and self._first.likely_new(first.type):
                    held, guessed_new = (0, None), True
                elif held is None:
                    held = await self._read(episodes, first.subject)
                    if guessed_new is None:
                        self._first.seen(first.type, new=held[1] is None)
                    guessed_new = False
                version, stored = held
                updated = applied(None if stored is None else view_of(stored), events)
                if updated is None:
                    return False
                written = await self._write(episodes, version, updated, stored)
                if guessed_new:
                    self._first.seen(first.type, new=written is not None)
                    guessed_new = False
                if written is not None:
                    self._keep(known, version + 1, written)
                    return True
                self._known.pop(known, None)  # another writer changed it since: read it again
        except BaseException:
            self._known.pop(known, None)  # a write whose outcome is unknown: read it again next time
            raise

    @staticmethod
    async def _read(episodes: AsyncCollection[Document], episode_id: str) -> tuple[int, Document | None]:
        found = await episodes.find_one({"_id": episode_id})
        return (0, None) if found is None else (found["version"], found)

    async def _write(
        self, episodes: AsyncCollection[Document], version: int, view: EpisodeView, stored: Document | None
    ) -> Document | None:
        """Store ``view`` over the projection at ``version`` (0: none yet; else ``stored``), with the other writes of
        the consumer batch: the document as stored, or None when the stored one is not at that version (the upsert
        of another ``_id`` fails, on that write alone)."""
        document = as_stored(self.document(view))  # as a read gives it: compared with ``stored`` as such
        fields = {key: value for key, value in document.items() if key != "_id"}
        appended: Document = {}
        if stored is not None:
            fields, appended = revised(fields, stored)
        try:
            await self.writes.write(episodes, versioned(view.episode_id, version, fields, appended))
        except DuplicateKeyError:
            return None
        return document

    def _keep(self, known: tuple[str, str], version: int, stored: Document) -> None:
        held = self._known.get(known)
        if held is not None and held[0] > version:
            return  # another lane wrote a later one meanwhile
        self._known.keep(known, (version, stored))

    def document(self, view: EpisodeView) -> Document:
        stored = view.model_dump(mode="python", exclude={"timeline"})
        return {
            "_id": view.episode_id,
            "view": stored,
            "timeline": [entry.model_dump(mode="python") for entry in view.timeline],
            "flags": flags(view, self.missed_threshold),
            "session_days": session_days(view, self.zone),
            "status": view.status.value,
            "level": view.level.value,
            "group_id": view.group_id.value,
            "program": view.program.value,
            "primary_clinician": view.primary_clinician.value,
            "changed_us": stamp(utc_now()),
            **care_period(view),
        }

    async def find(self, query: Document, limit: int = 0) -> list[EpisodeView]:
        """The projections matching ``query`` (without their timelines), by episode id."""
        episodes = await self.episodes()
        cursor = episodes.find(query, {"timeline": 0}).sort(BY_ID, ASCENDING)
        if limit:
            cursor = cursor.limit(limit)
        return [view_of(document) async for document in cursor]

    async def count(self, query: Document) -> int:
        return await count(await self.episodes(), query)

    async def groups(self) -> list[str]:
        """The groups episodes are in now."""
        pipeline: list[Document] = [{"$match": {"group_id": {"$ne": None}}}, {"$group": {"_id": "$group_id"}}]
        return sorted([entry["_id"] async for entry in await (await self.episodes()).aggregate(pipeline)])

    async def timeline(self, episode_id: str) -> list[TimelineEntry] | None:
        found = await (await self.episodes()).find_one({"_id": episode_id}, {"timeline": 1})
        if found is None:
            return None
        return [TimelineEntry.model_validate(entry) for entry in found.get("timeline", [])]

    async def in_care_between(self, start: datetime, end: datetime) -> list[EpisodeView]:
        """The episodes in care at some time from ``start`` to ``end`` (and some more), for the census: not those
        whose care ended before ``start`` nor those it began after ``end``."""
        query = {"care_until_us": {"$gte": stamp(start)}, "care_from_us": {"$lt": stamp(end)}}
        return [view_of(document) async for document in (await self.episodes()).find(query, {"timeline": 0})]

    async def changed_since(self, since: int) -> list[Document]:
        """Episodes changed after ``since`` (``stamp``): their flags, days and change stamp (for the stream)."""
        fields = {"flags": 1, "session_days": 1, "changed_us": 1}
        return await (await self.episodes()).find({"changed_us": {"$gt": since}}, fields).to_list()

    async def audit(self, by: Principal, action: str, **details: Any) -> None:
        """Who read what, when: the caseload serves alerts, scores and attendance (42 CFR Part 2)."""
        await self.audit_log.insert_one(audit_entry(by, action, **details))

    async def audit_entries(self, limit: int) -> list[Document]:
        return await audit_entries(self.audit_log, {}, limit=limit)


async def index_episodes(episodes: AsyncCollection[Document]) -> None:
    for index in INDEXES:
        if index.collection == EPISODES:
            await create_index(episodes, index)


def care_period(view: EpisodeView) -> Document:
    """When the episode's care began (its first movement) and ended (its last, when that ends care; else never), in
    microseconds: what the census finds episodes by. None for an episode with no movement yet."""
    if not view.movements:
        return {}
    last = view.movements[-1]
    until = stamp(last.at) if last.kind in (*ENDED, "referred_out") else FOREVER_US
    return {"care_from_us": stamp(view.movements[0].at), "care_until_us": until}


AS_READ: bson.CodecOptions[Document] = bson.CodecOptions(tz_aware=True)
"""How the services' client decodes what it reads (``services.common.mongo.connect``)."""


def as_stored(document: Document) -> Document:
    """``document`` as the store gives it back (BSON's way: times to the millisecond, in UTC): the projection held
    is the one a read would give."""
    return bson.decode(bson.encode(document), codec_options=AS_READ)


def revised(fields: Document, stored: Document) -> tuple[Document, Document]:
    """What a write of ``fields`` over the projection ``stored`` (both as a read gives them) sends: the fields that
    changed, and the timeline's new entries apart when they come after those stored (as they do, but for an event
    older than one applied): a long episode's timeline, months of attendance, is not sent again for each event."""
    before: list[Document] = stored.get("timeline", [])
    after: list[Document] = fields["timeline"]
    appended: Document = {}
    if [entry["key"] for entry in after[: len(before)]] == [entry["key"] for entry in before]:
        fields = {key: value for key, value in fields.items() if key != "timeline"}
        appended = {"timeline": after[len(before) :]} if len(after) > len(before) else {}
    return {key: value for key, value in fields.items() if key not in stored or stored[key] != value}, appended


def applied(view: EpisodeView | None, events: Sequence[CloudEvent[Any]]) -> EpisodeView | None:
    """``view`` (a view the caller alone holds) with ``events`` applied in order; None when each was applied
    before (nothing to store)."""
    changed = False
    for event in events:
        updated = apply(view, event, in_place=True)
        if updated is not None:
            view, changed = updated, True
    return view if changed else None


def view_of(document: Document) -> EpisodeView:
    return EpisodeView.model_validate({**document["view"], "timeline": document.get("timeline", [])})


async def insert_views(episodes: AsyncCollection[Document], store: CaseloadStore, views: Sequence[EpisodeView]) -> None:
    """Store views built in memory (a rebuild), in batches."""
    documents = [{**store.document(view), "version": 1} for view in views]
    for start in range(0, len(documents), 1000):
        await episodes.insert_many(documents[start : start + 1000], ordered=False)
