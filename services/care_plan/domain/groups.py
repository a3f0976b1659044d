"""Program groups and a plan's calendar: a group's meetings, joining a group or its waitlist, own
appointments. Pure: the plan, the policy and the time in; the plan and its events out.

A plan's calendar is the sessions it had until now, its own appointments from now on, and the sessions
of its group from the next meeting day for the level's weeks; a group meeting that overlaps one of its own
appointments is left off (and named in ``skipped_meetings``): the appointment stays. A plan joins only a group
of its level and track that lists its program. Session ids are the same in every member's
calendar: ``{group_id}-{yyyymmdd}`` for a group's meeting, ``{kind}-{yyyymmdd}-{hhmm}`` for an appointment
(local date and time), so a roster, a sheet and a billing line all name one session.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from services.common.utc import local_day
from stepwise_contract import (
    WEEKDAYS,
    CareLevel,
    EventData,
    GroupWaitlisted,
    Program,
    Reason,
    Schedule,
    ScheduleChanged,
    ScheduledSession,
    Track,
)

from .model import CarePlan, CarePlanError, GroupPlace, SkippedMeeting, WaitlistPlace
from .policy import CarePolicy, ProgramGroup


@dataclass(frozen=True)
class Joined:
    """A place in ``group`` is held for the plan."""

    group: ProgramGroup


@dataclass(frozen=True)
class Waitlisted:
    """Every group the plan may join is full (or others wait already): it waits, ``position`` in line. With no
    ``groups``, the policy has no group of the level and track for the plan's program: it waits for one."""

    groups: Sequence[ProgramGroup]
    level: CareLevel
    track: Track
    position: int


Placement = Joined | Waitlisted


def meetings(
    group: ProgramGroup, timezone: str, first_day: date, last_day: date, closures: Collection[date] = ()
) -> list[ScheduledSession]:
    """The group's sessions from ``first_day`` to ``last_day`` (both included) on its weekdays, closures skipped."""
    zone = ZoneInfo(timezone)
    weekdays = {WEEKDAYS.index(day) for day in group.weekdays}
    closed = {*closures, *group.closures}
    length = timedelta(minutes=group.minutes)
    sessions = []
    for offset in range((last_day - first_day).days + 1):
        day = first_day + timedelta(days=offset)
        if day.weekday() in weekdays and day not in closed:
            start = datetime.combine(day, group.starts_at, tzinfo=zone)
            sessions.append(
                ScheduledSession(
                    session_id=f"{group.group_id}-{day:%Y%m%d}",
                    starts_at=start,
                    ends_at=start + length,
                    kind=group.kind,
                    group_id=group.group_id,
                )
            )
    return sessions


def first_meeting_after(group: ProgramGroup, day: date) -> date:
    weekdays = {WEEKDAYS.index(weekday) for weekday in group.weekdays}
    return next(day + timedelta(days=n) for n in range(1, 8) if (day + timedelta(days=n)).weekday() in weekdays)


def build_schedule(
    group: ProgramGroup, weeks: int, timezone: str, joined_on: date, closures: Collection[date] = ()
) -> Schedule:
    """The group's sessions from its first meeting after ``joined_on``, for ``weeks`` weeks (closures skipped:
    the plan keeps its length in weeks)."""
    first = first_meeting_after(group, joined_on)
    return Schedule(
        timezone=timezone,
        track=group.track,
        days_per_week=group.days_per_week,
        hours_per_session=group.minutes / 60,
        weeks=weeks,
        sessions=meetings(group, timezone, first, first + timedelta(days=weeks * 7 - 1), closures),
    )


def _overlap(a: ScheduledSession, b: ScheduledSession) -> bool:
    return a.starts_at < b.ends_at and b.starts_at < a.ends_at


def calendar_with(
    plan: CarePlan, new_sessions: Sequence[ScheduledSession], template: Schedule, now: datetime
) -> Schedule:
    """The plan's sessions until now, its own appointments after now and ``new_sessions``, in time order; a new
    session that overlaps one kept (an own appointment, or one under way) is left off (``left_off`` names it)."""
    current = plan.schedule.sessions if plan.schedule else []
    own = {appointment.session_id for appointment in plan.appointments}
    kept = [s for s in current if s.starts_at <= now or s.session_id in own]
    kept_ids = {k.session_id for k in kept}
    fresh = [
        s
        for s in new_sessions
        if s.starts_at > now and s.session_id not in kept_ids and not any(_overlap(s, k) for k in kept)
    ]
    sessions = sorted([*kept, *fresh], key=lambda session: session.starts_at)
    return template.model_copy(update={"sessions": sessions})


def left_off(calendar: Schedule, new_sessions: Sequence[ScheduledSession], now: datetime) -> list[SkippedMeeting]:
    """The new sessions ahead that ``calendar_with`` left off, each with the session it overlaps."""
    listed = {s.session_id for s in calendar.sessions}
    return [
        SkippedMeeting(session=s, clashes_with=next(k.session_id for k in calendar.sessions if _overlap(s, k)))
        for s in new_sessions
        if s.starts_at > now and s.session_id not in listed
    ]


