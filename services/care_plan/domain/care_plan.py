"""A care plan: the episode's level of care, its session calendar and attendance."""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from stepwise_contract import (
    WEEKDAYS,
    AssessmentCompleted,
    CareLevel,
    CareLevelAssigned,
    CareLevelChanged,
    DischargeReason,
    EpisodeDischarged,
    EpisodeGraduated,
    EventData,
    Program,
    Reason,
    Schedule,
    ScheduleChanged,
    ScheduledSession,
    SessionMissed,
    Track,
    Weekday,
)

from .model import (
    AttendanceRecord,
    AttendanceStatus,
    CarePlan,
    CarePlanError,
    LevelPeriod,
    StepRecommendation,
)
from .policy import CarePolicy, LevelSchedule

__all__ = [
    "AttendanceRecord",
    "AttendanceStatus",
    "CarePlan",
    "CarePlanError",
    "assign_care_level",
    "build_schedule",
    "record_attendance",
]


def build_schedule(
    level: LevelSchedule,
    track: Track,
    timezone: str,
    assigned_on: date,
    closures: Collection[date] = (),
    first_number: int = 1,
) -> Schedule:
    """Sessions on the level's weekdays, from the first such day after ``assigned_on``, for its weeks.

    Clinic closures are skipped (the plan keeps its length in weeks). Session ids count from
    ``first_number``, so a new calendar after a level change never reuses an id.
    """
    zone = ZoneInfo(timezone)
    weekdays = {WEEKDAYS.index(day) for day in level.weekdays}
    first = next(
        assigned_on + timedelta(days=offset)
        for offset in range(1, 8)
        if (assigned_on + timedelta(days=offset)).weekday() in weekdays
    )
    starts_at = level.tracks[track]
    length = timedelta(hours=level.hours_per_session)
    sessions: list[ScheduledSession] = []
    for offset in range(level.weeks * 7):
        day = first + timedelta(days=offset)
        if day.weekday() in weekdays and day not in closures:
            start = datetime.combine(day, starts_at, tzinfo=zone)
            number = first_number + len(sessions)
            sessions.append(ScheduledSession(session_id=f"s{number:03d}", starts_at=start, ends_at=start + length))
    return Schedule(
        timezone=timezone,
        track=track,
        days_per_week=len(weekdays),
        hours_per_session=level.hours_per_session,
        weeks=level.weeks,
        sessions=sessions,
    )


def assign_care_level(
    assessment: AssessmentCompleted, policy: CarePolicy, timezone: str, now: datetime
) -> tuple[CarePlan, CareLevelAssigned]:
    """The care plan an intake assessment leads to, and the event that announces it."""
    level = assessment.level
    chosen = []
    if assessment.placement:
        chosen = [
            Reason(
                code="clinician_placement",
                text=f"Clinician chose {level.value} over the recommended {assessment.recommended_level.value} "
                f"({assessment.placement.reason_code.replace('_', ' ')}).",
            )
        ]
    if level in policy.offered_levels:
        status: Literal["active", "referred_out"] = "active"
        track = policy.default_track
        local_today = now.astimezone(ZoneInfo(timezone)).date()
        schedule: Schedule | None = build_schedule(policy.levels[level], track, timezone, local_today, policy.closures)
        decision = Reason(code="level_offered", text=f"{level.value} is offered here: care plan started.")
    else:
        status, schedule = "referred_out", None
        decision = Reason(code="level_not_offered", text=f"{level.value} is not offered by this program: referred out.")
    plan = CarePlan(
        episode_id=assessment.episode_id,
        status=status,
        program=assessment.program,
        level=level,
        level_history=[LevelPeriod(level=level, since=now, reason="assigned")],
        assessment_id=assessment.assessment_id,
        assigned_at=now,
        schedule=schedule,
        rationale=[*assessment.rationale, *chosen, decision],
        policy_version=policy.version,
    )
    return plan, CareLevelAssigned(
        episode_id=plan.episode_id,
        level=plan.level,
        status=plan.status,
        assigned_at=plan.assigned_at,
        assessment_id=plan.assessment_id,
        schedule=plan.schedule,
        rationale=plan.rationale,
        policy_version=plan.policy_version,
    )


