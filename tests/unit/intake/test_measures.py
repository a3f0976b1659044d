"""Classification of a score against the episode's baseline, at every threshold edge (issue 24)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.policy_file import PolicyError
from services.intake.domain.episode import AssessmentRequest, MeasureRequest, assess, open_episode, record_measure
from services.intake.domain.instruments import CssrsAnswers, score_cssrs, score_gad7, score_phq9
from services.intake.domain.measures import (
    InstrumentThresholds,
    classify,
    load_measures_policy,
    measure_all,
    recovered,
    response,
)
from services.intake.domain.placement import load_placement_policy
from services.intake.domain.reassessment import compare
from stepwise_contract import DimensionRatings, MeasureRecorded, SafetyAlertRaised

POLICY = load_measures_policy()
PHQ9 = POLICY.instruments["phq9"]
GAD7 = POLICY.instruments["gad7"]
NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
SCORES = st.integers(min_value=0, max_value=27)


def test_the_defaults_are_nhs_talking_therapies_with_their_source() -> None:
    assert (PHQ9.points, PHQ9.caseness, GAD7.points, GAD7.caseness) == (6, 10, 4, 8)
    assert all("NHS Talking Therapies" in t.source and "Jacobson" in t.source for t in POLICY.instruments.values())
    assert "988" in POLICY.crisis_resources


@given(SCORES, SCORES)
def test_phq9_classification_is_reliable_from_six_points_on(baseline: int, score: int) -> None:
    change = score - baseline
    expected = ("reliable_improvement" if change <= -6 else "reliable_deterioration" if change >= 6
                else "no_reliable_change")  # fmt: skip
    assert classify(baseline, score, PHQ9) == expected


@pytest.mark.parametrize(("baseline", "score", "expected"), [
    (16, 11, "no_reliable_change"), (16, 10, "reliable_improvement"), (10, 15, "no_reliable_change"),
    (10, 16, "reliable_deterioration"), (16, 16, "no_reliable_change")])  # fmt: skip
def test_phq9_edges(baseline: int, score: int, expected: str) -> None:
    assert classify(baseline, score, PHQ9) == expected


@pytest.mark.parametrize(("baseline", "score", "expected"), [
    (12, 9, "no_reliable_change"), (12, 8, "reliable_improvement"), (5, 8, "no_reliable_change"),
    (5, 9, "reliable_deterioration")])  # fmt: skip
def test_gad7_edges(baseline: int, score: int, expected: str) -> None:
    assert classify(baseline, score, GAD7) == expected


@given(SCORES, SCORES)
def test_recovered_is_from_caseness_to_below_it(baseline: int, score: int) -> None:
    assert recovered(baseline, score, PHQ9) == (baseline >= 10 and score <= 9)
    assert recovered(baseline, score, None) is False


@pytest.mark.parametrize(("baseline", "score", "expected"), [(10, 9, True), (9, 0, False), (10, 10, False),
                                                            (27, 9, True)])  # fmt: skip
def test_recovered_edges(baseline: int, score: int, expected: bool) -> None:
    assert recovered(baseline, score, PHQ9) is expected


@given(SCORES, SCORES)
def test_response_is_at_least_half_below_the_baseline(baseline: int, score: int) -> None:
    assert response(baseline, score) == (baseline > 0 and score <= baseline / 2)


@pytest.mark.parametrize(("baseline", "score", "expected"), [(20, 10, True), (20, 11, False), (15, 7, True),
                                                            (15, 8, False), (0, 0, False)])  # fmt: skip
def test_response_edges(baseline: int, score: int, expected: bool) -> None:
    assert response(baseline, score) is expected


@given(st.floats(min_value=0.5, max_value=20), st.floats(min_value=0.01, max_value=0.99), SCORES, SCORES)
def test_jacobson_truax_reliable_change_is_strictly_beyond_196_standard_errors(
    sd: float, reliability: float, baseline: int, score: int
) -> None:
    thresholds = InstrumentThresholds(sd=sd, reliability=reliability, source="test")
    s_diff = math.sqrt(2) * sd * math.sqrt(1 - reliability)
    reliable = abs(score - baseline) > 1.96 * s_diff
    assert (classify(baseline, score, thresholds) != "no_reliable_change") == reliable


def test_a_jacobson_truax_example_gives_its_points() -> None:
    # SD 5, r 0.84: S_diff = sqrt(2) * 5 * 0.4 = 2.83; 1.96 * 2.83 = 5.54, so 6 points are reliable.
    assert InstrumentThresholds(sd=5, reliability=0.84, source="example").points == 6


@pytest.mark.parametrize("given_thresholds", [{}, {"reliable_change": 6, "sd": 5, "reliability": 0.8}, {"sd": 5}])
def test_thresholds_need_one_way_to_the_reliable_change(given_thresholds: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="reliable_change, or sd and reliability"):
        InstrumentThresholds(source="x", **given_thresholds)


def test_a_policy_naming_an_instrument_without_a_total_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "measures.yaml"
    path.write_text(
        'version: "x"\ncrisis_resources: "call 988"\ninstruments:\n  cssrs: {reliable_change: 1, source: s}\n'
    )
    with pytest.raises(PolicyError, match=r"instruments.cssrs"):
        load_measures_policy(path)


def test_first_score_is_the_baseline_then_compared_with_it_and_the_previous() -> None:
    [first] = measure_all([score_phq9([2] * 8 + [0])], {}, POLICY)
    assert (first.classification, first.baseline_score, first.previous_score) == ("baseline", 16, None)
    [later] = measure_all([score_phq9([1] * 8 + [0])], {"phq9": [16, 12]}, POLICY)
    assert (later.score, later.baseline_score, later.previous_score) == (8, 16, 12)
    assert (later.classification, later.recovered, later.response) == ("reliable_improvement", True, True)


def test_an_instrument_without_a_total_is_left_out_and_one_without_thresholds_never_reliably_changes() -> None:
    cssrs = score_cssrs(CssrsAnswers(q1=False, q2=False, q6=False))
    assert measure_all([cssrs], {}, POLICY) == []
    no_policy = POLICY.model_copy(update={"instruments": {}})
    [gad7] = measure_all([score_gad7([0] * 7)], {"gad7": [21]}, no_policy)
    assert (gad7.classification, gad7.recovered, gad7.response) == ("no_reliable_change", False, True)


def test_meaningful_change_between_assessments_follows_the_same_threshold() -> None:
    five_better = compare([score_phq9([2] * 8 + [0])], [score_phq9([2] * 5 + [1] * 3 + [0] + [])], POLICY)
    assert (five_better[0].delta, five_better[0].meaningful_change) == (-3, None)
    [six_better] = compare([score_phq9([2] * 8 + [0])], [score_phq9([1] * 8 + [0])][:1], POLICY)
    assert six_better.meaningful_change == "improvement"  # -8
    [five_worse] = compare([score_phq9([0] * 9)], [score_phq9([1] * 5 + [0] * 4)], POLICY)
    assert (five_worse.delta, five_worse.meaningful_change) == (5, None)  # 5 points were "meaningful" before
    [six_worse] = compare([score_phq9([0] * 9)], [score_phq9([1] * 6 + [0] * 3)], POLICY)
    assert six_worse.meaningful_change == "worsening"


IOP = DimensionRatings(withdrawal=1, biomedical=1, emotional=2, readiness=1, relapse=2, environment=1)


def test_a_measure_is_compared_with_the_assessments_before_it_and_publishes_its_change() -> None:
    episode = open_episode("p1", "adult", NOW, "e1")
    assessed, events, _ = assess(episode, AssessmentRequest(IOP, [score_phq9([2] * 8 + [0])]), load_placement_policy(),
                                 NOW, POLICY)  # fmt: skip
    [baseline] = [event for event in events if isinstance(event, MeasureRecorded)]
    assert (baseline.source, baseline.instruments[0].classification) == ("assessment", "baseline")
    request = MeasureRequest(results=[score_phq9([1] * 8 + [1])], measure_id="m1")
    measured, events, measure = record_measure(assessed, request, POLICY, NOW + timedelta(days=7))
    alert, recorded = events
    assert isinstance(alert, SafetyAlertRaised) and alert.assessment_id == "m1" and alert.level == "same_day"
    assert isinstance(recorded, MeasureRecorded) and recorded.source == "measure" and recorded.measure_id == "m1"
    assert recorded.instruments[0].classification == "reliable_improvement" and measure.safety_alert is not None
    assert record_measure(measured, request, POLICY, NOW + timedelta(days=8)) == (measured, [], measure)