def skipped_ids(plan: CarePlan) -> list[str]:
    """What an event says of the meetings the plan's last calendar left off."""
    return [meeting.session.session_id for meeting in plan.skipped_meetings]


def place(
    plan: CarePlan, placement: Placement, policy: CarePolicy, now: datetime
) -> tuple[CarePlan, list[GroupWaitlisted]]:
    """Give the plan the calendar of the group it joined, or put it on the waitlist (and say so)."""
    assert plan.schedule is not None  # a new plan starts with an empty calendar in the clinic's zone
    timezone = plan.schedule.timezone
    weeks = policy.levels[plan.level].weeks
    today = local_day(now, timezone)
    if isinstance(placement, Joined):
        group = placement.group
        if plan.program not in group.programs:
            raise CarePlanError("wrong_program", f"group {group.group_id!r} does not take {plan.program} programs")
        template = build_schedule(group, weeks, timezone, today, policy.closures)
        schedule = calendar_with(plan, template.sessions, template, now)
        joined = GroupPlace(group_id=group.group_id, joined_at=now)
        skipped = left_off(schedule, template.sessions, now)
        return plan.model_copy(
            update={"schedule": schedule, "group": joined, "waitlist": None, "skipped_meetings": skipped}
        ), []
    groups = [group.group_id for group in placement.groups]
    waiting_calendar = plan.schedule.model_copy(
        update={"track": placement.track, "days_per_week": 0, "hours_per_session": 0}
    )
    schedule = calendar_with(plan, [], waiting_calendar, now)
    waiting = WaitlistPlace(level=placement.level, track=placement.track, group_ids=groups, since=now)
    event = GroupWaitlisted(episode_id=plan.episode_id, level=placement.level, track=placement.track,
                            program=plan.program, group_ids=groups, position=placement.position,
                            waitlisted_at=now)  # fmt: skip
    rationale = plan.rationale if groups else [*plan.rationale, _no_group(placement, plan.program)]
    update = {"schedule": schedule, "group": None, "waitlist": waiting, "skipped_meetings": [], "rationale": rationale}
    return plan.model_copy(update=update), [event]


def _no_group(placement: Waitlisted, program: Program) -> Reason:
    where = f"{placement.level.value} {placement.track}"
    return Reason(
        code="no_group_for_program",
        text=f"No {where} group in the care-plan policy takes {program} programs: the plan waits without group "
        f"sessions until one does (a custom calendar or another track gives it sessions meanwhile).",
    )


def join_from_waitlist(
    plan: CarePlan, group: ProgramGroup, policy: CarePolicy, now: datetime
) -> tuple[CarePlan, list[ScheduleChanged]]:
    """A place came free: the waiting plan joins ``group`` from its next meeting (if it still waits for one of
    its level, track and program: a group added to the policy since counts too)."""
    waiting = plan.waitlist
    if (
        plan.status != "active"
        or waiting is None
        or (group.level, group.track) != (waiting.level, waiting.track)
        or plan.program not in group.programs
    ):
        return plan, []  # it stopped waiting meanwhile (ended, placed or waiting at another level or track)
    joined, _ = place(plan, Joined(group), policy, now)
    assert joined.schedule is not None
    changed = ScheduleChanged(episode_id=plan.episode_id, level=plan.level, changed_at=now,
                              schedule=joined.schedule, reason="joined_group",
                              skipped_meetings=skipped_ids(joined))  # fmt: skip
    return joined, [changed]


def change_track(
    plan: CarePlan, track: Track, placement: Placement, policy: CarePolicy, now: datetime
) -> tuple[CarePlan, list[EventData]]:
    """The episode's track changed: from now on the plan follows a group of the new track (``placement``, held
    beforehand) or waits for one; its past and its own appointments stay. The same track changes nothing."""
    _require_calendar(plan)
    assert plan.schedule is not None
    if plan.schedule.track == track:
        return plan, []
    if not policy.groups_for(plan.level, track, plan.program):
        raise CarePlanError("no_group_for_track", f"no {plan.level.value} {track} group takes {plan.program} programs")
    moved = plan.model_copy(update={"schedule": plan.schedule.model_copy(update={"track": track})})
    moved, waitlisted = place(moved, placement, policy, now)
    assert moved.schedule is not None
    changed = ScheduleChanged(episode_id=plan.episode_id, level=plan.level, changed_at=now, schedule=moved.schedule,
                              reason="track_changed", skipped_meetings=skipped_ids(moved))  # fmt: skip
    return moved, [changed, *waitlisted]


def wanted_groups(policy: CarePolicy, level: CareLevel, track: Track, program: Program) -> list[ProgramGroup]:
    return policy.groups_for(level, track, program)


