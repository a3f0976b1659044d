"""Changing a care plan: load it, decide, review what follows, and store the plan, its events and its
next timer in one version-checked write (retried when another writer won). Every path that changes a
plan (HTTP, Kafka, timers) goes through ``change_plan``; each change a person asks for is a named use case here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NoReturn, TypeVar, overload

from pymongo.errors import PyMongoError

from services.common.bulk import EPISODE_RECORDS
from services.common.change_path import ATTEMPTS, CONFLICT, Conflict, Decide, Record, change, retry
from services.common.dependencies import DependencyDown
from services.common.outbox import ConcurrentChange
from services.common.utc import utc_now
from stepwise_contract import (
    FAMILY_SESSION,
    AssessmentCompleted,
    CareLevel,
    CloudEvent,
    DischargeReason,
    EventData,
    Program,
    ScheduledSession,
    SessionKind,
    SheetEntry,
    Track,
    Weekday,
    new_event,
)

from .consents import IntakeConsents
from .domain import care_plan as plan_rules
from .domain import care_team as care_team_rules
from .domain import groups as group_rules
from .domain import treatment_plan as treatment_rules
from .domain.care_plan import assign_care_level, record_attendance
from .domain.groups import Joined, Placement, Waitlisted, join_from_waitlist, wanted_groups
from .domain.model import (
    AcknowledgedHow,
    AttendanceRecord,
    AttendanceStatus,
    CareInput,
    CarePlan,
    CarePlanError,
    Problem,
    ReviewOutcome,
    StepRecommendation,
)
from .domain.policy import CarePolicy, ProgramGroup
from .domain.review import next_check, review
from .settings import SOURCE
from .store import CarePlanStore, PendingInput, StoredPending, StoredPlan, WaitlistKey

log = logging.getLogger(__name__)

T = TypeVar("T")
Decision = tuple[CarePlan, list[EventData], T]
PlanState = tuple[CarePlan, datetime | None]
"""A plan with its next timer: a review that only moves the timer is a change to store all the same."""


@overload
async def change_plan(
    store: CarePlanStore,
    policy: CarePolicy,
    episode_id: str,
    decide: Callable[[CarePlan, datetime], Decision[T]],
    applied: None = None,
) -> T: ...


@overload
async def change_plan(
    store: CarePlanStore,
    policy: CarePolicy,
    episode_id: str,
    decide: Callable[[CarePlan, datetime], Decision[T]],
    applied: str | None,
) -> T | None: ...


async def change_plan(
    store: CarePlanStore,
    policy: CarePolicy,
    episode_id: str,
    decide: Callable[[CarePlan, datetime], Decision[T]],
    applied: str | None = None,
) -> T | None:
    """Apply ``decide`` to the episode's plan; None when ``applied`` (an event's source#id) was applied before.

    An event's change (``applied``) is decided on the plan the store holds, if it wrote it last (no read): the write is
    version-checked, so another writer meanwhile makes it read and decide again; and a decision that refuses the held
    plan (an unknown session, say) is made again on the plan read, so that no event is refused on a stale plan."""
    reviewed = _reviewed(policy, decide)
    if applied is not None and isinstance(store.held(episode_id), StoredPlan):
        try:
            return await change(_plan_of(store, episode_id, held=True), _refusing_held(reviewed), _no_plan,
                                applied=applied)  # fmt: skip
        except _RefusedHeld:
            store.forget(episode_id)
    return await change(_plan_of(store, episode_id), reviewed, _no_plan, applied=applied)


class _RefusedHeld(Exception):
    """A decision raised on a plan that may have been held: decided again on the plan read."""


def _refusing_held(decide: Decide[PlanState, T]) -> Decide[PlanState, T]:
    def deciding(state: PlanState, now: datetime) -> tuple[PlanState, Sequence[EventData], T]:
        try:
            return decide(state, now)
        except Exception as error:
            raise _RefusedHeld from error

    return deciding


def _plan_of(store: CarePlanStore, episode_id: str, *, held: bool = False) -> Record[StoredPlan, PlanState]:
    async def save(stored: StoredPlan, state: PlanState, events: Sequence[EventData], applied: str | None) -> bool:
        plan, timer = state
        saved = await store.save(stored, plan, _envelopes(events), applied, timer)
        if saved:
            await _leave_seat(store, stored.plan, plan)
        return saved

    return Record(
        load=lambda: store.load(episode_id) if held else store.get(episode_id),
        state=lambda stored: (stored.plan, stored.next_check_at),
        save=save,
        applied=lambda stored: stored.applied_events,
    )


def _envelopes(events: Sequence[EventData]) -> list[CloudEvent[EventData]]:
    return [new_event(event, source=SOURCE) for event in events]


def _reviewed(policy: CarePolicy, decide: Callable[[CarePlan, datetime], Decision[T]]) -> Decide[PlanState, T]:
    """The decision, then the review of what follows from the plan it leaves, and the plan's next timer."""

    def reviewed(state: PlanState, now: datetime) -> tuple[PlanState, list[EventData], T]:
        plan, events, result = decide(state[0], now)
        plan, more = review(plan, policy, now)
        return (plan, next_check(plan, policy, now)), [*events, *more], result

    return reviewed


