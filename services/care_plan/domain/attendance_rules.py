"""Missed-session rules, no-show detection and weekly utilization. Pure functions over a plan's data.

Attendance semantics shared by every rule here:

* ``missed`` is a miss: a no-call absence (reported, or detected because nobody recorded the session).
* ``attended`` and ``late`` are attendance: they end a run of consecutive misses and count as hours attended.
* ``excused`` (an absence with notice) is not a miss and does not end a run of consecutive misses either: it is
  transparent to consecutive rules. In a window rule it still takes its place among the last ``window`` sessions.
* Only sessions that have a record take part in the rules, in calendar order; a session nobody recorded yet is
  left out until it is recorded (by staff, or by no-show detection after its end plus the grace period).

Times returned for timers are aware UTC datetimes; arithmetic is done in UTC so that a DST change never shifts
a session's end, its grace period or its length.
"""

from __future__ import annotations

import string
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stepwise_contract import Reason, Schedule, ScheduledSession

from .model import AttendanceRecord, AttendanceStatus, RuleFiring

__all__ = [
    "TEMPLATE_FIELDS",
    "MissedSessionPolicy",
    "MissedSessionRule",
    "RuleAction",
    "RuleTriggered",
    "UtilizationShortfall",
    "next_no_show_check",
    "next_utilization_check",
    "no_shows",
    "triggered_rules",
    "utilization_shortfalls",
]

RuleAction = Literal["outreach", "attendance_contract", "care_team_review", "discharge_review"]

TEMPLATE_FIELDS: tuple[str, ...] = ("count", "window", "misses", "consecutive")
"""The fields a rule's text may use: the rule's count and window, the misses in the window (for a
consecutive rule: the run) and the misses in a row, at the session where the rule fired."""

_ATTENDED: frozenset[AttendanceStatus] = frozenset({"attended", "late"})
_TOLERANCE = 1e-9


class MissedSessionRule(BaseModel):
    """One missed-session rule: ``count`` misses in a row (consecutive), or in the last ``window`` recorded
    sessions (window), lead to ``action``, with ``text`` as the rationale a clinician reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(pattern=r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$", max_length=64, description="snake_case, stable")
    kind: Literal["consecutive", "window"]
    count: int = Field(ge=1)
    window: int | None = Field(default=None, ge=1, description="Window rules only: how many recorded sessions.")
    action: RuleAction
    text: str = Field(min_length=1, description="May use {count}, {window}, {misses} and {consecutive}.")

    @field_validator("text")
    @classmethod
    def _template(cls, text: str) -> str:
        used = _template_fields(text)
        unknown = sorted(used - set(TEMPLATE_FIELDS))
        if unknown:
            allowed = ", ".join("{" + name + "}" for name in TEMPLATE_FIELDS)
            raise ValueError(f"unknown template field(s) {', '.join(unknown)}; use only {allowed}")
        try:
            text.format(count=1, window=1, misses=1, consecutive=1)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
            raise ValueError(f"the text does not format: {error}") from None
        return text

    @model_validator(mode="after")
    def _window(self) -> MissedSessionRule:
        if self.kind == "window":
            if self.window is None:
                raise ValueError("a window rule needs a window (how many recorded sessions it looks at)")
            if self.window < self.count:
                raise ValueError(f"window {self.window} is smaller than count {self.count}")
        else:
            if self.window is not None:
                raise ValueError("a consecutive rule takes no window")
            if "window" in _template_fields(self.text):
                raise ValueError("text: {window} is only for window rules")
        return self


def _template_fields(text: str) -> set[str]:
    """The field names ``text`` uses; raises ValueError for broken braces, positional or compound fields."""
    names: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as error:
        raise ValueError(f"the text is not a valid template: {error}") from None
    for _, name, spec, _ in parsed:
        if name is None:
            continue
        if not name.isidentifier():
            raise ValueError(f"template field {{{name}}} must be a plain name such as {{count}}")
        if spec and ("{" in spec):
            raise ValueError("nested template fields are not allowed")
        names.add(name)
    return names


class MissedSessionPolicy(BaseModel):
    """The clinic's missed-session rules, evaluated in this order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[MissedSessionRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_codes(self) -> MissedSessionPolicy:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.code in seen:
                raise ValueError(f"rules: code {rule.code!r} is used twice")
            seen.add(rule.code)
        return self


# --- no-show detection -------------------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _in_calendar_order(schedule: Schedule) -> list[ScheduledSession]:
    return sorted(schedule.sessions, key=lambda session: _utc(session.starts_at))


def no_shows(
    schedule: Schedule, attendance: Mapping[str, AttendanceRecord], now: datetime, grace: timedelta
) -> list[str]:
    """Ids of the sessions with no record whose end plus ``grace`` is at or before ``now``, in calendar order."""
    return [
        session.session_id
        for session in _in_calendar_order(schedule)
        if session.session_id not in attendance and _utc(session.ends_at) + grace <= _utc(now)
    ]


