"""Due measures: which instruments the patient is asked to answer when, and what became of each ask.

The policy (``measures``) names what is measured when, per level: a recurring series from the start of the
level, the episode's instruments at admission, at each level change and before a planned discharge, and
alumni follow-ups after graduation. Each due measure has a window around its due day, in the clinic's local
days (so a window spans whole days across a DST change); a due day or a window's last day that falls on a
clinic closure moves to the next open day. The intake assessment is the admission measure: the episode's
instruments are asked at admission only when it scored none of them. The plan holds each measure whose window opened:
``due`` → ``overdue`` (window closed) → ``missed`` (the policy's days later), or ``done`` once every
instrument is recorded (``iop.measure.recorded``) inside the window. Pure: the plan, the policy and the time in;
ids derived (uuid5), so reviewing twice changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.common.ids import derived_id
from services.common.utc import local_day
from stepwise_contract import INSTRUMENTS, CareLevel, EventData, MeasureDue, MeasureOverdue, MeasureReason

from .model import CareInput, CarePlan, DueMeasure

P = TypeVar("P", bound=BaseModel)

DUE_MEASURES = uuid.UUID("5d0c1b5e-8f0e-4a57-9a55-2b4e4c2a8e61")
"""The namespace of due-measure ids: the episode's instrument set asked for one reason from one window start."""


class RecurringMeasure(BaseModel):
    """Instruments asked for every ``every_days`` days from the start of the level."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instruments: list[str] = Field(min_length=1)
    every_days: int = Field(ge=1, le=365)


class MeasurePolicy(BaseModel):
    """The ``measures`` section of the care-plan policy: what is measured when, and how long a window is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_days: int = Field(default=2, ge=0, le=30, description="A window runs this many days either side.")
    missed_after_days: int = Field(default=7, ge=0, le=90, description="Overdue this many days: missed.")
    recurring: dict[CareLevel, list[RecurringMeasure]] = Field(default_factory=dict)
    episode_instruments: list[str] = Field(
        default_factory=lambda: ["phq9", "gad7"],
        description="Asked at admission, at each level change and before a planned discharge.",
    )
    planned_discharge_days_before: int = Field(default=3, ge=0, le=30)
    alumni_days: list[int] = Field(default_factory=list, description="Days after graduation.")
    alumni_instruments: list[str] = Field(default_factory=lambda: ["phq9", "gad7"])

    @model_validator(mode="after")
    def _known_instruments(self) -> MeasurePolicy:
        named = [*self.episode_instruments, *self.alumni_instruments]
        named += [i for series in self.recurring.values() for rule in series for i in rule.instruments]
        unknown = sorted(set(named) - set(INSTRUMENTS))
        if unknown:
            raise ValueError(f"unknown instrument {unknown[0]!r} (known: {', '.join(INSTRUMENTS)})")
        return self


@dataclass(frozen=True)
class Window:
    """A due measure's local due day and its window, both ends in UTC (opens at local midnight)."""

    due_on: date
    opens_at: datetime
    closes_at: datetime


@dataclass(frozen=True)
class Wanted:
    """A measure the policy asks for, with its window."""

    instruments: tuple[str, ...]
    reason: MeasureReason
    window: Window


def open_day(day: date, closures: Collection[date]) -> date:
    """The day itself, or the first day after it the clinic is open."""
    while day in closures:
        day += timedelta(days=1)
    return day