def record_attendance(
    plan: CarePlan,
    session_id: str,
    status: AttendanceStatus,
    now: datetime,
    notice_given_at: datetime | None = None,
    detected: Literal["reported", "no_record"] = "reported",
) -> tuple[dict[str, AttendanceRecord], SessionMissed | None]:
    """The plan's attendance after recording ``status``, and the missed-session event it causes.

    Recording the same status again changes nothing and publishes nothing. Late counts as attended.
    """
    if notice_given_at is not None and status != "excused":
        raise CarePlanError("notice_without_excuse", "notice_given_at goes only with an excused absence")
    if plan.status != "active" or plan.schedule is None:
        raise CarePlanError("plan_not_active", f"the care plan is {plan.status}")
    sessions = {session.session_id: session for session in plan.schedule.sessions}
    if session_id not in sessions:
        raise CarePlanError("unknown_session", f"session {session_id!r} is not in this care plan")
    previous = plan.attendance.get(session_id)
    if previous is not None and previous.status == status:
        return plan.attendance, None
    record = AttendanceRecord(status=status, recorded_at=now, notice_given_at=notice_given_at, detected=detected)
    attendance = {**plan.attendance, session_id: record}
    if status != "missed":
        return attendance, None
    return attendance, SessionMissed(
        episode_id=plan.episode_id,
        session_id=session_id,
        starts_at=sessions[session_id].starts_at,
        detected=detected,
        recorded_at=now,
        consecutive_misses=_consecutive_misses(plan.schedule, attendance, session_id),
        total_misses=sum(1 for record in attendance.values() if record.status == "missed"),
    )


def _consecutive_misses(schedule: Schedule, attendance: dict[str, AttendanceRecord], session_id: str) -> int:
    """Misses in a row ending at ``session_id``, over recorded sessions in calendar order.

    As in the missed-session rules: attended and late end a run; an excused absence neither counts nor ends it.
    """
    recorded = [s.session_id for s in schedule.sessions if s.session_id in attendance]
    run = 0
    for sid in recorded[: recorded.index(session_id) + 1]:
        status = attendance[sid].status
        run = run + 1 if status == "missed" else run if status == "excused" else 0
    return run


def minimum_weekly_hours(policy: CarePolicy, level: CareLevel, program: Program) -> float:
    return policy.min_weekly_hours.get(level, {}).get(program, 0.0)


def reschedule(
    plan: CarePlan, level_schedule: LevelSchedule, track: Track, policy: CarePolicy, now: datetime
) -> Schedule:
    """The plan's calendar with every session from now on replaced by ``level_schedule``'s.

    Past sessions (and their attendance) stay. Raises CarePlanError below the level's minimum hours.
    """
    if plan.status != "active" or plan.schedule is None:
        raise CarePlanError("plan_not_active", f"the care plan is {plan.status}")
    minimum = minimum_weekly_hours(policy, plan.level, plan.program)
    if level_schedule.weekly_hours < minimum:
        raise CarePlanError(
            "below_minimum_hours",
            f"{level_schedule.weekly_hours:g} h/week is below the {minimum:g} h/week minimum for "
            f"{plan.level.value} ({plan.program})",
        )
    if track not in level_schedule.tracks:
        raise CarePlanError("unknown_track", f"no start time for the {track} track")
    kept = [s for s in plan.schedule.sessions if s.starts_at <= now]
    today = now.astimezone(ZoneInfo(plan.schedule.timezone)).date()
    new = build_schedule(level_schedule, track, plan.schedule.timezone, today, policy.closures, len(kept) + 1)
    return new.model_copy(update={"sessions": [*kept, *new.sessions]})


