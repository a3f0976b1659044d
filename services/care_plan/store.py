"""care_plan's MongoDB database: one care-plan document per episode (the aggregate)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.common.mongo import Document
from services.common.outbox import RelayWake, insert_aggregate, update_aggregate
from services.common.utc import assume_utc, utc_now
from stepwise_contract import CloudEvent

from .domain.model import CareInput, CarePlan

PLANS = "care_plans"
PENDING_INPUTS = "pending_inputs"
NEVER = datetime(9999, 12, 31, tzinfo=UTC)
"""The timer of a plan that needs no timer (an explicit value: no null checks in queries)."""


@dataclass(frozen=True)
class StoredPlan:
    plan: CarePlan
    version: int
    applied_events: frozenset[str]
    next_check_at: datetime | None


@dataclass(frozen=True)
class PendingInput:
    """Something intake recorded for an episode whose plan did not exist yet (an alert before its assessment)."""

    applied: str
    """The event's source#id: the plan applies it once."""
    input: CareInput


class CarePlanStore:
    def __init__(self, database: AsyncDatabase[Document], wake_relay: RelayWake) -> None:
        self.plans = database[PLANS]
        self.pending_inputs = database[PENDING_INPUTS]
        self._wake_relay = wake_relay

    async def create_indexes(self) -> None:
        await self.plans.create_index([("status", ASCENDING), ("next_check_at", ASCENDING)])
        await self.pending_inputs.create_index([("episode_id", ASCENDING)])

    async def get(self, episode_id: str) -> StoredPlan | None:
        document = await self.plans.find_one({"_id": episode_id}, {"outbox": 0})
        if document is None:
            return None
        timer = assume_utc(document.get("next_check_at", NEVER))
        return StoredPlan(
            plan=CarePlan.model_validate(document),
            version=document["version"],
            applied_events=frozenset(document["applied_events"]),
            next_check_at=None if timer == NEVER else timer,
        )

    async def create(
        self, plan: CarePlan, event: CloudEvent[Any], applied: str, next_check_at: datetime | None
    ) -> bool:
        """Store a new plan with its event; False if the episode has a plan already."""
        fields = {"_id": plan.episode_id, **_fields(plan), "next_check_at": next_check_at or NEVER}
        created = await insert_aggregate(self.plans, fields, [event], applied)
        if created:
            self._wake_relay(PLANS, plan.episode_id)
        return created

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
        saved = await update_aggregate(self.plans, plan.episode_id, stored.version, changes, events, applied)
        if saved and events:
            self._wake_relay(PLANS, plan.episode_id)
        return saved

    async def due(self, now: datetime, limit: int = 100) -> list[str]:
        """Episodes whose timer (a session's no-show deadline, a week's end) has come."""
        cursor = self.plans.find({"status": "active", "next_check_at": {"$lte": now}}, {"_id": 1}, limit=limit)
        return [document["_id"] async for document in cursor]

    async def keep_pending(self, episode_id: str, learned: CareInput, applied: str) -> None:
        document = {"_id": applied, "episode_id": episode_id, "input": learned.model_dump(mode="json"),
                    "received_at": utc_now()}  # fmt: skip
        with contextlib.suppress(DuplicateKeyError):  # kept already: a redelivery
            await self.pending_inputs.insert_one(document)

    async def pending(self, episode_id: str) -> list[PendingInput]:
        cursor = self.pending_inputs.find({"episode_id": episode_id}).sort("received_at", ASCENDING)
        return [PendingInput(document["_id"], CareInput.model_validate(document["input"])) async for document in cursor]

    async def drop_pending(self, applied: str) -> None:
        await self.pending_inputs.delete_one({"_id": applied})


def _fields(plan: CarePlan) -> Document:
    # JSON mode: dates and times as ISO text (BSON has no date type); the timer is stored apart, as a datetime.
    return plan.model_dump(mode="json")