def next_no_show_check(
    schedule: Schedule, attendance: Mapping[str, AttendanceRecord], grace: timedelta
) -> datetime | None:
    """The earliest end plus ``grace`` among sessions with no record (UTC), or None when all have one.

    May be in the past (a check that is due now); the caller keeps it as the plan's no-show timer.
    """
    due = [_utc(s.ends_at) + grace for s in schedule.sessions if s.session_id not in attendance]
    return min(due, default=None)


# --- missed-session rules ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleTriggered:
    """A rule that fired at ``session_id``; the caller records a RuleFiring and publishes the event."""

    rule_code: str
    action: RuleAction
    session_id: str
    rationale: list[Reason]
    consecutive_misses: int
    misses_in_window: int


def triggered_rules(
    schedule: Schedule,
    attendance: Mapping[str, AttendanceRecord],
    firings: Sequence[RuleFiring],
    policy: MissedSessionPolicy,
) -> list[RuleTriggered]:
    """The rules that newly fire for this attendance, ordered by session, then by the policy's rule order.

    Evaluated over the sessions that have a record, in calendar order (see the module docstring for what
    counts as a miss: excused absences neither count nor end a run; attended and late end it).

    * consecutive rule: fires at the miss where the run of misses in a row reaches ``count``.
    * window rule: with W(S) the misses among the last ``window`` recorded sessions ending at S (S included),
      fires at S when W(S) >= count and W at the previous recorded session < count (a crossing).

    Fires once: a crossing is skipped when ``firings`` already holds a firing of the same rule at a session
    of the same stretch, that is the same run (consecutive: the recorded sessions between two attended or
    late ones) or the same stretch of sessions where W >= count (window). With attendance recorded in
    calendar order that is exactly "a firing at the same session"; the wider stretch keeps a late report of
    an earlier session (or a correction) from firing a rule again for misses it already reported.
    Several rules (and sessions) can fire at once after a burst of no-shows.
    """
    recorded = [s.session_id for s in _in_calendar_order(schedule) if s.session_id in attendance]
    statuses = [attendance[session_id].status for session_id in recorded]
    runs = _runs(statuses)
    fired_at = _fired_at(firings, {session_id: index for index, session_id in enumerate(recorded)})
    found = [
        (index, order, _triggered(rule, recorded[index], level, runs[0][index]))
        for order, rule in enumerate(policy.rules)
        for index, level in _crossings(rule, statuses, runs, fired_at.get(rule.code, set()))
    ]
    found.sort(key=lambda item: (item[0], item[1]))
    return [triggered for _, _, triggered in found]


def _fired_at(firings: Sequence[RuleFiring], position: Mapping[str, int]) -> dict[str, set[int]]:
    """Where (the index among recorded sessions) each rule fired already, by rule code."""
    fired_at: dict[str, set[int]] = {}
    for firing in firings:
        if firing.session_id in position:
            fired_at.setdefault(firing.rule_code, set()).add(position[firing.session_id])
    return fired_at


def _crossings(
    rule: MissedSessionRule,
    statuses: Sequence[AttendanceStatus],
    runs: tuple[list[int], list[int | None]],
    fired: set[int],
) -> list[tuple[int, int]]:
    """Where the rule's level of misses crosses its count, with that level, outside the stretches it fired in."""
    if rule.kind == "consecutive":
        levels, stretch = runs
    else:
        assert rule.window is not None  # checked by the policy model
        levels = _window_misses(statuses, rule.window)
        stretch = _stretches(levels, rule.count)
    reported = {stretch[index] for index in fired if stretch[index] is not None}
    crossings = []
    previous = 0
    for index, level in enumerate(levels):
        if level >= rule.count > previous and stretch[index] not in reported:
            crossings.append((index, level))
        previous = level
    return crossings


def _triggered(rule: MissedSessionRule, session_id: str, level: int, consecutive: int) -> RuleTriggered:
    in_window = level if rule.kind == "window" else consecutive
    text = rule.text.format(count=rule.count, window=rule.window, misses=in_window, consecutive=consecutive)
    return RuleTriggered(
        rule_code=rule.code,
        action=rule.action,
        session_id=session_id,
        rationale=[Reason(code=rule.code, text=text)],
        consecutive_misses=consecutive,
        misses_in_window=in_window,
    )


def _runs(statuses: Sequence[AttendanceStatus]) -> tuple[list[int], list[int | None]]:
    """Misses in a row at each recorded session, and the run (its first index) each session belongs to.

    Attended and late sessions reset the run and belong to none; excused sessions keep it.
    """
    runs: list[int] = []
    stretch: list[int | None] = []
    run, start = 0, 0
    for index, status in enumerate(statuses):
        if status in _ATTENDED:
            run, start = 0, index + 1
            stretch.append(None)
        else:
            if status == "missed":
                run += 1
            stretch.append(start)
        runs.append(run)
    return runs, stretch