MOST_APPOINTMENTS_AHEAD = 100
"""Own appointments one plan may have ahead at once (two a week for most of a year): the plan's record stays far
below the store's document limit."""
APPOINTMENT_HORIZON = timedelta(days=366)
"""How far ahead an appointment may be booked."""


def book_appointment(
    plan: CarePlan, kind: str, starts_at: datetime, minutes: int | None, policy: CarePolicy, now: datetime
) -> tuple[CarePlan, ScheduleChanged, str]:
    """An own session (individual, family …) on the plan's calendar; the answer names its session id."""
    _require_calendar(plan)
    assert plan.schedule is not None
    kind_policy = policy.session_kinds.get(kind)
    if kind_policy is None:
        raise CarePlanError("unknown_kind", f"not a session kind of the policy ({', '.join(policy.session_kinds)})")
    if starts_at <= now:
        raise CarePlanError("appointment_in_past", "an appointment is booked ahead: starts_at is not in the future")
    if starts_at > now + APPOINTMENT_HORIZON:
        raise CarePlanError("appointment_too_far", f"an appointment is booked at most {APPOINTMENT_HORIZON.days} "
                                                   "days ahead")  # fmt: skip
    if sum(1 for a in plan.appointments if a.starts_at > now) >= MOST_APPOINTMENTS_AHEAD:
        raise CarePlanError("too_many_appointments", f"the plan has {MOST_APPOINTMENTS_AHEAD} appointments ahead, "
                                                     "the most it keeps: cancel one first")  # fmt: skip
    local = starts_at.astimezone(ZoneInfo(plan.schedule.timezone))
    length = timedelta(minutes=minutes or kind_policy.minutes)
    # The night clocks go back, a local time comes twice: the second (fold 1) is told apart.
    session_id = f"{kind}-{local:%Y%m%d-%H%M}" + ("-2" if local.fold else "")
    session = ScheduledSession(session_id=session_id, starts_at=starts_at,
                               ends_at=starts_at + length, kind=kind)  # fmt: skip
    clash = next(
        (s for s in plan.schedule.sessions if s.starts_at < session.ends_at and session.starts_at < s.ends_at), None
    )
    if clash is not None:
        raise CarePlanError("overlapping_session", f"the calendar has {clash.session_id} at that time")
    schedule = plan.schedule.model_copy(
        update={"sessions": sorted([*plan.schedule.sessions, session], key=lambda s: s.starts_at)}
    )
    booked = plan.model_copy(update={"schedule": schedule, "appointments": [*plan.appointments, session]})
    changed = ScheduleChanged(episode_id=plan.episode_id, level=plan.level, changed_at=now, schedule=schedule,
                              reason="appointment_booked")  # fmt: skip
    return booked, changed, session.session_id


def cancel_appointment(plan: CarePlan, session_id: str, now: datetime) -> tuple[CarePlan, ScheduleChanged]:
    _require_calendar(plan)
    assert plan.schedule is not None
    appointment = next((a for a in plan.appointments if a.session_id == session_id), None)
    if appointment is None:
        raise CarePlanError("unknown_session", f"no appointment {session_id!r} on this care plan")
    if appointment.starts_at <= now or session_id in plan.attendance:
        raise CarePlanError("appointment_in_past", "an appointment that has begun or has a record stays")
    sessions = [s for s in plan.schedule.sessions if s.session_id != session_id]
    back, skipped = _meetings_back(plan.skipped_meetings, sessions, session_id, now)
    schedule = plan.schedule.model_copy(update={"sessions": sorted([*sessions, *back], key=lambda s: s.starts_at)})
    kept = [a for a in plan.appointments if a.session_id != session_id]
    changed = ScheduleChanged(episode_id=plan.episode_id, level=plan.level, changed_at=now, schedule=schedule,
                              reason="appointment_cancelled")  # fmt: skip
    return plan.model_copy(update={"schedule": schedule, "appointments": kept, "skipped_meetings": skipped}), changed


def _meetings_back(
    skipped_meetings: Sequence[SkippedMeeting], sessions: Sequence[ScheduledSession], cancelled: str, now: datetime
) -> tuple[list[ScheduledSession], list[SkippedMeeting]]:
    """A meeting left off for the cancelled appointment comes back, if it is still ahead and clashes with
    nothing else (else it stays left off, for what it clashes with now); the others stay left off."""
    back, skipped = [], []
    for meeting in skipped_meetings:
        clash = next((s.session_id for s in sessions if _overlap(meeting.session, s)), None)
        if meeting.clashes_with != cancelled:
            skipped.append(meeting)
        elif clash is None and meeting.session.starts_at > now:
            back.append(meeting.session)
        elif clash is not None:
            skipped.append(meeting.model_copy(update={"clashes_with": clash}))
    return back, skipped


def _require_calendar(plan: CarePlan) -> None:
    if plan.status != "active" or plan.schedule is None:
        raise CarePlanError("plan_not_active", f"the care plan is {plan.status}")