def _no_plan() -> NoReturn:
    raise CarePlanError("no_care_plan", "no care plan for this episode")


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
    """A seat in the first group of the level and track with room, or the waitlist (behind those waiting: counted,
    never read). Groups without a capacity have no waitlist of their own (a plan left waiting for one by an earlier
    policy is admitted by the next timer pass), so placing a plan in one reads no waitlist."""
    groups = wanted_groups(policy, level, track, program)
    for group in groups:
        if group.capacity is not None and await store.holds_seat(group.group_id, episode_id):
            return Joined(group)  # held before: a redelivery, or a retry after a failed write
    capped = any(group.capacity is not None for group in groups)
    ahead = await store.waiting((level, track, program), other_than=episode_id) if capped else 0
    if not ahead:
        for group in groups:
            if await store.claim_seat(group, episode_id, utc_now()):
                return Joined(group)
    return Waitlisted(groups, level, track, position=ahead + 1)


@overload
async def change_plan_placed(
    store: CarePlanStore,
    policy: CarePolicy,
    episode_id: str,
    placement: Placement,
    decide: Callable[[CarePlan, datetime], Decision[T]],
    applied: None = None,
) -> T: ...


@overload
async def change_plan_placed(
    store: CarePlanStore,
    policy: CarePolicy,
    episode_id: str,
    placement: Placement,
    decide: Callable[[CarePlan, datetime], Decision[T]],
    applied: str | None,
) -> T | None: ...


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


async def _change_holding(
    store: CarePlanStore,
    policy: CarePolicy,
    episode_id: str,
    placement: Placement | None,
    decide: Callable[[CarePlan, datetime], Decision[T]],
) -> T:
    """``change_plan``, or ``change_plan_placed`` when a seat was held for the change."""
    if placement is None:
        return await change_plan(store, policy, episode_id, decide)
    return await change_plan_placed(store, policy, episode_id, placement, decide)


async def _let_go_unless_taken(store: CarePlanStore, episode_id: str, placement: Placement | None) -> None:
    if isinstance(placement, Joined) and placement.group.capacity is not None:  # no capacity: no seat was taken
        stored = await store.get(episode_id)
        if stored is None or _seat_of(stored.plan) != placement.group.group_id:
            await store.release_seat(placement.group.group_id, episode_id)


async def start_plan(
    store: CarePlanStore, policy: CarePolicy, assessment: AssessmentCompleted, applied: str, clinic_timezone: str
) -> CarePlan | None:
    """The care plan an intake assessment starts, in a group of its level or on the waitlist, stored with its
    events; None when the episode has a plan already (a redelivery, another instance). Inputs of the episode that came
    earlier in the same consumer batch (intake's measure of this assessment, usually: ``learn``) are taken by the plan
    as it is made, in the same write; when the episode has a plan already, they are given to it."""
    placement = None
    if assessment.level in policy.offered_levels:
        track = assessment.track or policy.default_track
        placement = await hold_place(store, policy, assessment.episode_id, assessment.level, track,
                                     assessment.program)  # fmt: skip
    episode = EPISODE_RECORDS.get()
    held: list[InBatch] = [] if episode is None else episode.take(_learn_in_turn)
    kept = [waiting.pending for waiting in held]
    try:
        made = await retry(lambda: _make_plan(store, policy, assessment, applied, clinic_timezone, placement, kept))
    finally:
        await _let_go_unless_taken(store, assessment.episode_id, placement)
    if made is None:
        await _learn_in_turn(held)
    return made