def _window_misses(statuses: Sequence[AttendanceStatus], window: int) -> list[int]:
    """Misses among the last ``window`` recorded sessions ending at each one."""
    misses = [int(status == "missed") for status in statuses]
    totals: list[int] = []
    total = 0
    for index, miss in enumerate(misses):
        total += miss
        if index >= window:
            total -= misses[index - window]
        totals.append(total)
    return totals


def _stretches(levels: Sequence[int], count: int) -> list[int | None]:
    """For each index, the first index of its maximal stretch with level >= count (None outside one)."""
    stretch: list[int | None] = []
    start: int | None = None
    for index, level in enumerate(levels):
        if level < count:
            start = None
        elif start is None:
            start = index
        stretch.append(start)
    return stretch


# --- weekly utilization ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UtilizationShortfall:
    """A week (Monday, local) whose attended hours fell below the (pro-rated) minimum."""

    week_start: date
    hours_attended: float
    minimum_hours: float
    hours_by_kind: Mapping[str, float] = field(default_factory=dict)


def _weeks(schedule: Schedule) -> dict[date, list[ScheduledSession]]:
    """Sessions by the Monday of their local week, oldest week first."""
    zone = ZoneInfo(schedule.timezone)
    weeks: dict[date, list[ScheduledSession]] = {}
    for session in _in_calendar_order(schedule):
        day = session.starts_at.astimezone(zone).date()
        weeks.setdefault(day - timedelta(days=day.weekday()), []).append(session)
    return weeks


def _week_end(week_start: date, zone: ZoneInfo) -> datetime:
    """The local start of the next Monday, in UTC."""
    return datetime.combine(week_start + timedelta(days=7), time(0), tzinfo=zone).astimezone(UTC)


def utilization_shortfalls(
    schedule: Schedule,
    attendance: Mapping[str, AttendanceRecord],
    minimum_weekly_hours: float,
    flagged: Sequence[date],
    now: datetime,
    appointments: Collection[str] = (),
) -> list[UtilizationShortfall]:
    """Weeks that are over and whose attended hours are below the minimum, not yet ``flagged``, oldest first.

    Weeks run Monday to Sunday in the schedule's time zone; a week is over at the local start of the next
    Monday and counts only if it has a scheduled session. Hours attended are the lengths of the sessions
    recorded attended or late, of every kind (a group hour and an individual hour both count). The minimum is
    pro-rated for partial weeks (the first and last week, a week with a closure): ``minimum_weekly_hours *
    calendar sessions that week / days_per_week``, at most the full minimum, where the plan's own
    ``appointments`` are not calendar sessions; a week without calendar sessions (a plan waiting for a group)
    has no minimum. Figures are reported rounded to 2 decimals.
    """
    zone = ZoneInfo(schedule.timezone)
    done = set(flagged)
    shortfalls: list[UtilizationShortfall] = []
    for week_start, sessions in _weeks(schedule).items():
        if week_start in done or _week_end(week_start, zone) > _utc(now):
            continue
        by_kind: dict[str, float] = {}
        for s in sessions:
            record = attendance.get(s.session_id)
            if record is not None and record.status in _ATTENDED:
                length = (_utc(s.ends_at) - _utc(s.starts_at)).total_seconds() / 3600
                hours_here = length if record.minutes is None else record.minutes / 60
                by_kind[s.kind] = by_kind.get(s.kind, 0.0) + hours_here
        hours = sum(by_kind.values())
        calendar = sum(1 for s in sessions if s.session_id not in appointments)
        if calendar == 0 or schedule.days_per_week <= 0:
            continue  # no program sessions that week (a plan waiting for a group): nothing to fall short of
        minimum = min(minimum_weekly_hours, minimum_weekly_hours * calendar / schedule.days_per_week)
        if hours < minimum - _TOLERANCE:
            kinds = {kind: round(value, 2) for kind, value in sorted(by_kind.items())}
            shortfalls.append(UtilizationShortfall(week_start, round(hours, 2), round(minimum, 2), kinds))
    return shortfalls


def next_utilization_check(schedule: Schedule, flagged: Sequence[date], now: datetime) -> datetime | None:
    """The end (local start of the next Monday, as UTC) of the earliest week with sessions that is not over
    yet at ``now`` and not flagged; None when there is none. The caller keeps it as the utilization timer."""
    zone = ZoneInfo(schedule.timezone)
    done = set(flagged)
    ends = [_week_end(week, zone) for week in _weeks(schedule) if week not in done]
    return min((end for end in ends if end > _utc(now)), default=None)
