"""A care plan: the episode's level of care, its session calendar and attendance."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel

from services.common.utc import UtcDatetime
from stepwise_contract import (
    AssessmentCompleted,
    CareLevel,
    CareLevelAssigned,
    Reason,
    Schedule,
    ScheduledSession,
    SessionMissed,
)

from .policy import WEEKDAYS, CarePolicy, LevelSchedule, Track

AttendanceStatus = Literal["attended", "late", "missed", "excused"]


class AttendanceRecord(BaseModel):
    status: AttendanceStatus
    recorded_at: UtcDatetime
    notice_given_at: UtcDatetime | None = None
    """For an excused absence: when the patient gave notice (programs set how much notice excuses)."""


class CarePlan(BaseModel):
    episode_id: str
    status: Literal["active", "referred_out"]
    level: CareLevel
    assessment_id: str
    assigned_at: AwareDatetime
    schedule: Schedule | None
    attendance: dict[str, AttendanceRecord] = {}
    rationale: list[Reason]
    policy_version: str


class CarePlanError(Exception):
    """A request the care plan cannot take; ``code`` is stable, the message is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def build_schedule(level: LevelSchedule, track: Track, timezone: str, assigned_on: date) -> Schedule:
    """Sessions on the level's weekdays, from the first such day after ``assigned_on``, for its weeks."""
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
        if day.weekday() in weekdays:
            start = datetime.combine(day, starts_at, tzinfo=zone)
            sessions.append(
                ScheduledSession(session_id=f"s{len(sessions) + 1:03d}", starts_at=start, ends_at=start + length)
            )
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
        schedule: Schedule | None = build_schedule(policy.levels[level], track, timezone, local_today)
        decision = Reason(code="level_offered", text=f"{level.value} is offered here: care plan started.")
    else:
        status, schedule = "referred_out", None
        decision = Reason(code="level_not_offered", text=f"{level.value} is not offered by this program: referred out.")
    plan = CarePlan(
        episode_id=assessment.episode_id,
        status=status,
        level=level,
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
    record = AttendanceRecord(status=status, recorded_at=now, notice_given_at=notice_given_at)
    attendance = {**plan.attendance, session_id: record}
    if status != "missed":
        return attendance, None
    return attendance, SessionMissed(
        episode_id=plan.episode_id,
        session_id=session_id,
        starts_at=sessions[session_id].starts_at,
        detected="reported",
        recorded_at=now,
        consecutive_misses=_consecutive_misses(plan.schedule, attendance, session_id),
        total_misses=sum(1 for record in attendance.values() if record.status == "missed"),
    )


def _consecutive_misses(schedule: Schedule, attendance: dict[str, AttendanceRecord], session_id: str) -> int:
    """Misses in a row ending at ``session_id``, over sessions that have a record (in calendar order)."""
    recorded = [s.session_id for s in schedule.sessions if s.session_id in attendance]
    run = 0
    for sid in recorded[: recorded.index(session_id) + 1]:
        run = run + 1 if attendance[sid].status == "missed" else 0
    return run