async def _make_plan(
    store: CarePlanStore,
    policy: CarePolicy,
    assessment: AssessmentCompleted,
    applied: str,
    clinic_timezone: str,
    placement: Placement | None,
    kept: Sequence[PendingInput] = (),
) -> CarePlan | Conflict | None:
    """One attempt: the plan the assessment makes, stored with its events in one write: an insert, or, when inputs
    came before it (kept in its document), a version-checked write over them that takes each (reviewed as any change
    of the plan is); ``kept``: inputs it takes as well (the consumer batch's). None when the episode has a plan
    already."""
    episode_id, now = assessment.episode_id, utc_now()
    assigned, events = assign_care_level(assessment, policy, clinic_timezone, now, placement)
    waiting = store.held(episode_id)
    if not isinstance(waiting, StoredPending):  # none kept here: the insert finds out whether any are
        (plan, next_at), taken, keys = _taking(policy, assigned, events, applied, kept, now)
        if await store.create(plan, _envelopes(taken), keys, next_at):
            return plan
        waiting = await store.read(episode_id)
        if not isinstance(waiting, StoredPending):
            return None if waiting is not None else CONFLICT
    (plan, next_at), taken, keys = _taking(policy, assigned, events, applied, [*waiting.inputs, *kept], now)
    written = await store.create_over(waiting, plan, _envelopes(taken), keys, next_at)
    return plan if written else CONFLICT


def _taking(
    policy: CarePolicy,
    plan: CarePlan,
    events: Sequence[EventData],
    applied: str,
    inputs: Sequence[PendingInput],
    now: datetime,
) -> tuple[PlanState, list[EventData], list[str]]:
    """The new plan with each input taken (reviewed as any change of the plan is) and its next timer, its events and
    theirs, and the keys of the events applied."""
    if not inputs:
        return (plan, next_check(plan, policy, now)), list(events), [applied]
    state: PlanState = (plan, None)
    taken = list(events)
    for waiting in inputs:  # each review works the timer out: the last one's is the plan's
        state, more, _ = _reviewed(policy, _adding(waiting.input))(state, now)
        taken += more
    return state, taken, [applied, *(waiting.applied for waiting in inputs)]


ADMITTED_PER_PASS = 100
"""Plans a timer pass looks at, longest waiting first, among those waiting for groups that may have room: the pass
reads no more whatever the waitlists' length (more room than that is given at the next pass)."""


def _places_with_room(policy: CarePolicy, held: dict[str, int]) -> list[WaitlistKey]:
    """What plans may wait for (level, track, program of a group) where a group may have room: one without a
    capacity, or with fewer seats held than its capacity (members who hold none are counted when a seat is claimed)."""
    places = {(g.level, g.track, program): None for g in policy.groups for program in g.programs}
    return [(level, track, program) for level, track, program in places
            if any(g.capacity is None or held.get(g.group_id, 0) < g.capacity
                   for g in wanted_groups(policy, level, track, program))]  # fmt: skip


async def admit_waitlisted(store: CarePlanStore, policy: CarePolicy) -> int:
    """Give freed places to the plans waiting longest, each into the first of its groups with room: only the heads of
    the waitlists whose groups may have room are read (``ADMITTED_PER_PASS`` at most), never a whole waitlist; with
    nobody waiting (the common case), one index entry."""
    if not await store.anyone_waiting():
        return 0
    capped = [group.group_id for group in policy.groups if group.capacity is not None]
    places = _places_with_room(policy, await store.seats_held(capped))
    full: set[tuple[str, ...]] = set()
    admitted = 0
    for waiting in await store.waiting_first(places, ADMITTED_PER_PASS):
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
    decide = _attending(session_id, status, notice_given_at, minutes, group_id, correction)
    return await change_plan(store, policy, episode_id, decide, applied)


async def record_for_episode(
    store: CarePlanStore,
    policy: CarePolicy,
    episode_id: str,
    session_id: str,
    status: AttendanceStatus,
    notice_given_at: datetime | None = None,
    minutes: int | None = None,
) -> Recorded:
    """Staff record (or correct) a session's attendance on the episode's plan; raises CarePlanError."""
    decide = _attending(session_id, status, notice_given_at, minutes)
    return await change_plan(store, policy, episode_id, decide)


