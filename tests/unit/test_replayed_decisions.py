"""The domain is pure: a decision made again on the same inputs gives the same events, ids and all.

Ids come from what identifies the thing (the episode, which of its records, the moment), never from chance,
so a retried or replayed decision names the same assessment, alert, consent, screen and recommendation.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Literal

from hypothesis import given, settings
from hypothesis import strategies as st

from services.care_plan.domain.model import AttendanceRecord, AttendanceStatus, CareInput, CarePlan, LevelPeriod
from services.care_plan.domain.policy import load_policy
from services.care_plan.domain.review import review
from services.intake.domain.episode import (
    AssessmentRequest,
    ConsentTerms,
    Decision,
    assess,
    grant_consent,
    open_episode,
    record_drug_screen,
)
from services.intake.domain.instruments import CssrsAnswers, score_cssrs, score_phq9
from services.intake.domain.model import Episode, Recipient
from services.intake.domain.placement import load_placement_policy
from stepwise_contract import (
    CareLevel,
    DimensionRatings,
    EventData,
    InstrumentResult,
    Reason,
    Schedule,
    ScheduledSession,
    ScreenResult,
    StepDownRecommended,
    StepUpRecommended,
)

NOW = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
PLACEMENT = load_placement_policy()
CARE_POLICY = load_policy()

# --- intake: an episode's decisions ---------------------------------------------------------------

Step = Callable[[Episode, datetime], Decision[object]]
RATING = st.integers(0, 4)
RESULTS = st.sampled_from(
    [
        [score_phq9([1, 1, 1, 1, 1, 0, 0, 0, 0])],
        [score_phq9([1, 2, 1, 2, 1, 1, 2, 1, 1])],  # item 9: a same-day alert
        [score_cssrs(CssrsAnswers(q1=True, q2=True, q3=True, q4=True, q5=False, q6=False))],  # an immediate alert
    ]
)


def assessing(dimensions: DimensionRatings, results: list[InstrumentResult]) -> Step:
    request = AssessmentRequest(dimensions=dimensions, results=results)
    return lambda episode, now: assess(episode, request, PLACEMENT, now)


def screening(positive: bool) -> Step:
    results = [ScreenResult(substance="opiates", result="positive" if positive else "negative")]
    return lambda episode, now: record_drug_screen(episode, now, results, "staff", now)


def consenting(scope: Literal["attendance", "appointments"]) -> Step:
    terms = ConsentTerms("family", Recipient(name="Sam", email="sam@example.org"), [scope])
    return lambda episode, now: grant_consent(episode, terms, now)


STEP = st.one_of(
    st.builds(
        assessing,
        st.builds(
            DimensionRatings,
            withdrawal=RATING,
            biomedical=RATING,
            emotional=RATING,
            readiness=RATING,
            relapse=RATING,
            environment=RATING,
        ),
        RESULTS,
    ),
    st.builds(screening, st.booleans()),
    st.builds(consenting, st.sampled_from(["attendance", "appointments"])),
)


def decide_all(steps: list[tuple[Step, int]]) -> tuple[Episode, list[EventData]]:
    episode = open_episode("patient-1", "adult", NOW)
    events: list[EventData] = []
    for step, minutes in steps:
        episode, produced, _ = step(episode, NOW + timedelta(minutes=minutes))
        events.extend(produced)
    return episode, events


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(STEP, st.integers(0, 60 * 24 * 30)), min_size=1, max_size=8))
def test_an_episodes_decisions_made_again_give_the_same_episode_and_events(steps: list[tuple[Step, int]]) -> None:
    episode, events = decide_all(steps)
    assert decide_all(steps) == (episode, events)
    ids = [
        *(a.assessment_id for a in episode.assessments),
        *(a.safety_alert.alert_id for a in episode.assessments if a.safety_alert),
        *(s.screen_id for s in episode.drug_screens),
        *(c.consent_id for c in episode.consents),
        episode.episode_id,
    ]
    assert len(set(ids)) == len(ids), "each record has its own id"


# --- care_plan: a review's recommendation ---------------------------------------------------------

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
