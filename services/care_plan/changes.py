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
from .domain.model import AttendanceRecord, AttendanceStatus, CareInput, CarePlan, CarePlanError
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


async def learn(store: CarePlanStore, policy: CarePolicy, episode_id: str, learned: CareInput, applied: str) -> None:
    """Feed what intake recorded (an assessment, an alert, a screen) to the plan's review.

    Intake publishes an alert before its assessment, on another topic, so the plan may not exist yet: the
    input is then kept as pending, and the plan takes it when it is created. The partition never waits.
    """
    try:
        await change_plan(store, policy, episode_id, _adding(learned), applied)
    except CarePlanError as error:
        if error.code != "no_care_plan":
            raise
        await store.keep_pending(episode_id, learned, applied)
        await adopt_pending(store, policy, episode_id)  # the plan may have been created meanwhile


async def adopt_pending(store: CarePlanStore, policy: CarePolicy, episode_id: str) -> int:
    """Give the plan the inputs that arrived before it, each once (their event's key is applied); none while
    there is no plan yet."""
    pending = await store.pending(episode_id)
    for waiting in pending:
        try:
            await change_plan(store, policy, episode_id, _adding(waiting.input), waiting.applied)
        except CarePlanError as error:
            if error.code == "no_care_plan":
                return 0
            raise
        await store.drop_pending(waiting.applied)
    return len(pending)


def _adding(learned: CareInput) -> Callable[[CarePlan, datetime], Decision[None]]:
    def decide(plan: CarePlan, _now: datetime) -> Decision[None]:
        return plan.model_copy(update={"inputs": [*plan.inputs, learned]}), [], None

    return decide