def _attending(
    session_id: str,
    status: AttendanceStatus,
    notice_given_at: datetime | None,
    minutes: int | None,
    group_id: str | None = None,
    correction: bool = True,
) -> Callable[[CarePlan, datetime], Decision[Recorded]]:
    def decide(plan: CarePlan, now: datetime) -> Decision[Recorded]:
        attendance, missed = record_attendance(plan, session_id, status, now, notice_given_at, minutes=minutes,
                                               group_id=group_id, correction=correction)  # fmt: skip
        changed = attendance is not plan.attendance
        recorded = Recorded(attendance[session_id], changed)
        return plan.model_copy(update={"attendance": attendance}), [missed] if missed else [], recorded

    return decide


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


async def learn(
    store: CarePlanStore,
    policy: CarePolicy,
    episode_id: str,
    learned: CareInput,
    applied: str,
    *,
    before_plan: bool = False,
) -> None:
    """Feed what intake recorded (an assessment, an alert, a screen) to the plan's review.

    Intake publishes an alert before its assessment, on another topic, so the plan may not exist yet: the
    input is then kept in the plan's document, and the plan takes it when it is made. The partition never waits.
    ``before_plan``: the input usually comes before its plan (intake's measure of the assessment that makes it). In a
    consumer batch it waits for the end of the episode's records (and so do the episode's inputs after it): the
    assessment, when it is among them, makes the plan with them in one write (``start_plan``); else they are kept
    then, as outside a batch: at once, and given to the plan only if the plan is there (the keeping finds it)."""
    episode = EPISODE_RECORDS.get()
    if episode is not None and store.held(episode_id) is None and (before_plan or episode.holds(_learn_in_turn)):
        # Held in the order they came: one of the episode's inputs waits already.
        episode.collect(_learn_in_turn, InBatch(store, policy, PendingInput(applied, learned, episode_id)))
        return
    await _learn_now(store, policy, episode_id, learned, applied, before_plan=before_plan)


@dataclass(frozen=True)
class InBatch:
    """An input held until the end of its episode's records in a consumer batch (``learn``)."""

    store: CarePlanStore
    policy: CarePolicy
    pending: PendingInput


async def _learn_in_turn(held: Sequence[InBatch]) -> None:
    """Inputs a batch held for their plan that no plan took as it was made: each learnt as outside a batch."""
    for waiting in held:
        kept = waiting.pending
        await _learn_now(waiting.store, waiting.policy, kept.episode_id, kept.input, kept.applied, before_plan=True)


async def _learn_now(
    store: CarePlanStore, policy: CarePolicy, episode_id: str, learned: CareInput, applied: str, *, before_plan: bool
) -> None:
    held = store.held(episode_id)
    if (isinstance(held, StoredPending) or (before_plan and held is None)) and await store.park(
        episode_id, learned, applied
    ):
        return
    for _ in range(ATTEMPTS):
        try:
            await change_plan(store, policy, episode_id, _adding(learned), applied)
            return
        except CarePlanError as error:
            if error.code != "no_care_plan":
                raise
        if await store.park(episode_id, learned, applied):
            return  # else the plan was made meanwhile: it takes the input
    raise ConcurrentChange("the care plan kept changing; try again")


KEPT_APART_PER_PASS = 100
"""Inputs an earlier version kept apart that a timer pass takes (a few, left at an upgrade)."""


async def adopt_kept_apart(store: CarePlanStore, policy: CarePolicy) -> int:
    """The inputs an earlier version kept apart (``pending_inputs``, left at an upgrade): each to its plan, or kept in
    its plan's document while it has none. One read of an empty collection when none is left."""
    kept = await store.kept_apart(limit=KEPT_APART_PER_PASS)
    for episode_id in dict.fromkeys(waiting.episode_id for waiting in kept):
        its = [waiting for waiting in kept if waiting.episode_id == episode_id]
        await adopt_pending(store, policy, episode_id, its)
    return len(kept)


async def adopt_pending(
    store: CarePlanStore, policy: CarePolicy, episode_id: str, kept: Sequence[PendingInput] | None = None
) -> int:
    """Give the plan the inputs an earlier version kept apart for it (``kept``, else read), each once (their event's
    key is applied); while there is no plan, they are kept in its document instead. How many the plan took."""
    kept = await store.kept_apart({"episode_id": episode_id}) if kept is None else kept
    adopted = 0
    for waiting in kept:
        try:
            await change_plan(store, policy, episode_id, _adding(waiting.input), waiting.applied)
            adopted += 1
        except CarePlanError as error:
            if error.code != "no_care_plan":
                raise
            await learn(store, policy, episode_id, waiting.input, waiting.applied)
        await store.drop_pending(waiting.applied)
    return adopted


