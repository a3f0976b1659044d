"""What follows from a care plan's state, after anything changed (attendance, an assessment, an alert,
a screen, the clock): no-shows, missed-session rules, weekly utilization, a step-up or step-down
recommendation, graduation on completion. Pure: the plan, the policy and the time in; the plan and
the events out. Running it twice on its own result changes nothing (so timers fire once).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.common.ids import derived_id
from stepwise_contract import (
    AttendanceRuleTriggered,
    EventData,
    StepDownRecommended,
    StepUpRecommended,
    UtilizationBelowMinimum,
)

from .attendance_rules import (
    next_no_show_check,
    next_utilization_check,
    no_shows,
    triggered_rules,
    utilization_shortfalls,
)
from .care_plan import graduate, minimum_weekly_hours, record_attendance
from .measures import cancel_open_measures, next_measure_check, review_measures
from .model import CarePlan, RuleFiring, StepRecommendation
from .policy import CarePolicy
from .services import review_services
from .stepping import StepDecision, recommend_step, step_down_criteria
from .treatment_plan import next_review_check, review_treatment

Changed = tuple[CarePlan, list[EventData]]

RECOMMENDATIONS = uuid.UUID("a676a857-aa2a-447e-9d7d-db72be9c2a71")
"""The namespace of recommendation ids: one is the episode's move (direction, level) recommended at a moment."""
MEASURED = ("active", "graduated")
"""Plan statuses whose due measures move on: the episode, and its alumni follow-ups."""


def review(plan: CarePlan, policy: CarePolicy, now: datetime) -> Changed:
    events: list[EventData] = []
    for step in (_no_shows, review_services, _missed_session_rules, _utilization, _step_recommendation, _completion):
        if plan.status != "active" or plan.schedule is None:
            break
        plan, produced = step(plan, policy, now)
        events.extend(produced)
    plan, asked = _measures(plan, policy, now)
    plan, reviews = review_treatment(plan, policy.treatment_plan, policy.closures, now)
    return plan, [*events, *asked, *reviews]


def _measures(plan: CarePlan, policy: CarePolicy, now: datetime) -> Changed:
    """Due measures move on while the episode is active, and after graduation (alumni follow-ups, whose timer is
    the plan's ``follow_up_at``: the episode's own timer ended with it); a discharge cancels those still open."""
    if plan.status == "discharged":
        return cancel_open_measures(plan, now), []
    if plan.status not in MEASURED or plan.schedule is None:
        return plan, []
    plan, events = review_measures(plan, policy.measures, policy.closures, now)
    follow_up = next_measure_check(plan, policy.measures, policy.closures, now) if plan.status == "graduated" else None
    return plan.model_copy(update={"follow_up_at": follow_up}), events


def next_check(plan: CarePlan, policy: CarePolicy, now: datetime) -> datetime | None:
    """When the plan needs looking at again without any input: the earliest timer, None for none."""
    if plan.status != "active":
        return None
    treatment = next_review_check(plan, policy.treatment_plan, policy.closures, now)
    if plan.schedule is None:
        return treatment
    measures = next_measure_check(plan, policy.measures, policy.closures, now)
    grace = timedelta(minutes=policy.no_show_grace_minutes)
    candidates = [
        next_no_show_check(plan.schedule, plan.attendance, grace),
        next_utilization_check(plan.schedule, plan.utilization_flagged_weeks, now),
        _completion_check(plan, grace, now),
        measures,
        treatment,
    ]
    found = [moment for moment in candidates if moment is not None]
    return min(found) if found else None


def _completion_check(plan: CarePlan, grace: timedelta, now: datetime) -> datetime | None:
    """Every session recorded (the last one during it, say): when the plan may graduate on completion."""
    assert plan.schedule is not None
    sessions = plan.schedule.sessions
    if not sessions or any(s.session_id not in plan.attendance for s in sessions):
        return None
    moment = max(s.ends_at.astimezone(UTC) for s in sessions) + grace
    return moment if moment > now else None


def _no_shows(plan: CarePlan, policy: CarePolicy, now: datetime) -> Changed:
    assert plan.schedule is not None
    events: list[EventData] = []
    grace = timedelta(minutes=policy.no_show_grace_minutes)
    for session_id in no_shows(plan.schedule, plan.attendance, now, grace):
        attendance, missed = record_attendance(plan, session_id, "missed", now, detected="no_record")
        plan = plan.model_copy(update={"attendance": attendance})
        events.extend([missed] if missed else [])
    return plan, events


