"""Intake's pure decisions on an episode: safety alerts and their order, reassessment changes, consents, what an
episode keeps at most, closing it, and telling a patient registered twice."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import get_args

import bson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.intake.domain.episode import (
    AssessmentRequest,
    ConsentTerms,
    assess,
    close,
    consent_in_force,
    consents_allowing,
    grant_consent,
    open_episode,
    record_drug_screen,
    refuse_if_closed,
    revoke_consent,
)
from services.intake.domain.instruments import CssrsAnswers, InstrumentAnswers, score_cssrs, score_gad7, score_phq9
from services.intake.domain.measures import load_measures_policy
from services.intake.domain.model import (
    MOST_ASSESSMENTS,
    MOST_CONSENTS,
    MOST_DRUG_SCREENS,
    Episode,
    EpisodeError,
    Recipient,
)
from services.intake.domain.patient import match_key
from services.intake.domain.placement import load_placement_policy
from services.intake.domain.reassessment import compare, trend
from services.intake.domain.safety import safety_concern
from stepwise_contract import (
    AssessmentCompleted,
    CareLevel,
    ConsentChanged,
    DimensionRatings,
    EventData,
    InstrumentResult,
    MeasureRecorded,
    OverrideReason,
    PlacementDecision,
    SafetyAlertRaised,
    ScreenResult,
    Substance,
)

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
POLICY = load_placement_policy()
MEASURES = load_measures_policy()
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


def _but_measures(events: list[EventData]) -> list[EventData]:
    """The events an assessment published before its ``iop.measure.recorded``, which comes last (test_measures.py)."""
    kept = [event for event in events if not isinstance(event, MeasureRecorded)]
    assert events[: len(kept)] == kept
    return kept


def test_an_assessment_with_an_alert_publishes_the_alert_first() -> None:
    _, published, assessment = assess(episode(), AssessmentRequest(IOP, [PHQ9_ITEM9, CSSRS_HIGH]), POLICY, NOW,
                                      MEASURES)  # fmt: skip
    events = _but_measures(published)
    assert [type(event) for event in events] == [SafetyAlertRaised, AssessmentCompleted]
    alert, completed = events
    assert isinstance(alert, SafetyAlertRaised) and isinstance(completed, AssessmentCompleted)
    assert alert.assessment_id == completed.assessment_id == assessment.assessment_id
    assert assessment.safety_alert is not None and alert.alert_id == assessment.safety_alert.alert_id
    assert alert.level == "immediate" and alert.raised_at == completed.assessed_at == NOW


def test_an_assessment_without_an_alert_publishes_only_its_completion() -> None:
    _, published, assessment = assess(episode(), AssessmentRequest(IOP, [PHQ9_MILD, GAD7]), POLICY, NOW, MEASURES)
    events = _but_measures(published)
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
    _, published, assessment = assess(episode(), AssessmentRequest(IOP, answers.results), POLICY, NOW, MEASURES)
    events = _but_measures(published)
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
    first, _, initial = assess(episode(), AssessmentRequest(IOP, [PHQ9_ITEM9]), POLICY, NOW, MEASURES)
    _, _, later = assess(first, AssessmentRequest(IOP, [PHQ9_MILD]), POLICY, NOW + timedelta(days=14), MEASURES)
    assert (initial.kind, later.kind, later.previous_assessment_id) == ("intake", "reassessment", initial.assessment_id)
    [change] = later.changes
    assert (change.instrument, change.delta, change.meaningful_change) == ("phq9", -7, "improvement")


def test_changes_cover_only_instruments_given_both_times() -> None:
    assert compare([PHQ9_MILD], [GAD7], MEASURES) == []
    [change] = compare([CSSRS_LOW], [CSSRS_HIGH], MEASURES)
    assert (change.delta, change.previous_band, change.band) == (None, "low", "high")


@pytest.mark.parametrize(("totals", "direction"), [([12], "stable"), ([12, 12], "stable"), ([12, 7], "improving"),
                                                    ([7, 9, 12], "worsening")])  # fmt: skip
def test_trend_runs_from_the_first_to_the_latest_total(totals: list[int], direction: str) -> None:
    assert trend(totals) == direction


def test_a_placement_equal_to_the_recommendation_names_the_field() -> None:
    reason: OverrideReason = "patient_declined_higher_level"
    request = AssessmentRequest(IOP, [], placement=PlacementDecision(chosen_level=CareLevel.IOP, reason_code=reason))
    with pytest.raises(EpisodeError) as refused:
        assess(episode(), request, POLICY, NOW, MEASURES)
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


# What one episode keeps: bounded, so its record stays far below the store's 16 MB document limit


def _full(current: Episode, assessments: int = 0, screens: int = 0, consents: int = 0) -> Episode:
    """``current`` with copies of its first assessment, drug screen and consent up to these counts."""
    return current.model_copy(update={"assessments": current.assessments[:1] * assessments,
                                      "drug_screens": current.drug_screens[:1] * screens,
                                      "consents": current.consents[:1] * consents})  # fmt: skip


def _largest_records() -> Episode:
    """An episode with its largest possible assessment, drug screen and consent (one each)."""
    answers = InstrumentAnswers.model_validate(
        {"phq9": [3] * 9, "gad7": [3] * 7, "audit": {"items": [4] * 8 + [4, 4]}, "dast10": [True] * 10,
         "cssrs": {"q1": True, "q2": True, "q3": True, "q4": True, "q5": True, "q6": True, "q6_within_3_months": True},
         "bam": {f"item{n}": 4 for n in range(1, 18) if n != 7} | {"item7": ["x" * 40] * 20}}
    )  # fmt: skip
    placement = PlacementDecision(chosen_level=CareLevel.OP, reason_code="patient_declined_higher_level")
    request = AssessmentRequest(IOP, answers.score(), placement, placement_note="n" * 2000, recorded_by="r" * 200)
    current, _, _ = assess(episode(), request, POLICY, NOW, MEASURES)
    results = [ScreenResult(substance=substance, result="positive") for substance in get_args(Substance)]
    current, _, _ = record_drug_screen(current, NOW, results, "r" * 200, NOW)
    recipient = Recipient(name="n" * 200, email=f"{'e' * 64}@{'d' * 63}.{'d' * 63}.org", phone="+12025550123",
                          relationship="r" * 100)  # fmt: skip
    scopes = ["appointments", "attendance", "level_of_care", "general_progress", "alumni_program"]
    current, _, _ = grant_consent(current, ConsentTerms("family", recipient, scopes), NOW, by="b" * 200)  # type: ignore[arg-type]
    return current


def test_the_fullest_episode_stays_far_below_the_document_limit() -> None:
    fullest = _full(_largest_records(), MOST_ASSESSMENTS, MOST_DRUG_SCREENS, MOST_CONSENTS)
    size = len(bson.encode(fullest.model_dump(mode="python")))
    assert size < 2 * 1024 * 1024, size  # as domain/model.py says: the outbox and applied-event keys have room


@pytest.mark.parametrize(
    ("counts", "decide", "what"),
    [
        ((MOST_ASSESSMENTS, 0, 0), lambda e: assess(e, AssessmentRequest(IOP, [PHQ9_MILD]), POLICY, NOW, MEASURES),
         "assessments"),
        ((0, MOST_DRUG_SCREENS, 0), lambda e: record_drug_screen(e, NOW, [], "r", NOW), "drug screens"),
        ((0, 0, MOST_CONSENTS), lambda e: grant_consent(e, family(["attendance"]), NOW), "consents"),
    ],
)  # fmt: skip
def test_a_full_episode_refuses_a_new_record_saying_why(
    counts: tuple[int, int, int], decide: Callable[[Episode], object], what: str
) -> None:
    full = _full(_largest_records(), *counts)
    with pytest.raises(EpisodeError) as refused:
        decide(full)
    assert refused.value.code == "episode_full" and f"holds {max(counts)} {what}" in str(refused.value)
    decide(_full(_largest_records(), *(max(count - 1, 0) for count in counts)))  # one below the bound: taken


def test_a_retried_record_is_answered_even_from_a_full_episode() -> None:
    request = AssessmentRequest(IOP, [PHQ9_MILD], assessment_id="a-1")
    recorded, _, first = assess(episode(), request, POLICY, NOW, MEASURES)
    full = recorded.model_copy(update={"assessments": recorded.assessments * MOST_ASSESSMENTS})
    assert assess(full, request, POLICY, NOW, MEASURES)[2] == first


# Closing: care_plan graduated or discharged the episode


def test_closing_keeps_how_and_when_and_closing_again_changes_nothing() -> None:
    closed, events, _ = close(episode(), "graduated", NOW)
    assert (closed.status, closed.ended, closed.closed_at, events) == ("closed", "graduated", NOW, [])
    again, events, _ = close(closed, "discharged", NOW + timedelta(days=1))
    assert (again, events) == (closed, [])


def test_a_closed_episode_says_when_and_how_it_ended() -> None:
    refuse_if_closed(episode())  # open: nothing to refuse
    closed, _, _ = close(episode(), "discharged", NOW)
    with pytest.raises(EpisodeError) as refused:
        refuse_if_closed(closed)
    assert refused.value.code == "episode_not_open"
    assert str(refused.value) == "episode is closed (discharged on 2026-11-23): record it in a new episode"


# A patient registered twice


def test_the_match_key_ignores_case_and_spaces_but_not_the_birth_date() -> None:
    key = match_key("Alex Example", date(1990, 4, 1))
    assert match_key("  alex   EXAMPLE ", "1990-04-01") == match_key("AlexExample", "1990-04-01") == key
    assert match_key("Zoe\u0308 Example", "1990-04-01") == match_key("Zoë example", "1990-04-01")
    assert match_key("Alex Example", "1990-04-02") != key and match_key("Alex Exemple", "1990-04-01") != key
    assert "alex" not in key.lower()  # a hash: the name is not repeated in the index