def _adding(learned: CareInput) -> Callable[[CarePlan, datetime], Decision[None]]:
    def decide(plan: CarePlan, _now: datetime) -> Decision[None]:
        return plan.model_copy(update={"inputs": [*plan.inputs, learned]}), [], None

    return decide


# What staff ask of a plan (the HTTP API): each a named change through ``change_plan``.

NO_FAMILY_CONSENT = "no consent in force names a family member or support for appointments: record one at intake"


async def book_appointment(
    store: CarePlanStore,
    policy: CarePolicy,
    consents: IntakeConsents,
    episode_id: str,
    kind: SessionKind,
    starts_at: datetime,
    minutes: int | None = None,
) -> ScheduledSession:
    """Book an own session; a family session only while a consent in force names a family member or support
    (asked of intake first: ``consent_unchecked`` while it cannot say)."""
    if kind == FAMILY_SESSION:
        try:
            found = await consents.family_consent(episode_id)
        except DependencyDown as error:
            raise CarePlanError("consent_unchecked", f"cannot check consent: {error}") from None
        if not found:
            raise CarePlanError("no_family_consent", NO_FAMILY_CONSENT)

    def decide(plan: CarePlan, now: datetime) -> Decision[ScheduledSession]:
        booked, changed, session_id = group_rules.book_appointment(plan, kind, starts_at, minutes, policy, now)
        return booked, [changed], next(a for a in booked.appointments if a.session_id == session_id)

    return await change_plan(store, policy, episode_id, decide)


async def cancel_appointment(store: CarePlanStore, policy: CarePolicy, episode_id: str, session_id: str) -> CarePlan:
    """Cancel an own session that has not begun."""

    def decide(plan: CarePlan, now: datetime) -> Decision[CarePlan]:
        try:
            updated, changed = group_rules.cancel_appointment(plan, session_id, now)
        except CarePlanError as error:
            if error.code != "appointment_in_past":
                raise
            # here the session asked for is at fault (booking, it is the start asked for)
            raise CarePlanError(error.code, str(error), ("path", "session_id")) from None
        return updated, [changed], updated

    return await change_plan(store, policy, episode_id, decide)


async def decide_recommendation(
    store: CarePlanStore,
    policy: CarePolicy,
    episode_id: str,
    recommendation_id: str,
    accept: bool,
    reason: str | None,
    by: str,
) -> StepRecommendation:
    """A clinician accepts or declines a step recommendation; accepting a move to a level offered here holds a
    place in a group of it (or on its waitlist) first."""
    placement = await _place_recommended(store, policy, episode_id, recommendation_id) if accept else None

    def decide(plan: CarePlan, now: datetime) -> Decision[StepRecommendation]:
        return plan_rules.settle_recommendation(plan, recommendation_id, accept, reason, policy, now, placement, by)

    return await _change_holding(store, policy, episode_id, placement, decide)


async def _place_recommended(
    store: CarePlanStore, policy: CarePolicy, episode_id: str, recommendation_id: str
) -> Placement | None:
    stored = await store.get(episode_id)
    plan = stored.plan if stored else None
    target = next((r for r in plan.recommendations if r.recommendation_id == recommendation_id), None) if plan else None
    if plan is None or target is None or target.status != "open" or target.to_level not in policy.offered_levels:
        return None
    track = plan.schedule.track if plan.schedule else policy.default_track
    return await hold_place(store, policy, episode_id, target.to_level, track, plan.program)


async def change_track(store: CarePlanStore, policy: CarePolicy, episode_id: str, track: Track) -> CarePlan:
    """The patient's track from now on: the plan moves to a group of it (a place held first), or waits for one."""
    stored = await store.get(episode_id)
    plan = stored.plan if stored else None
    placement: Placement | None = None
    moving = plan and plan.status == "active" and plan.schedule and plan.schedule.track != track
    if plan and moving and policy.groups_for(plan.level, track, plan.program):
        placement = await hold_place(store, policy, episode_id, plan.level, track, plan.program)

    def decide(current: CarePlan, now: datetime) -> Decision[CarePlan]:
        # No place held: the plan had that track already, had ended, or no group of the track takes its
        # program; the rule says which. Only a plan changed since (another writer) moves without a place held:
        # it waits for the groups of its level and the track (its position unknown here, the first).
        groups = wanted_groups(policy, current.level, track, current.program)
        held = placement or Waitlisted(groups, current.level, track, position=1)
        moved, events = group_rules.change_track(current, track, held, policy, now)
        return moved, events, moved

    return await _change_holding(store, policy, episode_id, placement, decide)


