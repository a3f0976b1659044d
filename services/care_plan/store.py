"""care_plan's MongoDB database: one care-plan document per episode (the aggregate)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from services.common.mongo import Document
from services.common.outbox import insert_aggregate, update_aggregate
from stepwise_contract import CloudEvent

from .domain.care_plan import AttendanceRecord, CarePlan

PLANS = "care_plans"


@dataclass(frozen=True)
class StoredPlan:
    plan: CarePlan
    version: int
    applied_events: frozenset[str]


class CarePlanStore:
    def __init__(self, database: AsyncDatabase[Document], wake_relay: Callable[[], None]) -> None:
        self.plans = database[PLANS]
        self._wake_relay = wake_relay

    async def get(self, episode_id: str) -> StoredPlan | None:
        document = await self.plans.find_one({"_id": episode_id}, {"outbox": 0})
        if document is None:
            return None
        return StoredPlan(
            plan=CarePlan.model_validate(document),
            version=document["version"],
            applied_events=frozenset(document["applied_events"]),
        )

    async def create(self, plan: CarePlan, event: CloudEvent[Any], applied: str) -> bool:
        """Store a new plan with its event; False if the episode has a plan already."""
        created = await insert_aggregate(self.plans, {"_id": plan.episode_id, **_fields(plan)}, [event], applied)
        if created:
            self._wake_relay()
        return created

    async def record_attendance(
        self,
        stored: StoredPlan,
        attendance: dict[str, AttendanceRecord],
        event: CloudEvent[Any] | None,
        applied: str | None = None,
    ) -> bool:
        changes = {"attendance": {sid: record.model_dump() for sid, record in attendance.items()}}
        events = [event] if event else []
        saved = await update_aggregate(self.plans, stored.plan.episode_id, stored.version, changes, events, applied)
        if saved and event:
            self._wake_relay()
        return saved

    async def mark_applied(self, stored: StoredPlan, applied: str) -> bool:
        return await update_aggregate(self.plans, stored.plan.episode_id, stored.version, {}, applied=applied)


def _fields(plan: CarePlan) -> Document:
    return plan.model_dump(mode="python")
