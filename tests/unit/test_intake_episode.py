"""Intake's pure decisions on an episode: safety alerts and their order, reassessment changes, consents."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.intake.domain.episode import (
    AssessmentRequest,
    ConsentTerms,
    assess,
    consent_in_force,
    consents_allowing,
    grant_consent,
    open_episode,
    revoke_consent,
)
from services.intake.domain.instruments import CssrsAnswers, score_cssrs, score_gad7, score_phq9
from services.intake.domain.model import Episode, EpisodeError, Recipient
from services.intake.domain.placement import load_placement_policy
from services.intake.domain.reassessment import compare, trend
from services.intake.domain.safety import safety_concern
from stepwise_contract import (
    AssessmentCompleted,
    CareLevel,
    ConsentChanged,
    DimensionRatings,
    InstrumentResult,
    OverrideReason,
    PlacementDecision,
    SafetyAlertRaised,
)

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
POLICY = load_placement_policy()
IOP = DimensionRatings(withdrawal=1, biomedical=0, emotional=2, readiness=2, relapse=2, environment=1)
PHQ9_ITEM9 = score_phq9([1, 2, 1, 2, 1, 1, 2, 1, 1])
PHQ9_MILD = score_phq9([1, 1, 1, 1, 1, 0, 0, 0, 0])
CSSRS_HIGH = score_cssrs(CssrsAnswers(q1=True, q2=True, q3=True, q4=True, q5=False, q6=False))
CSSRS_LOW = score_cssrs(CssrsAnswers(q1=False, q2=False, q6=False))
GAD7 = score_gad7([1, 1, 2, 1, 0, 1, 1])


def episode() -> Episode:
    return open_episode("patient-1", "adult", NOW)


# Safety alerts: which, at what level, and that they go first


def test_no_flag_raises_no_alert() -> None:
    assert safety_concern([PHQ9_MILD, CSSRS_LOW, GAD7]) is None


def test_phq9_item9_calls_for_a_same_day_review() -> None:
    concern = safety_concern([PHQ9_ITEM9])
    assert concern is not None and (concern.level, concern.reasons) == ("same_day", ["phq9_item9_positive"])


def test_the_most_urgent_reason_sets_the_level_and_every_reason_is_kept() -> None:
    concern = safety_concern([PHQ9_ITEM9, CSSRS_HIGH])
    assert concern is not None and concern.level == "immediate"
    assert concern.reasons == ["phq9_item9_positive", "cssrs_high_risk"]


def test_an_assessment_with_an_alert_publishes_the_alert_first() -> None:
    _, events, assessment = assess(episode(), AssessmentRequest(IOP, [PHQ9_ITEM9, CSSRS_HIGH]), POLICY, NOW)
    assert [type(event) for event in events] == [SafetyAlertRaised, AssessmentCompleted]
    alert, completed = events
    assert isinstance(alert, SafetyAlertRaised) and isinstance(completed, AssessmentCompleted)
    assert alert.assessment_id == completed.assessment_id == assessment.assessment_id
    assert assessment.safety_alert is not None and alert.alert_id == assessment.safety_alert.alert_id
    assert alert.level == "immediate" and alert.raised_at == completed.assessed_at == NOW


def test_an_assessment_without_an_alert_publishes_only_its_completion() -> None:
    _, events, assessment = assess(episode(), AssessmentRequest(IOP, [PHQ9_MILD, GAD7]), POLICY, NOW)
    assert [type(event) for event in events] == [AssessmentCompleted]
    assert assessment.safety_alert is None


@dataclass(frozen=True)
class Answered:
    """Answers as a clinician records them, scored, and what the published rules say they call for: PHQ-9 item 9
    above 0, a same-day review; C-SSRS Q4 or Q5 yes, or Q6 yes within 3 months, an immediate alert."""

    results: list[InstrumentResult]
    reasons: list[str]
    """In the order the instruments were given."""

    @property
    def level(self) -> str | None:
        if "cssrs_high_risk" in self.reasons:
            return "immediate"
        return "same_day" if self.reasons else None


@st.composite
def answered(draw: st.DrawFn) -> Answered:
    scored: list[tuple[InstrumentResult, str | None]] = []
    if draw(st.booleans()):
        phq9 = draw(st.lists(st.integers(0, 3), min_size=9, max_size=9))
        scored.append((score_phq9(phq9), "phq9_item9_positive" if phq9[8] > 0 else None))
    if draw(st.booleans()):
        q2, q6 = draw(st.booleans()), draw(st.booleans())
        follow_up, within = st.booleans() if q2 else st.none(), st.booleans() if q6 else st.none()
        cssrs = CssrsAnswers(q1=draw(st.booleans()), q2=q2, q3=draw(follow_up), q4=draw(follow_up),
                             q5=draw(follow_up), q6=q6, q6_within_3_months=draw(within))  # fmt: skip
        high = bool(cssrs.q4 or cssrs.q5 or (cssrs.q6 and cssrs.q6_within_3_months))
        scored.append((score_cssrs(cssrs), "cssrs_high_risk" if high else None))
    if draw(st.booleans()):
        scored.append((score_gad7(draw(st.lists(st.integers(0, 3), min_size=7, max_size=7))), None))
    given_order = draw(st.permutations(scored))
    return Answered([result for result, _ in given_order], [reason for _, reason in given_order if reason])


@given(answered())
def test_an_alert_precedes_the_assessment_it_comes_from_whatever_the_answers(answers: Answered) -> None:
    _, events, assessment = assess(episode(), AssessmentRequest(IOP, answers.results), POLICY, NOW)
    completed = events[-1]
    assert isinstance(completed, AssessmentCompleted)
    assert (completed.assessment_id, completed.instruments, completed.assessed_at) == (
        assessment.assessment_id, answers.results, NOW
    )  # fmt: skip
    if answers.level is None:
        assert len(events) == 1 and assessment.safety_alert is None
        return
    alert = events[0]
    assert len(events) == 2 and isinstance(alert, SafetyAlertRaised)
    assert (alert.level, alert.reasons) == (answers.level, answers.reasons)
    assert (alert.assessment_id, alert.raised_at) == (assessment.assessment_id, NOW)
    assert assessment.safety_alert is not None and alert.alert_id == assessment.safety_alert.alert_id


# Reassessment


def test_a_second_assessment_is_a_reassessment_with_changes_since_the_first() -> None:
    first, _, initial = assess(episode(), AssessmentRequest(IOP, [PHQ9_ITEM9]), POLICY, NOW)
    _, _, later = assess(first, AssessmentRequest(IOP, [PHQ9_MILD]), POLICY, NOW + timedelta(days=14))
    assert (initial.kind, later.kind, later.previous_assessment_id) == ("intake", "reassessment", initial.assessment_id)
    [change] = later.changes
    assert (change.instrument, change.delta, change.meaningful_change) == ("phq9", -7, "improvement")


def test_changes_cover_only_instruments_given_both_times() -> None:
    assert compare([PHQ9_MILD], [GAD7]) == []
    [change] = compare([CSSRS_LOW], [CSSRS_HIGH])
    assert (change.delta, change.previous_band, change.band) == (None, "low", "high")


@pytest.mark.parametrize(("totals", "direction"), [([12], "stable"), ([12, 12], "stable"), ([12, 7], "improving"),
                                                    ([7, 9, 12], "worsening")])  # fmt: skip
def test_trend_runs_from_the_first_to_the_latest_total(totals: list[int], direction: str) -> None:
    assert trend(totals) == direction


def test_a_placement_equal_to_the_recommendation_names_the_field() -> None:
    reason: OverrideReason = "patient_declined_higher_level"
    request = AssessmentRequest(IOP, [], placement=PlacementDecision(chosen_level=CareLevel.IOP, reason_code=reason))
    with pytest.raises(EpisodeError) as refused:
        assess(episode(), request, POLICY, NOW)
    assert refused.value.field == ("body", "placement", "chosen_level")


# Consents


def family(scopes: list[str], expires_on: date | None = None) -> ConsentTerms:
    return ConsentTerms("family", Recipient(name="Sam", email="sam@example.org"), scopes, expires_on)  # type: ignore[arg-type]


def test_a_granted_consent_announces_only_its_kind_and_status() -> None:
    _, [event], consent = grant_consent(episode(), family(["attendance"]), NOW)
    assert isinstance(event, ConsentChanged)
    assert (event.consent_id, event.recipient_kind, event.status) == (consent.consent_id, "family", "granted")


def test_revoking_twice_changes_nothing_the_second_time() -> None:
    granted, _, consent = grant_consent(episode(), family(["attendance"]), NOW)
    revoked, [event], _ = revoke_consent(granted, consent.consent_id, NOW)
    again, events, same = revoke_consent(revoked, consent.consent_id, NOW + timedelta(hours=1))
    assert isinstance(event, ConsentChanged) and event.status == "revoked"
    assert (again, events, same.revoked_at) == (revoked, [], NOW)


def test_who_may_be_told_follows_scope_expiry_and_revocation() -> None:
    today = NOW.date()
    current, _, attendance = grant_consent(episode(), family(["attendance"]), NOW)
    current, _, expired = grant_consent(current, family(["attendance"], today - timedelta(days=1)), NOW)
    current, _, appointments = grant_consent(current, family(["appointments"]), NOW)
    assert [c.consent_id for c in consents_allowing(current, "attendance", today)] == [attendance.consent_id]
    assert consent_in_force(current, appointments.consent_id, today) == appointments
    with pytest.raises(EpisodeError) as gone:
        consent_in_force(current, expired.consent_id, today)
    assert gone.value.code == "consent_not_in_force"
    with pytest.raises(EpisodeError) as unknown:
        consent_in_force(current, "nope", today)
    assert unknown.value.code == "unknown_consent"


def test_an_alumni_group_consent_names_someone_without_a_recipient() -> None:
    terms = ConsentTerms("alumni_group", None, ["alumni_program"])
    current, _, consent = grant_consent(episode(), terms, NOW)
    assert consents_allowing(current, "alumni_program", NOW.date()) == [consent]
