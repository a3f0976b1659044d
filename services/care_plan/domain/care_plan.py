"""A care plan: the episode's level of care, its session calendar and attendance."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from stepwise_contract import (
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

from .groups import Placement, build_schedule, calendar_with, left_off, place, skipped_ids
from .measures import review_measures
from .model import (
    AttendanceRecord,
    AttendanceStatus,
    CarePlan,
    CarePlanError,
    LevelPeriod,
    StepRecommendation,
)
from .policy import CUSTOM_CALENDAR, CarePolicy

__all__ = [
    "AttendanceRecord",
    "AttendanceStatus",
    "CarePlan",
    "CarePlanError",
    "assign_care_level",
    "record_attendance",
]


def assign_care_level(
    assessment: AssessmentCompleted, policy: CarePolicy, timezone: str, now: datetime, placement: Placement | None
) -> tuple[CarePlan, list[EventData]]:
    """The care plan an intake assessment leads to, and its events: the assignment (with the calendar of the
    group it joined), and the waitlist when no group had room. ``placement`` is None for a level not offered."""
    level = assessment.level
    status, schedule, decision = _offered_or_referred(level, assessment.track, policy, timezone)
    plan = CarePlan(
        episode_id=assessment.episode_id,
        status=status,
        program=assessment.program,
        level=level,
        level_history=[LevelPeriod(level=level, since=now, reason="assigned")],
        assessment_id=assessment.assessment_id,
        assigned_at=now,
        schedule=schedule,
        rationale=[*assessment.rationale, *_clinician_choice(assessment), decision],
        policy_version=policy.version,
        admission_scored=[result.instrument for result in assessment.instruments if result.total is not None],
        measures_from=now,
    )
    waiting: list[EventData] = []
    if status == "active":
        assert placement is not None, "an offered level needs a placement"
        placed, waitlisted = place(plan, placement, policy, now)
        plan, waiting = placed, [*waitlisted]
        plan, asked = review_measures(plan, policy.measures, policy.closures, now)
        waiting.extend(asked)
    assigned = CareLevelAssigned(**plan.model_dump(include=set(CareLevelAssigned.model_fields)))
    return plan, [assigned, *waiting]


def _clinician_choice(assessment: AssessmentCompleted) -> list[Reason]:
    """Why the level is not the recommended one: a clinician chose it (none if they did not)."""
    if not assessment.placement:
        return []
    recommended, reason = assessment.recommended_level.value, assessment.placement.reason_code.replace("_", " ")
    text = f"Clinician chose {assessment.level.value} over the recommended {recommended} ({reason})."
    return [Reason(code="clinician_placement", text=text)]


def _offered_or_referred(
    level: CareLevel, track: Track | None, policy: CarePolicy, timezone: str
) -> tuple[Literal["active", "referred_out"], Schedule | None, Reason]:
    """An offered level starts a plan (its calendar filled by the group it joins); another is referred out."""
    if level not in policy.offered_levels:
        referred = Reason(code="level_not_offered", text=f"{level.value} is not offered by this program: referred out.")
        return "referred_out", None, referred
    schedule = Schedule(timezone=timezone, track=track or policy.default_track, days_per_week=0,
                        hours_per_session=0, weeks=policy.levels[level].weeks, sessions=[])  # fmt: skip
    return "active", schedule, Reason(code="level_offered", text=f"{level.value} is offered here: care plan started.")


def record_attendance(
    plan: CarePlan,
    session_id: str,
    status: AttendanceStatus,
    now: datetime,
    notice_given_at: datetime | None = None,
    detected: Literal["reported", "no_record"] = "reported",
    minutes: int | None = None,
    group_id: str | None = None,
    correction: bool = True,
) -> tuple[dict[str, AttendanceRecord], SessionMissed | None]:
    """The plan's attendance after recording ``status``, and the missed-session event it causes.

    Attended, late and missed are recorded once the session has begun; an excused absence (notice given) may
    be recorded ahead. Recording the same again changes nothing and publishes nothing. Late counts as attended. With
    ``group_id`` (a group's sheet) the session must be that group's; without ``correction`` a different
    record that staff made stands (one detected by no record is replaced: the sheet came late).
    """
    if notice_given_at is not None and status != "excused":
        raise CarePlanError("notice_without_excuse", "notice_given_at goes only with an excused absence")
    session = _session_of(plan, session_id, group_id)
    _refuse_unrecordable(plan, session, status, minutes, now)
    previous = plan.attendance.get(session_id)
    if previous is not None and (previous.status, previous.minutes) == (status, minutes):
        return plan.attendance, None
    if previous is not None and not correction and previous.detected == "reported":
        raise CarePlanError("recorded_differently", f"session {session_id!r} is recorded {previous.status} already")
    record = AttendanceRecord(status=status, recorded_at=now, notice_given_at=notice_given_at, detected=detected,
                              minutes=minutes)  # fmt: skip
    attendance = {**plan.attendance, session_id: record}
    if status != "missed" or (previous is not None and previous.status == "missed"):
        return attendance, None
    return attendance, _missed(plan, session, attendance, record)


def _session_of(plan: CarePlan, session_id: str, group_id: str | None) -> ScheduledSession:
    """The active plan's session ``session_id`` (of group ``group_id``, for a group's sheet)."""
    if plan.status != "active" or plan.schedule is None:
        raise CarePlanError("plan_not_active", f"the care plan is {plan.status}")
    sessions = {session.session_id: session for session in plan.schedule.sessions}
    if session_id not in sessions or (group_id is not None and sessions[session_id].group_id != group_id):
        raise CarePlanError("unknown_session", f"session {session_id!r} is not in this care plan")
    return sessions[session_id]


def _refuse_unrecordable(
    plan: CarePlan, session: ScheduledSession, status: AttendanceStatus, minutes: int | None, now: datetime
) -> None:
    """Only an excused absence is recorded before the session begins; minutes go with attendance, up to the
    session's length."""
    assert plan.schedule is not None
    if status != "excused" and now < session.starts_at:
        starts = session.starts_at.astimezone(ZoneInfo(plan.schedule.timezone)).isoformat()
        raise CarePlanError(
            "session_not_started",
            f"session {session.session_id!r} starts at {starts}: {status} is recorded once it has begun "
            "(only an excused absence may be recorded ahead)",
        )
    if minutes is not None and status not in ("attended", "late"):
        raise CarePlanError("minutes_without_attendance", "minutes go only with attended or late")
    length = round((session.ends_at - session.starts_at).total_seconds() / 60)
    if minutes is not None and minutes > length:
        raise CarePlanError("minutes_over_session", f"more minutes than the session lasts ({length})")


