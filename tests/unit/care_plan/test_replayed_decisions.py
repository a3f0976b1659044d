"""care_plan's domain is pure: a review, or a recommendation, made again on the same inputs gives the same plan,
events and ids.

Ids come from what identifies the thing (the episode, which of its records, the moment), never from chance,
so a retried or replayed decision names the same recommendation.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.care_plan.domain.model import AttendanceRecord, AttendanceStatus, CareInput, CarePlan, LevelPeriod
from services.care_plan.domain.policy import load_policy
from services.care_plan.domain.review import review
from stepwise_contract import (
    CareLevel,
    Reason,
    Schedule,
    ScheduledSession,
    StepDownRecommended,
    StepUpRecommended,
)

NOW = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
CARE_POLICY = load_policy()

LEVEL_BEGAN = NOW - timedelta(weeks=5)
SESSIONS = [
    ScheduledSession(
        session_id=f"s{n}",
        starts_at=LEVEL_BEGAN + timedelta(days=1 + 2 * n),
        ends_at=LEVEL_BEGAN + timedelta(days=1 + 2 * n, hours=3),
    )
    for n in range(15)
]
STATUS = st.sampled_from([None, "attended", "attended", "late", "missed", "excused"])


def plan_at(level: CareLevel, statuses: list[AttendanceStatus | None], alerts: list[float]) -> CarePlan:
    """A plan at ``level`` since LEVEL_BEGAN with the given attendance, and a safety alert ``alerts`` days in."""
    attendance = {
        f"s{n}": AttendanceRecord(status=status, recorded_at=SESSIONS[n].ends_at)
        for n, status in enumerate(statuses)
        if status is not None and SESSIONS[n].ends_at < NOW
    }
    inputs = [
        CareInput(
            kind="safety_alert", at=LEVEL_BEGAN + timedelta(days=day), source_id=f"alert{n}", alert_level="same_day"
        )
        for n, day in enumerate(alerts)
    ]
    schedule = Schedule(
        timezone="UTC", track="morning", days_per_week=3, hours_per_session=3, weeks=5, sessions=SESSIONS
    )
    return CarePlan(
        episode_id="e1",
        status="active",
        level=level,
        assessment_id="a0",
        assigned_at=LEVEL_BEGAN,
        schedule=schedule,
        attendance=attendance,
        rationale=[Reason(code="assigned", text="Assigned.")],
        policy_version="test",
        level_history=[LevelPeriod(level=level, since=LEVEL_BEGAN, reason="assigned")],
        inputs=inputs,
    )


PLANS = st.builds(
    plan_at,
    st.sampled_from([CareLevel.OP, CareLevel.IOP, CareLevel.PHP]),
    st.lists(STATUS, min_size=15, max_size=15),
    st.lists(st.floats(min_value=0, max_value=34, allow_nan=False), max_size=3),
)


@settings(max_examples=150, deadline=None)
@given(PLANS, st.floats(min_value=0, max_value=40, allow_nan=False))
def test_a_review_made_again_gives_the_same_plan_and_events(plan: CarePlan, hours: float) -> None:
    now = NOW + timedelta(hours=hours)
    assert review(plan, CARE_POLICY, now) == review(plan, CARE_POLICY, now)


def test_a_recommendation_made_again_has_the_same_id_and_another_moment_another() -> None:
    plan = plan_at(CareLevel.IOP, ["attended"] * 15, alerts=[10])
    [first] = [e for e in review(plan, CARE_POLICY, NOW)[1] if isinstance(e, StepUpRecommended | StepDownRecommended)]
    [again] = [e for e in review(plan, CARE_POLICY, NOW)[1] if isinstance(e, StepUpRecommended | StepDownRecommended)]
    later = review(plan, CARE_POLICY, NOW + timedelta(minutes=1))[1]
    [other] = [e for e in later if isinstance(e, StepUpRecommended | StepDownRecommended)]
    assert first.recommendation_id == again.recommendation_id != other.recommendation_id