def _missed_session_rules(plan: CarePlan, policy: CarePolicy, now: datetime) -> Changed:
    assert plan.schedule is not None
    fired = triggered_rules(plan.schedule, plan.attendance, plan.rule_firings, policy.missed_sessions)
    if not fired:
        return plan, []
    firings = [*plan.rule_firings, *(RuleFiring(rule_code=f.rule_code, session_id=f.session_id, at=now) for f in fired)]
    events: list[EventData] = [
        AttendanceRuleTriggered(
            episode_id=plan.episode_id,
            rule_code=f.rule_code,
            action=f.action,
            session_id=f.session_id,
            consecutive_misses=f.consecutive_misses,
            misses_in_window=f.misses_in_window,
            rationale=f.rationale,
            policy_version=policy.version,
            triggered_at=now,
        )
        for f in fired
    ]
    return plan.model_copy(update={"rule_firings": firings}), events


def _utilization(plan: CarePlan, policy: CarePolicy, now: datetime) -> Changed:
    assert plan.schedule is not None
    minimum = minimum_weekly_hours(policy, plan.level, plan.program)
    if minimum <= 0:
        return plan, []
    own = [appointment.session_id for appointment in plan.appointments]
    short = utilization_shortfalls(plan.schedule, plan.attendance, minimum, plan.utilization_flagged_weeks, now, own)
    if not short:
        return plan, []
    flagged = [*plan.utilization_flagged_weeks, *(week.week_start for week in short)]
    events: list[EventData] = [
        UtilizationBelowMinimum(
            episode_id=plan.episode_id,
            week_start=week.week_start,
            level=plan.level,
            hours_attended=week.hours_attended,
            minimum_hours=week.minimum_hours,
            hours_by_kind=dict(week.hours_by_kind),
        )
        for week in short
    ]
    return plan.model_copy(update={"utilization_flagged_weeks": flagged}), events


def _step_recommendation(plan: CarePlan, policy: CarePolicy, now: datetime) -> Changed:
    decision = recommend_step(plan, policy.stepping, now, policy.offered_levels)
    if decision is None or _already_decided(plan, decision):
        return plan, []
    open_now = plan.open_recommendation
    recommendation = StepRecommendation(
        recommendation_id=derived_id(RECOMMENDATIONS, plan.episode_id, decision.direction, decision.to_level, now),
        direction=decision.direction,
        from_level=plan.level,
        to_level=decision.to_level,
        rationale=decision.rationale,
        policy_version=policy.version,
        created_at=now,
        refer_out=decision.refer_out,
    )
    earlier = [
        r.model_copy(update={"status": "superseded", "decided_at": now}) if r is open_now else r
        for r in plan.recommendations
    ]
    model = StepUpRecommended if decision.direction == "up" else StepDownRecommended
    event = model(
        episode_id=plan.episode_id,
        recommendation_id=recommendation.recommendation_id,
        from_level=plan.level,
        to_level=decision.to_level,
        rationale=decision.rationale,
        policy_version=policy.version,
        recommended_at=now,
        supersedes=open_now.recommendation_id if open_now else None,
        refer_out=decision.refer_out,
    )
    return plan.model_copy(update={"recommendations": [*earlier, recommendation]}), [event]


def _already_decided(plan: CarePlan, decision: StepDecision) -> bool:
    """The same move is open, or was declined with nothing new learned since."""
    since = plan.level_history[-1].since if plan.level_history else plan.assigned_at
    for earlier in reversed(plan.recommendations):
        if earlier.created_at < since or (earlier.direction, earlier.to_level) != (
            decision.direction,
            decision.to_level,
        ):
            continue
        if earlier.status == "open":
            return True
        if earlier.status == "declined" and earlier.decided_at is not None:
            return not any(i.at > earlier.decided_at for i in plan.inputs)
    return False


def _completion(plan: CarePlan, policy: CarePolicy, now: datetime) -> Changed:
    """Graduate when every session is over and recorded and the step-down criteria hold."""
    assert plan.schedule is not None
    grace = timedelta(minutes=policy.no_show_grace_minutes)
    sessions = plan.schedule.sessions
    complete = bool(sessions) and all(s.session_id in plan.attendance for s in sessions)
    if not complete or max(s.ends_at.astimezone(UTC) for s in sessions) + grace > now:
        return plan, []
    if step_down_criteria(plan, policy.stepping, now) is None:
        return plan, []
    graduated, event = graduate(plan, now, by="completion")
    return graduated, [event]
