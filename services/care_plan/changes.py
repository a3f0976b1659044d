"""Changing a care plan: load it, decide, review what follows, and store the plan, its events and its
next timer in one version-checked write (retried when another writer won). Every path that changes a
plan (HTTP, Kafka, timers) goes through ``change_plan``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from services.common.outbox import retry_on_conflict
from services.common.utc import utc_now
from stepwise_contract import EventData, new_event

from .domain.care_plan import record_attendance
from .domain.model import AttendanceRecord, AttendanceStatus, CarePlan, CarePlanError
from .domain.policy import CarePolicy
from .domain.review import next_check, review
from .settings import SOURCE
from .store import CarePlanStore

T = TypeVar("T")
Decision = tuple[CarePlan, list[EventData], T]


async def change_plan(
    store: CarePlanStore,
    policy: CarePolicy,
    episode_id: str,
    decide: Callable[[CarePlan, datetime], Decision[T]],
    applied: str | None = None,
) -> T | None:
    """Apply ``decide`` to the episode's plan; None when ``applied`` (an event's source#id) was applied before."""

    async def attempt() -> tuple[T | None] | None:
        stored = await store.get(episode_id)
        if stored is None:
            raise CarePlanError("no_care_plan", "no care plan for this episode")
        if applied and applied in stored.applied_events:
            return (None,)
        now = utc_now()
        plan, events, result = decide(stored.plan, now)
        plan, more = review(plan, policy, now)
        events = [*events, *more]
        timer = next_check(plan, policy, now)
        if plan == stored.plan and not events and not applied and timer == stored.next_check_at:
            return (result,)
        envelopes = [new_event(event, source=SOURCE) for event in events]
        saved = await store.save(stored, plan, envelopes, applied, timer)
        return (result,) if saved else None

    return (await retry_on_conflict(attempt))[0]


async def record_session_attendance(
    store: CarePlanStore,
    policy: CarePolicy,
    episode_id: str,
    session_id: str,
    status: AttendanceStatus,
    notice_given_at: datetime | None = None,
    applied: str | None = None,
) -> AttendanceRecord | None:
    """Record a session's attendance (and, for a miss, its event); raises CarePlanError."""

    def decide(plan: CarePlan, now: datetime) -> Decision[AttendanceRecord]:
        attendance, missed = record_attendance(plan, session_id, status, now, notice_given_at)
        return plan.model_copy(update={"attendance": attendance}), [missed] if missed else [], attendance[session_id]

    return await change_plan(store, policy, episode_id, decide, applied)
