"""Changing a care plan: load it, decide, review what follows, and store the plan, its events and its
next timer in one version-checked write (retried when another writer won). Every path that changes a
plan (HTTP, Kafka, timers) goes through ``change_plan``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeVar

from pymongo.errors import PyMongoError

from services.common.outbox import retry_on_conflict
from services.common.utc import utc_now
from stepwise_contract import AssessmentCompleted, CareLevel, EventData, Program, SheetEntry, Track, new_event

from .domain.care_plan import assign_care_level, record_attendance
from .domain.groups import Joined, Placement, Waitlisted, join_from_waitlist, wanted_groups
from .domain.model import AttendanceRecord, AttendanceStatus, CareInput, CarePlan, CarePlanError
from .domain.policy import CarePolicy, ProgramGroup
from .domain.review import next_check, review
from .settings import SOURCE
from .store import CarePlanStore

log = logging.getLogger(__name__)

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
        if saved:
            await _leave_seat(store, stored.plan, plan)
        return (result,) if saved else None

    return (await retry_on_conflict(attempt))[0]


def _seat_of(plan: CarePlan) -> str | None:
    return plan.group.group_id if plan.group is not None and plan.status == "active" else None


async def _leave_seat(store: CarePlanStore, before: CarePlan, after: CarePlan) -> None:
    """The plan left its group (a new level or calendar, the end of the episode): its seat is free.

    After the plan's write, which stands whatever happens here: a seat not released (a crash, the store
    gone) is one the next claim that finds the group full frees (``STALE_SEAT``)."""
    left = _seat_of(before)
    if left is not None and left != _seat_of(after):
        try:
            await store.release_seat(left, after.episode_id)
        except PyMongoError as error:
            log.warning("episode %s: seat in %s not released (%s): freed when the group is next full",
                        after.episode_id, left, type(error).__name__)  # fmt: skip


async def hold_place(
    store: CarePlanStore, policy: CarePolicy, episode_id: str, level: CareLevel, track: Track, program: Program
) -> Placement:
    """A seat in the first group of the level and track with room, or the waitlist (behind those waiting)."""
    groups = wanted_groups(policy, level, track, program)
    for group in groups:
        if group.capacity is not None and await store.holds_seat(group.group_id, episode_id):
            return Joined(group)  # held before: a redelivery, or a retry after a failed write
    wanted = (level, track, program)
    waiting = [w for w in await store.waitlisted()
               if w.episode_id != episode_id and (w.place.level, w.place.track, w.program) == wanted]  # fmt: skip
    if not waiting:
        for group in groups:
            if await store.claim_seat(group, episode_id, utc_now()):
                return Joined(group)
    return Waitlisted(groups, level, track, position=len(waiting) + 1)


async def change_plan_placed(
    store: CarePlanStore,
    policy: CarePolicy,
    episode_id: str,
    placement: Placement,
    decide: Callable[[CarePlan, datetime], Decision[T]],
    applied: str | None = None,
) -> T | None:
    """``change_plan`` with a seat held beforehand: a seat the plan did not take (a refusal, an error) is let go."""
    try:
        return await change_plan(store, policy, episode_id, decide, applied)
    finally:
        await _let_go_unless_taken(store, episode_id, placement)


async def _let_go_unless_taken(store: CarePlanStore, episode_id: str, placement: Placement | None) -> None:
    if isinstance(placement, Joined) and placement.group.capacity is not None:  # no capacity: no seat was taken
        stored = await store.get(episode_id)
        if stored is None or _seat_of(stored.plan) != placement.group.group_id:
            await store.release_seat(placement.group.group_id, episode_id)


async def start_plan(
    store: CarePlanStore, policy: CarePolicy, assessment: AssessmentCompleted, applied: str, clinic_timezone: str
) -> CarePlan | None:
    """The care plan an intake assessment starts, in a group of its level or on the waitlist, stored with its
    events; None when the episode has a plan already (a redelivery, another instance)."""
    placement = None
    if assessment.level in policy.offered_levels:
        track = assessment.track or policy.default_track
        placement = await hold_place(store, policy, assessment.episode_id, assessment.level, track,
                                     assessment.program)  # fmt: skip
    try:
        plan, events = assign_care_level(assessment, policy, clinic_timezone, utc_now(), placement)
        envelopes = [new_event(event, source=SOURCE) for event in events]
        created = await store.create(plan, envelopes, applied, next_check(plan, policy, utc_now()))
        return plan if created else None
    finally:
        await _let_go_unless_taken(store, assessment.episode_id, placement)


async def admit_waitlisted(store: CarePlanStore, policy: CarePolicy) -> int:
    """Give freed places to the plans waiting longest, each into the first of its groups with room."""
    full: set[tuple[str, ...]] = set()
    admitted = 0
    for waiting in await store.waitlisted():
        key = (waiting.place.level.value, waiting.place.track, waiting.program)
        if key in full:
            continue
        group = None
        for candidate in wanted_groups(policy, waiting.place.level, waiting.place.track, waiting.program):
            if await store.claim_seat(candidate, waiting.episode_id, utc_now()):
                group = candidate
                break
        if group is None:
            full.add(key)
            continue

        def decide(plan: CarePlan, now: datetime, group: ProgramGroup = group) -> Decision[bool]:
            joined, events = join_from_waitlist(plan, group, policy, now)
            return joined, [*events], bool(events)

        if await change_plan_placed(store, policy, waiting.episode_id, Joined(group), decide):
            admitted += 1
    return admitted


@dataclass(frozen=True)
class Recorded:
    record: AttendanceRecord
    changed: bool
    """False when the same was recorded before (a repeated sheet or report)."""


async def record_session_attendance(
    store: CarePlanStore,
    policy: CarePolicy,
    episode_id: str,
    session_id: str,
    status: AttendanceStatus,
    notice_given_at: datetime | None = None,
    applied: str | None = None,
    *,
    minutes: int | None = None,
    group_id: str | None = None,
    correction: bool = True,
) -> Recorded | None:
    """Record a session's attendance (and, for a miss, its event); raises CarePlanError. With ``group_id``
    (a line of a group's sheet) the session must be that group's, and a different record made by staff stands
    unless ``correction``."""

    def decide(plan: CarePlan, now: datetime) -> Decision[Recorded]:
        attendance, missed = record_attendance(plan, session_id, status, now, notice_given_at, minutes=minutes,
                                               group_id=group_id, correction=correction)  # fmt: skip
        changed = attendance is not plan.attendance
        recorded = Recorded(attendance[session_id], changed)
        return plan.model_copy(update={"attendance": attendance}), [missed] if missed else [], recorded

    return await change_plan(store, policy, episode_id, decide, applied)


@dataclass(frozen=True)
class SheetLine:
    """What became of one line of a group session's sheet."""

    episode_id: str
    outcome: Literal["recorded", "unchanged", "rejected", "applied_before"]
    record: AttendanceRecord | None = None
    code: str | None = None
    detail: str | None = None


async def record_sheet(
    store: CarePlanStore,
    policy: CarePolicy,
    group_id: str,
    session_id: str,
    lines: Sequence[SheetEntry],
    applied: str | None = None,
) -> list[SheetLine]:
    """Each line through its member's plan (concurrently: they are different plans); a line that cannot be
    stored says why, and the others are stored. ``applied`` (a command's source#id) makes each line once."""
    seen: set[str] = set()

    async def one(line: SheetEntry) -> SheetLine:
        if line.episode_id in seen:
            return SheetLine(
                line.episode_id, "rejected", code="listed_twice", detail="the member is on the sheet twice"
            )
        seen.add(line.episode_id)
        key = f"{applied}#{line.episode_id}" if applied else None
        try:
            done = await record_session_attendance(
                store, policy, line.episode_id, session_id, line.status, line.notice_given_at, key,
                minutes=line.minutes, group_id=group_id, correction=False,
            )  # fmt: skip
        except CarePlanError as error:
            code = "not_a_member" if error.code in ("no_care_plan", "unknown_session") else error.code
            return SheetLine(line.episode_id, "rejected", code=code, detail=str(error))
        if done is None:
            return SheetLine(line.episode_id, "applied_before")
        return SheetLine(line.episode_id, "recorded" if done.changed else "unchanged", done.record)

    return list(await asyncio.gather(*(one(line) for line in lines)))


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