async def set_schedule(
    store: CarePlanStore,
    policy: CarePolicy,
    episode_id: str,
    track: Track,
    weekdays: list[Weekday],
    hours_per_session: float,
    weeks: int,
) -> CarePlan:
    """A custom calendar from now on."""

    def decide(plan: CarePlan, now: datetime) -> Decision[CarePlan]:
        updated, changed = plan_rules.set_calendar(plan, track, weekdays, hours_per_session, weeks, policy, now)
        return updated, [changed], updated

    return await change_plan(store, policy, episode_id, decide)


async def set_care_team(
    store: CarePlanStore, policy: CarePolicy, episode_id: str, subject: str, display_name: str
) -> CarePlan:
    """The episode's primary clinician (``iop.care_team.changed`` when it is another person)."""

    def decide(plan: CarePlan, now: datetime) -> Decision[CarePlan]:
        updated, events = care_team_rules.assign_primary_clinician(plan, subject, display_name, now)
        return updated, list(events), updated

    return await change_plan(store, policy, episode_id, decide)


async def graduate(
    store: CarePlanStore, policy: CarePolicy, episode_id: str, by: str, reason: str | None = None
) -> CarePlan:
    """A clinician graduates the episode (below the level's minimum of sessions attended, only with a reason)."""

    def decide(plan: CarePlan, now: datetime) -> Decision[CarePlan]:
        ended, event = plan_rules.graduate_by_clinician(plan, policy, now, by, reason)
        return ended, [event], ended

    return await change_plan(store, policy, episode_id, decide)


async def discharge(
    store: CarePlanStore, policy: CarePolicy, episode_id: str, reason_code: DischargeReason, by: str
) -> CarePlan:
    def decide(plan: CarePlan, now: datetime) -> Decision[CarePlan]:
        ended, event = plan_rules.discharge(plan, now, reason_code, by)
        return ended, [event], ended

    return await change_plan(store, policy, episode_id, decide)


# The treatment plan (domain/treatment_plan.py): versions, signing, the patient's agreement, reviews.


async def put_treatment_plan(
    store: CarePlanStore, policy: CarePolicy, episode_id: str, problems: list[Problem], by: str, timezone: str
) -> CarePlan:
    """A new version of the treatment plan (the same problems as the latest change nothing)."""

    def decide(plan: CarePlan, now: datetime) -> Decision[CarePlan]:
        updated = treatment_rules.put_version(plan, problems, by, timezone, now)
        return updated, [], updated

    return await change_plan(store, policy, episode_id, decide)


async def sign_treatment_plan(
    store: CarePlanStore, policy: CarePolicy, episode_id: str, version: int, by: str
) -> CarePlan:
    """Sign the latest version (``iop.treatment_plan.signed``): the plan in force, and a review."""

    def decide(plan: CarePlan, now: datetime) -> Decision[CarePlan]:
        signed, events = treatment_rules.sign(plan, version, by, policy.treatment_plan, policy.closures, now)
        return signed, events, signed

    return await change_plan(store, policy, episode_id, decide)


async def acknowledge_treatment_plan(
    store: CarePlanStore,
    policy: CarePolicy,
    episode_id: str,
    version: int,
    how: AcknowledgedHow,
    agreed_at: datetime,
    by: str,
) -> CarePlan:
    """Staff record the patient's agreement to a signed version."""

    def decide(plan: CarePlan, now: datetime) -> Decision[CarePlan]:
        agreed = treatment_rules.acknowledge(plan, version, how, agreed_at, by, now)
        return agreed, [], agreed

    return await change_plan(store, policy, episode_id, decide)


async def review_treatment_plan(
    store: CarePlanStore, policy: CarePolicy, episode_id: str, outcome: ReviewOutcome, by: str
) -> CarePlan:
    """A clinician's review of the plan in force (``iop.treatment_plan.reviewed``): the reviews due are done, the next
    follows."""

    def decide(plan: CarePlan, now: datetime) -> Decision[CarePlan]:
        reviewed, events = treatment_rules.record_review(plan, outcome, by, policy.treatment_plan, policy.closures, now)
        return reviewed, events, reviewed

    return await change_plan(store, policy, episode_id, decide)
