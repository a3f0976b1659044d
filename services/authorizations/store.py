"""The authorizations service's MongoDB database: one coverage document per episode (the aggregate), and the log
of who read which episode's authorizations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from services.common.audit import AUDIT_LOG, audit_entry, audit_indexes
from services.common.auth import Principal
from services.common.indexes import Index, create_indexes
from services.common.mongo import Document
from services.common.outbox import Relay, insert_aggregate, update_aggregate
from services.common.utc import utc_now
from stepwise_contract import CloudEvent

from .domain.model import Coverage

COVERAGE = "coverage"
NEVER = "9999-12-31"
"""The date of a timer or review that is not due ever (an explicit value: no null checks in queries). Dates are
stored as ISO text, which orders as the dates do."""

INDEXES = (
    Index(COVERAGE, (("next_check_on", 1),), "the daily pass: episodes whose look at their authorizations is due"),
    Index(COVERAGE, (("earliest_review_on", 1),), "the reviews worklist: coverage with a review due, soonest first"),
    Index(COVERAGE, (("authorization_ids", 1),), "the episode of an authorization (a decision recorded by its id; "
          "multikey)"),
    *audit_indexes(),
)  # fmt: skip


@dataclass(frozen=True)
class StoredCoverage:
    coverage: Coverage
    version: int
    applied_events: frozenset[str]
    next_check_on: date | None


class CoverageStore:
    def __init__(self, database: AsyncDatabase[Document], wake_relay: Relay) -> None:
        self._database = database
        self.coverage = database[COVERAGE]
        self.audit = database[AUDIT_LOG]
        self._wake_relay = wake_relay

    async def create_indexes(self) -> None:
        await create_indexes(self._database, INDEXES)

    async def get(self, episode_id: str) -> StoredCoverage | None:
        document = await self.coverage.find_one({"_id": episode_id}, {"outbox": 0})
        if document is None:
            return None
        look = document.get("next_check_on", NEVER)
        return StoredCoverage(Coverage.model_validate(document), document["version"],
                              frozenset(document["applied_events"]),
                              None if look == NEVER else date.fromisoformat(look))  # fmt: skip

    async def create(
        self, coverage: Coverage, events: Sequence[CloudEvent[Any]], applied: str | None, next_check_on: date | None
    ) -> bool:
        """The episode's first coverage, its events and its timer in one write; False if the episode has one already."""
        fields = {"_id": coverage.episode_id, **_fields(coverage, next_check_on)}
        return await insert_aggregate(self.coverage, fields, events, applied, self._wake_relay)

    async def save(
        self,
        stored: StoredCoverage,
        coverage: Coverage,
        events: Sequence[CloudEvent[Any]],
        applied: str | None,
        next_check_on: date | None,
    ) -> bool:
        """The coverage, its events and its timer in one write; False if it changed meanwhile."""
        changes = _fields(coverage, next_check_on)
        return await update_aggregate(self.coverage, coverage.episode_id, stored.version, changes, events, applied,
                                      self._wake_relay)  # fmt: skip

    async def episode_of(self, authorization_id: str) -> str | None:
        # A top-level array of strings, matched with ``$in``: the same on MongoDB, and the one form the test stand-in
        # (nx-27017) matches; a path into the array of authorizations it does not.
        query = {"authorization_ids": {"$in": [authorization_id]}}
        document = await self.coverage.find_one(query, {"_id": 1})
        return None if document is None else str(document["_id"])

    async def due(self, today: date, limit: int = 100) -> list[str]:
        """Episodes whose daily look is due."""
        cursor = self.coverage.find({"next_check_on": {"$lte": today.isoformat()}}, {"_id": 1}, limit=limit)
        return [document["_id"] async for document in cursor]

    async def with_reviews(self, due_before: date | None) -> list[Coverage]:
        """Coverage with a review due (before ``due_before``, when given)."""
        bound = due_before.isoformat() if due_before else NEVER
        query = {"earliest_review_on": {"$lt": bound}}
        cursor = self.coverage.find(query, {"outbox": 0, "applied_events": 0}).sort("earliest_review_on", ASCENDING)
        return [Coverage.model_validate(document) async for document in cursor]

    async def audited(self, by: Principal, action: str, *episode_ids: str) -> None:
        """Who read these episodes' authorizations (payer data is part of the clinical record), and when: an entry
        per episode, as a worklist shows several."""
        at = utc_now()
        entries = [audit_entry(by, action, at, episode_id=episode_id) for episode_id in dict.fromkeys(episode_ids)]
        if entries:
            await self.audit.insert_many(entries)


def _fields(coverage: Coverage, next_check_on: date | None) -> Document:
    # JSON mode: dates as ISO text. The timer and the earliest review are stored apart, as ISO text (NEVER: none);
    # the authorizations' ids too, as the array an authorization is found by (``episode_of``).
    earliest = min((entry.review_due_on for entry in coverage.reviews), default=None)
    return {**coverage.model_dump(mode="json"), "next_check_on": next_check_on.isoformat() if next_check_on else NEVER,
            "earliest_review_on": earliest.isoformat() if earliest else NEVER,
            "authorization_ids": [a.authorization_id for a in coverage.authorizations]}  # fmt: skip