def set_calendar(
    plan: CarePlan,
    track: Track,
    weekdays: list[Weekday],
    hours_per_session: float,
    weeks: int,
    policy: CarePolicy,
    now: datetime,
) -> tuple[CarePlan, ScheduleChanged]:
    """A custom calendar from now on, at the track's start time for the plan's level."""
    start = policy.levels[plan.level].tracks.get(track) if plan.level in policy.levels else None
    if start is None:
        raise CarePlanError("unknown_track", f"no {track} start time for {plan.level.value}")
    level_schedule = LevelSchedule(
        weekdays=weekdays, hours_per_session=hours_per_session, weeks=weeks, tracks={track: start}
    )
    schedule = reschedule(plan, level_schedule, track, policy, now)
    changed = ScheduleChanged(episode_id=plan.episode_id, level=plan.level, changed_at=now, schedule=schedule)
    return plan.model_copy(update={"schedule": schedule}), changed


def settle_recommendation(
    plan: CarePlan, recommendation_id: str, accept: bool, reason: str | None, policy: CarePolicy, now: datetime
) -> tuple[CarePlan, list[EventData], StepRecommendation]:
    """A clinician's decision on an open recommendation; accepting it changes the level."""
    target = next((r for r in plan.recommendations if r.recommendation_id == recommendation_id), None)
    if target is None:
        raise CarePlanError("unknown_recommendation", "no such recommendation for this episode")
    if target.status != "open":
        raise CarePlanError("recommendation_closed", f"the recommendation is {target.status}")
    status: Literal["accepted", "declined"] = "accepted" if accept else "declined"
    decided = target.model_copy(update={"status": status, "decided_at": now, "decision_reason": reason})
    plan = plan.model_copy(update={"recommendations": [decided if r is target else r for r in plan.recommendations]})
    if not accept:
        return plan, [], decided
    plan, changed = change_level(plan, decided, policy, now)
    return plan, [changed], decided


def change_level(
    plan: CarePlan, recommendation: StepRecommendation, policy: CarePolicy, now: datetime
) -> tuple[CarePlan, CareLevelChanged]:
    """Move the episode to the recommended level with a calendar for it (or refer out)."""
    to_level = recommendation.to_level
    history = [
        *plan.level_history,
        LevelPeriod(level=to_level, since=now, reason=f"step_{recommendation.direction}",
                    recommendation_id=recommendation.recommendation_id),
    ]  # fmt: skip
    if to_level in policy.offered_levels and plan.schedule is not None:
        moved = plan.model_copy(update={"level": to_level})
        schedule: Schedule | None = reschedule(moved, policy.levels[to_level], plan.schedule.track, policy, now)
        status: Literal["active", "referred_out"] = "active"
    else:
        schedule, status = None, "referred_out"
    changed = plan.model_copy(
        update={
            "level": to_level,
            "status": status,
            "schedule": schedule if schedule is not None else plan.schedule,
            "level_history": history,
        }
    )
    event = CareLevelChanged(
        episode_id=plan.episode_id,
        from_level=plan.level,
        to_level=to_level,
        direction=recommendation.direction,
        recommendation_id=recommendation.recommendation_id,
        changed_at=now,
        status=status,
        schedule=schedule,
    )
    return changed, event


def graduate(
    plan: CarePlan, now: datetime, by: Literal["completion", "clinician"]
) -> tuple[CarePlan, EpisodeGraduated]:
    _require_active(plan)
    ended = plan.model_copy(update={"status": "graduated", "ended_at": now, "end_reason": by})
    return ended, EpisodeGraduated(episode_id=plan.episode_id, graduated_at=now, level=plan.level, by=by)


def discharge(plan: CarePlan, now: datetime, reason: DischargeReason) -> tuple[CarePlan, EpisodeDischarged]:
    if plan.status not in ("active", "referred_out"):
        raise CarePlanError("plan_not_active", f"the episode is {plan.status} already")
    ended = plan.model_copy(update={"status": "discharged", "ended_at": now, "end_reason": reason})
    return ended, EpisodeDischarged(episode_id=plan.episode_id, discharged_at=now, level=plan.level, reason_code=reason)


def _require_active(plan: CarePlan) -> None:
    if plan.status != "active":
        raise CarePlanError("plan_not_active", f"the care plan is {plan.status}")
