"""care_plan's MongoDB database: one care-plan document per episode (the aggregate, its treatment plan inside), and
the audit log of who read or changed a treatment plan.

What intake recorded before the episode's plan existed (an alert or a measure ahead of its assessment) is kept in the
episode's care-plan document before the plan is in it (``StoredPending``: ``pending``, no ``status``): the assessment's
insert of the plan finds it there (a duplicate key) and writes the plan over it, taking those inputs, in one
version-checked write. An earlier version kept them apart (``pending_inputs``): those left at an upgrade are taken by
the timer pass (``changes.adopt_kept_apart``).

The store holds the documents it wrote last (``KNOWN_KEPT``, with their versions): the next event of such an episode
is decided on the plan held, without a read. It is a hint only: every write is version-checked, and a write that
finds another version (another instance wrote since) drops what is held and reads.
"""

from __future__ import annotations

import contextlib
import heapq
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.common.audit import AUDIT_LOG, audit_entries, audit_entry, audit_indexes
from services.common.auth import Principal
from services.common.indexes import Index, create_indexes
from services.common.mongo import Document, count, equals
from services.common.outbox import (
    APPLIED_EVENTS_KEPT,
    EPOCH,
    Relay,
    insert_aggregate,
    update_aggregate,
    update_with_events,
)
from services.common.recent import Recent
from services.common.utc import assume_utc, utc_now
from stepwise_contract import CareLevel, CloudEvent, Program, Track

from .domain.model import CareInput, CarePlan, DeliveredService, WaitlistPlace
from .domain.policy import ProgramGroup

PLANS = "care_plans"
AUDIT = AUDIT_LOG
PENDING_INPUTS = "pending_inputs"
"""Where an earlier version kept the inputs that came before their plan (now in the plan's document: ``PENDING``)."""
PENDING = "pending"
"""The inputs kept in an episode's care-plan document before its plan is (``StoredPending``)."""
KNOWN_KEPT = 500
"""How many episodes' documents the store holds (the last written): enough for the episodes in flight at 20 intakes/s
(an assessment's measure and alert come within a second or two of it). A new plan takes some 35 kB of memory, a long
episode's more: this bounds what they take."""
SEATS = "group_seats"
WAITLIST_INDEX = ("status", "waitlist.level", "waitlist.track", "program", "waitlist.since")
STALE_SEAT = timedelta(minutes=1)
"""A seat held this long by an episode whose plan is not in the group was left by a change that failed."""
NEVER = datetime(9999, 12, 31, tzinfo=UTC)
SERVICE_DATES = "service_dates"
"""The days of the plan's published services (``20261207``, as a session id names its day): what
``GET /v1/services`` finds plans by (indexed)."""
SERVICE_DAY = "%Y%m%d"
FOLLOW_UP = "follow_up_check_at"
"""The stored copy of ``CarePlan.follow_up_at`` the timer pass queries (a datetime; the plan's fields are text)."""
"""The timer of a plan that needs no timer (an explicit value: no null checks in queries)."""

INDEXES = (
    Index(PLANS, (("status", 1), ("next_check_at", 1)), "the timer pass: active plans whose timer has come"),
    Index(PLANS, (("status", 1), (FOLLOW_UP, 1)), "the timer pass: graduates whose alumni follow-up is due"),
    Index(PLANS, (("group.group_id", 1), ("status", 1)), "a group's members now (its active plans): seats, rosters",
          replaces=("group.group_id_1",)),
    Index(PLANS, tuple((field, 1) for field in WAITLIST_INDEX), "the waitlists: who waits for a level, track and "
          "program, longest waiting first (the head read on a timer pass, counted on placing a plan); whether anyone "
          "waits at all", replaces=("waitlist.level_1", "status_1_waitlist.level_1")),
    Index(PLANS, (("session_ids", 1),), "a session's roster: the plans whose calendar holds it (multikey)"),
    Index(PLANS, ((SERVICE_DATES, 1),), "GET /v1/services: plans with a service on given days (multikey), and "
          "the plans saved before service dates were kept, once at start"),
    Index(PENDING_INPUTS, (("episode_id", 1),), "what intake recorded for an episode before its plan existed, as an "
          "earlier version kept it: the timer pass takes what an upgrade left, by episode",
          scope="one episode's inputs waiting for its plan"),
    Index(SEATS, (("group_id", 1), ("episode_id", 1)), "a group's seats, and one seat per episode in a group",
          unique=True),
    *audit_indexes("episode_id", person=True),
)  # fmt: skip