def window(day: date, policy: MeasurePolicy, timezone: str, closures: Collection[date]) -> Window:
    """The window of a measure due on ``day`` (moved off closures): from the local start of ``window_days``
    before it to the local end of ``window_days`` after it (that last day moved off closures too)."""
    zone = ZoneInfo(timezone)
    due_on = open_day(day, closures)
    first = due_on - timedelta(days=policy.window_days)
    last = open_day(due_on + timedelta(days=policy.window_days), closures)
    opens = datetime.combine(first, time(0), tzinfo=zone).astimezone(UTC)
    closes = datetime.combine(last + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return Window(due_on, opens, closes)


def wanted(plan: CarePlan, policy: MeasurePolicy, closures: Collection[date], now: datetime) -> list[Wanted]:
    """Every measure the policy asks of the plan up to the first recurring one still to open after ``now``."""
    if plan.schedule is None or plan.status not in ("active", "graduated"):
        return []
    zone = plan.schedule.timezone
    days = [*_episode_days(plan, policy, zone), *_recurring_days(plan, policy, zone, now)]
    return [Wanted(tuple(instruments), reason, window(day, policy, zone, closures))
            for instruments, reason, day in days if instruments]  # fmt: skip


def _episode_days(plan: CarePlan, policy: MeasurePolicy, zone: str) -> Iterator[tuple[list[str], MeasureReason, date]]:
    instruments = policy.episode_instruments
    for period in plan.level_history:
        if period.reason != "assigned":
            yield instruments, "level_change", local_day(period.since, zone)
            continue
        # The intake assessment is the admission measure; only one that scored none of them leaves it to ask.
        if not set(instruments) & set(plan.admission_scored):
            yield instruments, "admission", local_day(period.since, zone)
    if plan.status == "active" and plan.schedule is not None and plan.schedule.sessions:
        last = max(session.starts_at for session in plan.schedule.sessions)
        before = timedelta(days=policy.planned_discharge_days_before)
        yield instruments, "planned_discharge", local_day(last, zone) - before
    if plan.status == "graduated" and plan.ended_at is not None:
        graduated = local_day(plan.ended_at, zone)
        for days in policy.alumni_days:
            yield policy.alumni_instruments, "alumni", graduated + timedelta(days=days)


def _recurring_days(
    plan: CarePlan, policy: MeasurePolicy, zone: str, now: datetime
) -> Iterator[tuple[list[str], MeasureReason, date]]:
    """The level's series from the local day its level began: each due day up to the first one whose window
    opens after ``now`` (which sets the next timer)."""
    if plan.status != "active" or not plan.level_history:
        return
    start = local_day(plan.level_history[-1].since, zone)
    horizon = local_day(now, zone) + timedelta(days=policy.window_days)
    for rule in policy.recurring.get(plan.level, []):
        day = start + timedelta(days=rule.every_days)
        while True:
            yield rule.instruments, "schedule", day
            if day > horizon:
                break
            day += timedelta(days=rule.every_days)


def due_id(episode_id: str, instruments: Collection[str], reason: MeasureReason, opens_at: datetime) -> str:
    return derived_id(DUE_MEASURES, episode_id, ",".join(sorted(instruments)), reason, opens_at.isoformat())


def recorded_in(inputs: Collection[CareInput], opens_at: datetime, closes_at: datetime) -> set[str]:
    """The instruments the episode's measures recorded inside the window."""
    return {m.instrument for i in inputs if i.kind == "measure" and opens_at <= i.at < closes_at for m in i.measured}


def review_measures(
    plan: CarePlan, policy: MeasurePolicy, closures: Collection[date], now: datetime
) -> tuple[CarePlan, list[EventData]]:
    """Hold each measure whose window opened (``iop.measure.due``), and move those held on: done, overdue
    (``iop.measure.overdue``), missed. A measure whose window closed before the plan began holding measures is
    not asked for."""
    since = plan.measures_from or now
    held = {measure.due_id: measure for measure in plan.measures}
    events: list[EventData] = []
    for identity, ask in _new_asks(plan, policy, closures, since, now):
        if ask.window.opens_at > now:
            continue
        held[identity] = _held(identity, ask, policy)
        if not _is_done(held[identity], plan.inputs):
            events.append(MeasureDue(**_fields(plan.episode_id, held[identity])))
    moved = [_moved(measure, plan, now, events) for measure in held.values()]
    return plan.model_copy(update={"measures": moved, "measures_from": since}), events


def _new_asks(
    plan: CarePlan, policy: MeasurePolicy, closures: Collection[date], since: datetime, now: datetime
) -> Iterator[tuple[str, Wanted]]:
    """The measures wanted and not held yet, with their ids, leaving out those whose window closed before
    ``since``."""
    held = {measure.due_id for measure in plan.measures}
    for ask in wanted(plan, policy, closures, now):
        identity = due_id(plan.episode_id, ask.instruments, ask.reason, ask.window.opens_at)
        if identity not in held and ask.window.closes_at > since:
            yield identity, ask


def upcoming(plan: CarePlan, policy: MeasurePolicy, closures: Collection[date], now: datetime) -> list[Wanted]:
    """The measures the policy will ask for next, whose window has not opened yet, soonest first."""
    since = plan.measures_from or now
    later = [ask for _, ask in _new_asks(plan, policy, closures, since, now) if ask.window.opens_at > now]
    return sorted(later, key=lambda ask: ask.window.opens_at)


def _held(identity: str, ask: Wanted, policy: MeasurePolicy) -> DueMeasure:
    return DueMeasure(
        due_id=identity,
        instruments=list(ask.instruments),
        reason=ask.reason,
        due_on=ask.window.due_on,
        window_opens_at=ask.window.opens_at,
        window_closes_at=ask.window.closes_at,
        missed_at=ask.window.closes_at + timedelta(days=policy.missed_after_days),
    )


def _is_done(measure: DueMeasure, inputs: Collection[CareInput]) -> bool:
    return set(measure.instruments) <= recorded_in(inputs, measure.window_opens_at, measure.window_closes_at)


def _moved(measure: DueMeasure, plan: CarePlan, now: datetime, events: list[EventData]) -> DueMeasure:
    if measure.status in ("done", "missed", "cancelled"):
        return measure
    if _is_done(measure, plan.inputs):
        return measure.model_copy(update={"status": "done", "settled_at": now})
    if measure.status == "due" and measure.window_closes_at <= now:
        events.append(MeasureOverdue(**_fields(plan.episode_id, measure)))
        measure = measure.model_copy(update={"status": "overdue"})
    if measure.status == "overdue" and measure.missed_at <= now:
        return measure.model_copy(update={"status": "missed", "settled_at": now})
    return measure


def cancel_open_measures(plan: CarePlan, now: datetime) -> CarePlan:
    """The episode was discharged: what it was still asked is no longer asked (no event: the discharge says so)."""
    if not any(measure.status in ("due", "overdue") for measure in plan.measures):
        return plan
    measures = [m.model_copy(update={"status": "cancelled", "settled_at": now}) if m.status in ("due", "overdue") else m
                for m in plan.measures]  # fmt: skip
    return plan.model_copy(update={"measures": measures})


def _fields(episode_id: str, measure: DueMeasure) -> dict[str, object]:
    return {
        "episode_id": episode_id,
        "due_id": measure.due_id,
        "instruments": measure.instruments,
        "reason": measure.reason,
        "window_opens_at": measure.window_opens_at,
        "window_closes_at": measure.window_closes_at,
    }


def next_measure_check(
    plan: CarePlan, policy: MeasurePolicy, closures: Collection[date], now: datetime
) -> datetime | None:
    """The next moment a held measure moves (window closes, missed) or a wanted one's window opens (now, for
    one open already: a plan that began without a review holds it at the next look)."""
    moments = [m.window_closes_at if m.status == "due" else m.missed_at
               for m in plan.measures if m.status in ("due", "overdue")]  # fmt: skip
    since = plan.measures_from or now
    moments += [max(ask.window.opens_at, now) for _, ask in _new_asks(plan, policy, closures, since, now)]
    later = [moment for moment in moments if moment >= now]
    return min(later) if later else None


def without_measures(policy: P) -> P:
    """The policy with nothing measured (its ``measures`` section emptied): plans hold no due measures."""
    return policy.model_copy(update={"measures": MeasurePolicy(episode_instruments=[], alumni_instruments=[])})