def _missed(
    plan: CarePlan, session: ScheduledSession, attendance: dict[str, AttendanceRecord], record: AttendanceRecord
) -> SessionMissed:
    assert plan.schedule is not None
    return SessionMissed(
        episode_id=plan.episode_id,
        session_id=session.session_id,
        starts_at=session.starts_at,
        detected=record.detected,
        recorded_at=record.recorded_at,
        consecutive_misses=_consecutive_misses(plan.schedule, attendance, session.session_id),
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


def set_calendar(
    plan: CarePlan,
    track: Track,
    weekdays: list[Weekday],
    hours_per_session: float,
    weeks: int,
    policy: CarePolicy,
    now: datetime,
) -> tuple[CarePlan, ScheduleChanged]:
    """A custom calendar from now on, at the start time of the level's group of ``track``: the plan leaves its
    group (sessions ``custom-{yyyymmdd}``); past sessions and its own appointments stay."""
    if plan.status != "active" or plan.schedule is None:
        raise CarePlanError("plan_not_active", f"the care plan is {plan.status}")
    like = next(iter(policy.groups_for(plan.level, track, plan.program)), None)
    if like is None:
        raise CarePlanError("unknown_track", f"no group of {plan.level.value} meets on that track")
    custom = like.model_copy(
        update={
            "group_id": CUSTOM_CALENDAR,
            "weekdays": weekdays,
            "minutes": round(hours_per_session * 60),
            "closures": [],
        }
    )
    minimum = minimum_weekly_hours(policy, plan.level, plan.program)
    if custom.weekly_hours < minimum:
        raise CarePlanError(
            "below_minimum_hours",
            f"{custom.weekly_hours:g} h/week is below the {minimum:g} h/week minimum for "
            f"{plan.level.value} ({plan.program})",
        )
    today = now.astimezone(ZoneInfo(plan.schedule.timezone)).date()
    template = build_schedule(custom, weeks, plan.schedule.timezone, today, policy.closures)
    own = [session.model_copy(update={"group_id": None}) for session in template.sessions]
    schedule = calendar_with(plan, own, template, now)
    update = {"schedule": schedule, "group": None, "waitlist": None, "skipped_meetings": left_off(schedule, own, now)}
    custom_plan = plan.model_copy(update=update)
    changed = ScheduleChanged(episode_id=plan.episode_id, level=plan.level, changed_at=now, schedule=schedule,
                              skipped_meetings=skipped_ids(custom_plan))  # fmt: skip
    return custom_plan, changed


def settle_recommendation(
    plan: CarePlan,
    recommendation_id: str,
    accept: bool,
    reason: str | None,
    policy: CarePolicy,
    now: datetime,
    placement: Placement | None = None,
    by: str | None = None,
) -> tuple[CarePlan, list[EventData], StepRecommendation]:
    """A clinician's decision on an open recommendation; accepting it changes the level (and the group:
    ``placement`` in the new level's groups, held beforehand), or, for a level this program does not offer (a
    referral out), discharges the episode with reason ``referred_out``."""
    target = next((r for r in plan.recommendations if r.recommendation_id == recommendation_id), None)
    if target is None:
        raise CarePlanError("unknown_recommendation", "no such recommendation for this episode")
    if target.status != "open":
        raise CarePlanError("recommendation_closed", f"the recommendation is {target.status}")
    status: Literal["accepted", "declined"] = "accepted" if accept else "declined"
    decided = target.model_copy(
        update={"status": status, "decided_at": now, "decision_reason": reason, "decided_by": by}
    )
    plan = plan.model_copy(update={"recommendations": [decided if r is target else r for r in plan.recommendations]})
    if not accept:
        return plan, [], decided
    if decided.refer_out or decided.to_level not in policy.offered_levels:
        ended, discharged = discharge(plan, now, "referred_out", by)
        return ended, [discharged], decided
    plan, events = change_level(plan, decided, policy, now, placement)
    return plan, events, decided


def change_level(
    plan: CarePlan, recommendation: StepRecommendation, policy: CarePolicy, now: datetime, placement: Placement | None
) -> tuple[CarePlan, list[EventData]]:
    """Move the episode to the recommended level, into a group of it or its waitlist (or refer out)."""
    to_level = recommendation.to_level
    history = [
        *plan.level_history,
        LevelPeriod(level=to_level, since=now, reason=f"step_{recommendation.direction}",
                    recommendation_id=recommendation.recommendation_id),
    ]  # fmt: skip
    moved = plan.model_copy(update={"level": to_level, "level_history": history, "group": None, "waitlist": None})
    waiting: list[EventData] = []
    if to_level in policy.offered_levels and plan.schedule is not None:
        assert placement is not None, "an offered level needs a placement"
        moved = moved.model_copy(
            update={"schedule": plan.schedule.model_copy(update={"weeks": policy.levels[to_level].weeks})}
        )
        moved, waitlisted = place(moved, placement, policy, now)
        waiting = [*waitlisted]
        schedule: Schedule | None = moved.schedule
        status: Literal["active", "referred_out"] = "active"
    else:
        schedule, status = None, "referred_out"
        moved = moved.model_copy(update={"status": status})
    event = CareLevelChanged(
        episode_id=plan.episode_id,
        from_level=plan.level,
        to_level=to_level,
        direction=recommendation.direction,
        recommendation_id=recommendation.recommendation_id,
        changed_at=now,
        status=status,
        schedule=schedule,
        skipped_meetings=skipped_ids(moved),
    )
    return moved, [event, *waiting]


def graduate(
    plan: CarePlan, now: datetime, by: Literal["completion", "clinician"], clinician: str | None = None
) -> tuple[CarePlan, EpisodeGraduated]:
    _require_active(plan)
    ended = plan.model_copy(update={"status": "graduated", "ended_at": now, "end_reason": by, "ended_by": clinician})
    return ended, EpisodeGraduated(episode_id=plan.episode_id, graduated_at=now, level=plan.level, by=by)


def graduate_by_clinician(
    plan: CarePlan, policy: CarePolicy, now: datetime, clinician: str | None, reason: str | None
) -> tuple[CarePlan, EpisodeGraduated]:
    """A clinician graduates the episode. Below the level's minimum of sessions attended (or attended late, in
    the whole episode: ``graduation.min_attended_sessions``) only with a ``reason``, kept on the plan."""
    _require_active(plan)
    minimum = policy.graduation.min_attended_sessions.get(plan.level, 0)
    attended = sum(1 for record in plan.attendance.values() if record.status in ("attended", "late"))
    if attended < minimum and not (reason and reason.strip()):
        raise CarePlanError(
            "reason_required",
            f"{attended} session(s) attended, fewer than the {minimum} a graduation from {plan.level.value} takes "
            "(graduation.min_attended_sessions in the care-plan policy): give the reason",
            ("body", "reason"),
        )
    ended, event = graduate(plan, now, by="clinician", clinician=clinician)
    return ended.model_copy(update={"end_note": reason}), event


def discharge(
    plan: CarePlan, now: datetime, reason: DischargeReason, clinician: str | None = None
) -> tuple[CarePlan, EpisodeDischarged]:
    if plan.status not in ("active", "referred_out"):
        raise CarePlanError("plan_not_active", f"the episode is {plan.status} already")
    ended = plan.model_copy(
        update={"status": "discharged", "ended_at": now, "end_reason": reason, "ended_by": clinician}
    )
    return ended, EpisodeDischarged(episode_id=plan.episode_id, discharged_at=now, level=plan.level, reason_code=reason)


def _require_active(plan: CarePlan) -> None:
    if plan.status != "active":
        raise CarePlanError("plan_not_active", f"the care plan is {plan.status}")