@dataclass(frozen=True)
class StoredPlan:
    plan: CarePlan
    version: int
    applied_events: frozenset[str]
    next_check_at: datetime | None


@dataclass(frozen=True)
class EpisodeServices:
    """An episode's services as last published (``CarePlan.services``)."""

    episode_id: str
    services: list[DeliveredService]


@dataclass(frozen=True)
class WaitingPlan:
    """A plan on a group's waitlist: what the waitlist needs of it."""

    episode_id: str
    program: Program
    place: WaitlistPlace


def _waiting(document: Document) -> WaitingPlan:
    return WaitingPlan(document["_id"], document["program"], WaitlistPlace.model_validate(document["waitlist"]))


WaitlistKey = tuple[CareLevel, Track, Program]
"""What a plan waits for: a group of this level and track that takes its program."""


def _waiting_for(place: WaitlistKey) -> Document:
    level, track, program = place
    return {"waitlist.level": equals(level.value), "waitlist.track": equals(track), "program": equals(program),
            "status": equals("active")}  # fmt: skip


@dataclass(frozen=True)
class PendingInput:
    """Something intake recorded for an episode whose plan did not exist yet (an alert before its assessment)."""

    applied: str
    """The event's source#id: the plan applies it once."""
    input: CareInput
    episode_id: str = ""


@dataclass(frozen=True)
class StoredPending:
    """An episode's care-plan document before its plan: the inputs that came first, in the order they came."""

    episode_id: str
    version: int
    inputs: tuple[PendingInput, ...]


Held = StoredPlan | StoredPending
"""A care-plan document as this store last wrote it."""


class CarePlanStore:
    def __init__(self, database: AsyncDatabase[Document], wake_relay: Relay) -> None:
        self._database = database
        self.plans = database[PLANS]
        self.pending_inputs = database[PENDING_INPUTS]
        self.seats = database[SEATS]
        self.audit_log = database[AUDIT]
        self._wake_relay = wake_relay
        self._held: Recent[str, Held] = Recent(KNOWN_KEPT)

    async def create_indexes(self) -> None:
        await create_indexes(self._database, INDEXES)
        await self._date_the_services()

    async def _date_the_services(self) -> None:
        """Give a plan saved before ``service_dates`` was kept its dates (once: each save keeps them after), from the
        version read, so that a save in between wins."""
        # Not "services" too: the index on the dates finds the plans without them, and a plan with no services gets
        # an empty list (what a save gives it), so that it is not found again.
        cursor = self.plans.find({SERVICE_DATES: {"$exists": False}}, {"services": 1, "version": 1})
        async for document in cursor:
            services = document.get("services", {}).values()
            days = _service_dates(DeliveredService.model_validate(line) for line in services)
            await self.plans.update_one({"_id": document["_id"], "version": document["version"]},
                                        {"$set": {SERVICE_DATES: days}})  # fmt: skip

    async def get(self, episode_id: str) -> StoredPlan | None:
        """The episode's plan as stored (read), None when it has none (yet)."""
        found = await self.read(episode_id)
        return found if isinstance(found, StoredPlan) else None

    async def read(self, episode_id: str) -> Held | None:
        """The episode's care-plan document as stored: its plan, or the inputs waiting for it."""
        document = await self.plans.find_one({"_id": episode_id}, {"outbox": 0})
        if document is None:
            return None
        if "status" not in document:
            return _pending(document)
        timer = assume_utc(document.get("next_check_at", NEVER))
        return StoredPlan(
            plan=_plan(document),
            version=document["version"],
            applied_events=frozenset(document["applied_events"]),
            next_check_at=None if timer == NEVER else timer,
        )

    async def load(self, episode_id: str) -> StoredPlan | None:
        """The plan this store wrote last if it holds it (a hint: the write after is version-checked), else read."""
        held = self._held.get(episode_id)
        return held if isinstance(held, StoredPlan) else await self.get(episode_id)

    def held(self, episode_id: str) -> Held | None:
        return self._held.get(episode_id)

    def forget(self, episode_id: str) -> None:
        """What is held of the episode is stale (another writer won) or unsure (a write failed): read it next time."""
        self._held.pop(episode_id, None)

    def _keep(self, episode_id: str, written: Held) -> None:
        held = self._held.get(episode_id)
        if held is not None and held.version > written.version:
            return  # a later write of this process was kept meanwhile
        self._held.keep(episode_id, written)

    def _keep_plan(self, fields: Document, version: int, applied: frozenset[str], timer: datetime | None) -> None:
        # The plan as a read would give it (from the fields written), its timer as stored (milliseconds).
        kept = None if timer is None else timer.replace(microsecond=timer.microsecond // 1000 * 1000)
        self._keep(fields["episode_id"], StoredPlan(_plan(fields), version, applied, kept))

    async def create(
        self,
        plan: CarePlan,
        events: Sequence[CloudEvent[Any]],
        applied: str | Sequence[str],
        next_check_at: datetime | None,
    ) -> bool:
        """Store a new plan with its events (``applied``: the key of the event that made it, or the keys of those it
        took); False if the episode has a care-plan document already (a plan, or inputs waiting for it: ``read`` it)."""
        keys = [applied] if isinstance(applied, str) else list(applied)
        fields = {"_id": plan.episode_id, **_fields(plan), "next_check_at": next_check_at or NEVER}
        with self._forgetting(plan.episode_id):
            created = await insert_aggregate(self.plans, fields, events, keys, self._wake_relay)
        if created:
            self._keep_plan(fields, 1, frozenset(keys), next_check_at)
        return created

    async def create_over(
        self,
        waiting: StoredPending,
        plan: CarePlan,
        events: Sequence[CloudEvent[Any]],
        applied: Sequence[str],
        next_check_at: datetime | None,
    ) -> bool:
        """Store a new plan with its events over the inputs that waited for it (``applied``: the keys of the events it
        applied, theirs included), in one write; False if the document changed since ``waiting`` was read."""
        fields = _fields(plan) | {"next_check_at": next_check_at or NEVER}
        keys = {"$each": list(applied), "$slice": -APPLIED_EVENTS_KEPT}
        update: Document = {"$set": fields, "$inc": {"version": 1}, "$unset": {PENDING: ""},
                            "$push": {"applied_events": keys}}  # fmt: skip
        query = {"_id": plan.episode_id, "version": waiting.version}
        with self._forgetting(plan.episode_id):
            saved = await update_with_events(self.plans, query, update, events, self._wake_relay)
        if saved:
            self._keep_plan(fields, waiting.version + 1, frozenset(applied), next_check_at)
        else:
            self.forget(plan.episode_id)
        return saved

    async def park(self, episode_id: str, learned: CareInput, applied: str) -> bool:
        """Keep an input in the episode's care-plan document until its plan is made (once: a redelivery adds nothing);
        False when the episode has a plan (made meanwhile): give the input to the plan instead."""
        kept = {"applied": applied, "input": learned.model_dump(mode="json")}
        # The fields a plan's write expects of its document (no events, no dates yet); no $setOnInsert, which the
        # test stand-in's findAndModify ignores: setting them again changes nothing.
        empty = {"outbox": [], "outbox_pending": 0, "outbox_lease_until": EPOCH, "applied_events": [],
                 SERVICE_DATES: []}  # fmt: skip
        update = {"$addToSet": {PENDING: kept}, "$inc": {"version": 1}, "$set": empty}
        no_plan = {"_id": episode_id, "status": {"$exists": False}}
        try:
            with self._forgetting(episode_id):
                # An upsert that finds the document with a plan in it tries to insert one: a duplicate key. (Not a
                # findAndModify: the test stand-in's ignores $addToSet in an upsert and finds no duplicate.)
                written = await self.plans.update_one(no_plan, update, upsert=True)
        except DuplicateKeyError:
            self.forget(episode_id)
            return False
        if written.upserted_id is not None:  # the first: what the document holds is known
            self._keep(episode_id, StoredPending(episode_id, 1, (PendingInput(applied, learned, episode_id),)))
        else:  # kept beside others (or again): the document is read when its plan is made
            self.forget(episode_id)
        return True

    async def save(
        self,
        stored: StoredPlan,
        plan: CarePlan,
        events: Sequence[CloudEvent[Any]],
        applied: str | None,
        next_check_at: datetime | None,
    ) -> bool:
        """Store the plan, queue its events and set its timer in one write; False if it changed meanwhile."""
        changes = _fields(plan) | {"next_check_at": next_check_at or NEVER}
        with self._forgetting(plan.episode_id):
            saved = await update_aggregate(self.plans, plan.episode_id, stored.version, changes, events, applied,
                                           self._wake_relay)  # fmt: skip
        if saved:
            done = stored.applied_events | {applied} if applied else stored.applied_events
            self._keep_plan(changes, stored.version + 1, done, next_check_at)
        else:
            self.forget(plan.episode_id)
        return saved

    @contextlib.contextmanager
    def _forgetting(self, episode_id: str) -> Iterator[None]:
        """A write whose outcome is unknown (it raised): what is held of the episode is read again next time."""
        try:
            yield
        except BaseException:
            self.forget(episode_id)
            raise

    async def due(self, now: datetime, limit: int = 100) -> list[str]:
        """Episodes whose timer (a session's no-show deadline, a week's end, a measure's window) has come, and
        graduates whose alumni follow-up timer (``follow_up_check_at``) has."""
        due = []
        for timer in ({"status": equals("active"), "next_check_at": {"$lte": now}},
                      {"status": equals("graduated"), FOLLOW_UP: {"$lte": now}}):  # fmt: skip
            due += [document["_id"] async for document in self.plans.find(timer, {"_id": 1}, limit=limit)]
        return due

    async def services_on(self, days: Sequence[date], after: str | None, limit: int) -> list[EpisodeServices]:
        """The published services of up to ``limit`` episodes with one on any of ``days``, by episode id after
        ``after``: every service of each (the caller keeps those it wants)."""
        query: Document = {SERVICE_DATES: {"$in": [day.strftime(SERVICE_DAY) for day in days]}}
        if after is not None:
            query["_id"] = {"$gt": after}
        cursor = self.plans.find(query, {"services": 1}).sort("_id", ASCENDING).limit(limit)
        return [EpisodeServices(document["_id"], [DeliveredService.model_validate(line)
                                                  for line in document.get("services", {}).values()])
                async for document in cursor]  # fmt: skip

    # --- program groups: members, waitlist, seats ---------------------------------------------------------

    async def waitlisted(self) -> list[WaitingPlan]:
        """Active plans waiting for a place in a group, longest waiting first (read on every timer pass: the
        index finds them, and only the waitlist fields are read)."""
        query = {"status": equals("active"), "waitlist.level": {"$exists": True}}
        cursor = self.plans.find(query, {"program": 1, "waitlist": 1})
        waiting = [WaitingPlan(document["_id"], document["program"], WaitlistPlace.model_validate(document["waitlist"]))
                   async for document in cursor]  # fmt: skip
        return sorted(waiting, key=lambda plan: (plan.place.since, plan.episode_id))

    async def waiting(self, place: WaitlistKey, other_than: str) -> int:
        """How many active plans wait for a group of ``place`` (level, track, program), but ``other_than``'s: counted on
        the waitlist's index, no plan read."""
        waiting = await count(self.plans, _waiting_for(place))
        if waiting and await self.plans.find_one(_waiting_for(place) | {"_id": other_than}, {"_id": 1}) is not None:
            return waiting - 1  # ``other_than`` waits there itself (a redelivery): only a read of its own plan
        return waiting

    async def anyone_waiting(self) -> bool:
        """Whether any plan waits for a place (one entry of the waitlist's index read at most)."""
        query = {"status": equals("active"), "waitlist.level": {"$gt": ""}}
        return await self.plans.find_one(query, {"_id": 1}) is not None

    async def waiting_first(self, places: Sequence[WaitlistKey], limit: int) -> list[WaitingPlan]:
        """The ``limit`` plans that have waited longest for a group of any of ``places``, longest waiting first: the
        head of each place's waitlist, read on the waitlist's index (one read per place, each ``limit`` at most:
        however long the waitlists are), merged by the time each joined (a tie to the microsecond in any order)."""
        heads = []
        for place in places:
            cursor = self.plans.find(_waiting_for(place), {"program": 1, "waitlist": 1})
            found = cursor.sort("waitlist.since", ASCENDING).limit(limit)
            heads.append([_waiting(document) async for document in found])
        return list(heapq.merge(*heads, key=lambda plan: plan.place.since))[:limit]

    async def seats_held(self, group_ids: Sequence[str]) -> dict[str, int]:
        """How many seats the members of each of ``group_ids`` hold: their seat documents (as many as the groups'
        capacities, and those left by a failed change until they are freed), never a plan."""
        held: dict[str, int] = {}
        async for seat in self.seats.find({"group_id": {"$in": list(group_ids)}}, {"group_id": 1}):
            held[seat["group_id"]] = held.get(seat["group_id"], 0) + 1
        return held

    async def roster(self, session_id: str) -> list[CarePlan]:
        """Every plan whose calendar has this session (a group session's id is the same in each)."""
        # ``$in`` rather than equality: the same on MongoDB, and the one form the test stand-in (nx-27017) matches
        # on an indexed array.
        cursor = self.plans.find({"session_ids": {"$in": [session_id]}}, {"outbox": 0, "session_ids": 0})
        return [_plan(document) async for document in cursor]

    async def holds_seat(self, group_id: str, episode_id: str) -> bool:
        seat = {"group_id": equals(group_id), "episode_id": equals(episode_id)}
        return await self.seats.find_one(seat, {"_id": 1}) is not None

    async def claim_seat(self, group: ProgramGroup, episode_id: str, now: datetime) -> bool:
        """Hold one of the group's seats for the episode (kept if it holds one); False when all are taken.

        A seat is a document ``{group_id}#{n}`` for n up to the capacity, so two claims never get the same
        one, and the unique (group, episode) index keeps an episode to one seat in a group. The plan is the
        truth of who is in a group; seats only keep the count. Members without a seat (they joined while the
        group had no capacity) fill the lowest free numbers, so a capacity set later counts them; a seat held
        by an episode whose plan is not in the group (a change that failed after the claim) is freed after
        ``STALE_SEAT``.
        """
        if group.capacity is None:
            return True
        while True:
            seats = [document async for document in self.seats.find({"group_id": equals(group.group_id)})]
            if any(seat["episode_id"] == episode_id for seat in seats):
                return True
            members = await self.member_ids(group.group_id)
            unseated = members - {seat["episode_id"] for seat in seats}
            taken = {seat["seat"] for seat in seats}
            free = [n for n in range(1, group.capacity + 1) if n not in taken][len(unseated) :]
            if not free:
                if await self._free_stale_seats(seats, members, now):
                    continue
                return False
            seat = {"_id": f"{group.group_id}#{free[0]}", "group_id": group.group_id, "seat": free[0],
                    "episode_id": episode_id, "claimed_at": now}  # fmt: skip
            with contextlib.suppress(DuplicateKeyError):  # another claim won that seat: look again
                await self.seats.insert_one(seat)
                return True

    async def release_seat(self, group_id: str, episode_id: str) -> None:
        await self.seats.delete_one({"group_id": equals(group_id), "episode_id": equals(episode_id)})

    async def member_ids(self, group_id: str) -> set[str]:
        """The episodes of the active plans in the group now."""
        cursor = self.plans.find({"group.group_id": equals(group_id), "status": equals("active")}, {"_id": 1})
        return {document["_id"] async for document in cursor}

    async def _free_stale_seats(self, seats: list[Document], members: set[str], now: datetime) -> bool:
        freed = False
        for seat in seats:
            if seat["episode_id"] not in members and assume_utc(seat["claimed_at"]) <= now - STALE_SEAT:
                result = await self.seats.delete_one({"_id": seat["_id"], "episode_id": seat["episode_id"]})
                freed = freed or result.deleted_count == 1
        return freed

    async def keep_pending(self, episode_id: str, learned: CareInput, applied: str) -> None:
        """An input kept apart, as the version before kept them (``pending_inputs``): what an upgrade finds. The service
        keeps them in the plan's document now (``park``)."""
        document = {"_id": applied, "episode_id": episode_id, "input": learned.model_dump(mode="json"),
                    "received_at": utc_now()}  # fmt: skip
        with contextlib.suppress(DuplicateKeyError):  # kept already: a redelivery
            await self.pending_inputs.insert_one(document)

    async def pending(self, episode_id: str) -> list[PendingInput]:
        """The inputs waiting for the episode's plan: in its document, and any an earlier version kept apart."""
        found = await self.read(episode_id)
        waiting = list(found.inputs) if isinstance(found, StoredPending) else []
        return waiting + await self.kept_apart({"episode_id": episode_id})

    async def kept_apart(self, query: Document | None = None, limit: int = 0) -> list[PendingInput]:
        """Inputs an earlier version kept apart (``pending_inputs``), of one episode (``query``) or any (``limit`` at
        most, by episode), each episode's in the order they came."""
        cursor = self.pending_inputs.find(query or {"episode_id": {"$gt": ""}}).sort("episode_id", ASCENDING)
        found = [document async for document in cursor.limit(limit)]
        found.sort(key=lambda document: (document["episode_id"], assume_utc(document["received_at"])))
        return [PendingInput(document["_id"], CareInput.model_validate(document["input"]), document["episode_id"])
                for document in found]  # fmt: skip

    async def drop_pending(self, applied: str) -> None:
        await self.pending_inputs.delete_one({"_id": applied})

    # The audit log of reads and changes of clinical records (the treatment plan), as intake keeps for PII.

    async def audit(self, by: Principal, action: str, episode_id: str, **details: Any) -> None:
        await self.audit_log.insert_one(audit_entry(by, action, episode_id=episode_id, **details))

    async def audit_entries(
        self,
        *,
        episode_id: str | None,
        action: str | None,
        person: str | None,
        since: datetime | None,
        until: datetime | None,
        limit: int,
    ) -> list[Document]:
        about = {"episode_id": episode_id, "action": action}
        return await audit_entries(self.audit_log, about, person=person, since=since, until=until, limit=limit)


def _pending(document: Document) -> StoredPending:
    inputs = tuple(PendingInput(kept["applied"], CareInput.model_validate(kept["input"]), document["_id"])
                   for kept in document.get(PENDING, []))  # fmt: skip
    return StoredPending(document["_id"], document["version"], inputs)


def _plan(document: Document) -> CarePlan:
    # A plan stored before services were reported has no "services": its history is taken as reported once.
    return CarePlan.model_validate({"services_tracked": "services" in document, **document})


def _fields(plan: CarePlan) -> Document:
    # JSON mode: dates and times as ISO text (BSON has no date type); the timer is stored apart, as a datetime.
    # ``session_ids`` (the calendar's, top level) is what a roster is found by: one indexed array of strings.
    sessions = plan.schedule.sessions if plan.schedule else []
    # A graduate's follow-up timer is queried too: stored apart as a datetime (NEVER for none), as the timer is.
    # The treatment plan is left out of the plan's answers (``exclude``), not out of its document: written here.
    treatment = plan.treatment.model_dump(mode="json") if plan.treatment else None
    return {**plan.model_dump(mode="json"), "session_ids": [session.session_id for session in sessions],
            SERVICE_DATES: _service_dates(plan.services.values()), FOLLOW_UP: plan.follow_up_at or NEVER,
            "treatment": treatment}  # fmt: skip


def _service_dates(services: Iterable[DeliveredService]) -> list[str]:
    """The days of the services published (revision 0: taken as reported, never published)."""
    return sorted({line.service_date.strftime(SERVICE_DAY) for line in services if line.revision})
