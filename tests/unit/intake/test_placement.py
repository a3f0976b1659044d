"""Level-of-care recommendation under the default placement policy, and properties under any valid policy."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.intake.domain.instruments import INSTRUMENTS
from services.intake.domain.placement import (
    PlacementPolicy,
    Recommendation,
    load_placement_policy,
    recommend_level,
)
from stepwise_contract import LEVEL_ORDER, CareLevel, DimensionRatings, InstrumentResult, Program

POLICY = load_placement_policy()
DIMENSIONS = ("withdrawal", "biomedical", "emotional", "readiness", "relapse", "environment")
PROGRAMS: tuple[Program, ...] = ("adult", "adolescent")
NON_MEDICAL = ("emotional", "readiness", "relapse", "environment")
RANK = {level: rank for rank, level in enumerate(LEVEL_ORDER)}
IMPLIED = {0: CareLevel.OP, 1: CareLevel.OP, 2: CareLevel.IOP, 3: CareLevel.PHP, 4: CareLevel.RESIDENTIAL}


def ratings(**values: int) -> DimensionRatings:
    return DimensionRatings(**{name: values.get(name, 0) for name in DIMENSIONS})


def result(instrument: str, band: str, total: int | None = None, flags: tuple[str, ...] = ()) -> InstrumentResult:
    return InstrumentResult(instrument=instrument, total=total, band=band, flags=list(flags))


def recommend(
    dimensions: DimensionRatings,
    *instruments: InstrumentResult,
    program: Program = "adult",
    policy: PlacementPolicy = POLICY,
) -> Recommendation:
    return recommend_level(dimensions, list(instruments), program, policy)


def codes(recommendation: Recommendation) -> list[str]:
    return [reason.code for reason in recommendation.rationale]


# --- the dimensions alone (the first, simple rule, unchanged under the default policy) --------------


def test_default_policy_version_is_recorded() -> None:
    recommendation = recommend(ratings())
    assert POLICY.version == "placement-default-2026.11"
    assert recommendation.policy_version == POLICY.version


@pytest.mark.parametrize(
    ("highest", "level"),
    [(0, CareLevel.OP), (1, CareLevel.OP), (2, CareLevel.IOP), (3, CareLevel.PHP)],
)
@pytest.mark.parametrize("dimension", DIMENSIONS)
def test_max_rating_sets_level(highest: int, level: CareLevel, dimension: str) -> None:
    others = {name: min(highest, 1) for name in DIMENSIONS if name != dimension}
    recommendation = recommend(ratings(**others, **{dimension: highest}))
    assert recommendation.level is level
    assert recommendation.refer_out is False
    assert codes(recommendation) == ["highest_dimension", "recommended_level"]
    first, last = recommendation.rationale
    assert f"rating is {highest}" in first.text
    assert first.text.endswith(f": {level.value}.")
    assert last.text == f"Recommended level of care: {level.value}."


@pytest.mark.parametrize("dimension", NON_MEDICAL)
def test_non_medical_dimension_at_4_is_residential_and_referred_out(dimension: str) -> None:
    recommendation = recommend(ratings(withdrawal=3, biomedical=3, **{dimension: 4}))
    assert recommendation.level is CareLevel.RESIDENTIAL
    assert recommendation.refer_out is True
    assert codes(recommendation) == ["highest_dimension", "recommended_level"]
    assert recommendation.rationale[0].text == f"Highest dimension rating is 4 ({dimension}): RESIDENTIAL."
    assert recommendation.rationale[-1].text == (
        "Recommended level of care: RESIDENTIAL; refer out to a program that provides it."
    )


@pytest.mark.parametrize("dimension", ["withdrawal", "biomedical"])
def test_medical_dimension_at_4_is_inpatient(dimension: str) -> None:
    recommendation = recommend(ratings(emotional=4, relapse=2, **{dimension: 4}))
    assert recommendation.level is CareLevel.INPATIENT
    assert recommendation.refer_out is True
    assert codes(recommendation) == ["highest_dimension", "medical_severe", "recommended_level"]
    text = recommendation.rationale[1].text
    assert text == f"Severe medical need ({dimension} rated 4): medically managed inpatient care; refer out."
    other = {"withdrawal": "biomedical", "biomedical": "withdrawal"}[dimension]
    assert other not in text


@pytest.mark.parametrize("rating", [0, 1, 2, 3])
@pytest.mark.parametrize("dimension", ["withdrawal", "biomedical"])
def test_medical_dimension_below_4_has_no_medical_rule(rating: int, dimension: str) -> None:
    recommendation = recommend(ratings(**{dimension: rating}))
    assert "medical_severe" not in codes(recommendation)
    assert recommendation.level is IMPLIED[rating]


def test_both_medical_dimensions_at_4_are_both_named() -> None:
    recommendation = recommend(ratings(withdrawal=4, biomedical=4))
    assert recommendation.level is CareLevel.INPATIENT
    assert recommendation.rationale[1].text.startswith("Severe medical need (withdrawal and biomedical rated 4)")


def test_rationale_names_every_driving_dimension_and_only_those() -> None:
    recommendation = recommend(
        DimensionRatings(withdrawal=1, biomedical=3, emotional=2, readiness=3, relapse=0, environment=3)
    )
    assert recommendation.level is CareLevel.PHP
    assert recommendation.rationale[0].text == (
        "Highest dimension rating is 3 (biomedical, readiness, environment): PHP."
    )


def test_ratings_are_not_averaged() -> None:
    # One 3 among zeros is PHP; many 2s never add up to more than IOP.
    assert recommend(ratings(relapse=3)).level is CareLevel.PHP
    assert recommend(ratings(**dict.fromkeys(DIMENSIONS, 2))).level is CareLevel.IOP


# --- instrument rules, each at its boundary ---------------------------------------------------------

INSTRUMENT_CASES = [
    # (result, code of the rule that fires or None, level from all-zero dimensions)
    (result("cssrs", "high", flags=("immediate_safety_alert",)), "cssrs_high", CareLevel.INPATIENT),
    (result("cssrs", "moderate", flags=("clinician_review",)), "cssrs_moderate", CareLevel.IOP),
    (result("cssrs", "low"), None, CareLevel.OP),
    (result("phq9", "severe", 20), "phq9_severe", CareLevel.PHP),
    (result("phq9", "moderately_severe", 19), "phq9_moderately_severe", CareLevel.IOP),
    (result("phq9", "moderately_severe", 15), "phq9_moderately_severe", CareLevel.IOP),
    (result("phq9", "moderate", 14, ("same_day_review",)), None, CareLevel.OP),
    (result("gad7", "severe", 15), "gad7_severe", CareLevel.IOP),
    (result("gad7", "moderate", 14, ("further_assessment",)), None, CareLevel.OP),
    (result("dast10", "substantial", 6, ("intensive_assessment",)), "dast10_substantial", CareLevel.IOP),
    (result("dast10", "moderate", 5), None, CareLevel.OP),
    (result("audit", "possible_dependence", 20, ("specialist_referral",)), "audit_possible_dependence", CareLevel.IOP),
    (result("audit", "harmful", 19), None, CareLevel.OP),
    (result("audit_c", "positive", 4), None, CareLevel.OP),
    (result("bam", "reported", flags=("use_reported",)), None, CareLevel.OP),
]


@pytest.mark.parametrize("program", PROGRAMS)
@pytest.mark.parametrize(("instrument", "code", "level"), INSTRUMENT_CASES)
def test_instrument_rule_at_its_boundary(
    instrument: InstrumentResult, code: str | None, level: CareLevel, program: Program
) -> None:
    recommendation = recommend(ratings(), instrument, program=program)
    assert recommendation.level is level
    expected = ["highest_dimension", *([code] if code else []), "recommended_level"]
    assert codes(recommendation) == expected
    assert recommendation.refer_out is (level in (CareLevel.RESIDENTIAL, CareLevel.INPATIENT))


@pytest.mark.parametrize(
    ("instrument", "text"),
    [
        (result("cssrs", "high"), "High suicide risk on the C-SSRS screener: evaluate for inpatient care now."),
        (result("cssrs", "moderate"), "Moderate suicide risk on the C-SSRS screener: at least IOP."),
        (result("phq9", "severe", 23), "Severe depression symptoms on the PHQ-9 (total 23): at least PHP."),
        (
            result("phq9", "moderately_severe", 17),
            "Moderately severe depression symptoms on the PHQ-9 (total 17): at least IOP.",
        ),
        (result("gad7", "severe", 18), "Severe anxiety symptoms on the GAD-7 (total 18): at least IOP."),
        (
            result("dast10", "substantial", 7),
            "Drug use problems on the DAST-10 (total 7, substantial; 6 or more): at least IOP.",
        ),
        (
            result("audit", "possible_dependence", 25),
            "Possible alcohol dependence on the AUDIT (total 25; 20 or more): at least IOP.",
        ),
    ],
)
def test_instrument_rule_rationale_text(instrument: InstrumentResult, text: str) -> None:
    recommendation = recommend(ratings(), instrument)
    assert recommendation.rationale[1].text == text


def test_a_rule_that_does_not_raise_the_level_still_gives_its_reason() -> None:
    recommendation = recommend(ratings(relapse=3), result("gad7", "severe", 21))
    assert recommendation.level is CareLevel.PHP
    assert codes(recommendation) == ["highest_dimension", "gad7_severe", "recommended_level"]
    assert recommendation.rationale[-1].text == "Recommended level of care: PHP."


def test_every_matching_rule_gives_a_reason_and_the_highest_minimum_wins() -> None:
    recommendation = recommend(
        ratings(emotional=1),
        result("phq9", "severe", 24, ("same_day_review",)),
        result("gad7", "severe", 16),
        result("cssrs", "high", flags=("immediate_safety_alert",)),
    )
    assert recommendation.level is CareLevel.INPATIENT
    assert recommendation.refer_out is True
    assert codes(recommendation) == [
        "highest_dimension",
        "cssrs_high",
        "phq9_severe",
        "gad7_severe",
        "recommended_level",
    ]


def test_instrument_rule_raises_above_the_dimension_level() -> None:
    recommendation = recommend(ratings(readiness=2, relapse=1), result("phq9", "severe", 20))
    assert recommendation.level is CareLevel.PHP
    assert recommendation.rationale[0].text == "Highest dimension rating is 2 (readiness): IOP."


# --- co-occurring needs -------------------------------------------------------------------------------

CO_OCCURRING_CASES = [
    (result("audit", "harmful", 16), True),
    (result("audit", "hazardous", 15), False),
    (result("dast10", "moderate", 3), True),
    (result("dast10", "low", 2), False),
    (result("audit_c", "positive", 4), True),
    (result("audit_c", "negative", 2), False),
    (result("bam", "reported", flags=("use_reported",)), False),
    (result("phq9", "severe", 27), False),  # a mental-health result is not a substance-use result
]


@pytest.mark.parametrize(("substance", "fires"), CO_OCCURRING_CASES)
def test_co_occurring_raises_one_step_at_its_thresholds(substance: InstrumentResult, fires: bool) -> None:
    recommendation = recommend(ratings(emotional=2, relapse=1), substance)
    assert ("co_occurring" in codes(recommendation)) is fires
    if substance.instrument == "phq9":
        assert recommendation.level is CareLevel.PHP  # the phq9_severe rule, not a raise
    else:
        assert recommendation.level is (CareLevel.PHP if fires else CareLevel.IOP)


def test_co_occurring_needs_the_emotional_dimension_at_2() -> None:
    recommendation = recommend(ratings(emotional=1, relapse=2), result("audit", "harmful", 18))
    assert recommendation.level is CareLevel.IOP
    assert "co_occurring" not in codes(recommendation)


def test_co_occurring_rationale() -> None:
    recommendation = recommend(ratings(emotional=2), result("audit_c", "negative", 1), result("dast10", "moderate", 4))
    assert codes(recommendation) == ["highest_dimension", "co_occurring", "recommended_level"]
    assert recommendation.rationale[1].text == (
        "Co-occurring mental-health and substance-use needs (emotional rated 2; dast10 moderate): "
        "one step higher, at least PHP."
    )


def test_co_occurring_applies_after_instrument_rules() -> None:
    recommendation = recommend(ratings(emotional=3), result("audit", "possible_dependence", 24))
    assert codes(recommendation) == [
        "highest_dimension",
        "audit_possible_dependence",
        "co_occurring",
        "recommended_level",
    ]
    assert recommendation.level is CareLevel.RESIDENTIAL
    assert recommendation.refer_out is True


def test_co_occurring_is_capped_at_residential() -> None:
    recommendation = recommend(ratings(emotional=4), result("audit", "possible_dependence", 30))
    assert recommendation.level is CareLevel.RESIDENTIAL
    assert recommendation.rationale[2].text.endswith("at least RESIDENTIAL.")


def test_co_occurring_never_lowers_a_level_above_the_cap() -> None:
    recommendation = recommend(ratings(emotional=2, withdrawal=4), result("dast10", "substantial", 8))
    assert recommendation.level is CareLevel.INPATIENT
    assert "co_occurring" in codes(recommendation)
    assert recommendation.rationale[-1].code == "recommended_level"


# --- the programs filter ---------------------------------------------------------------------------


def policy_with(**changes: Any) -> PlacementPolicy:
    return PlacementPolicy.model_validate({**POLICY.model_dump(mode="json"), **changes})


ADOLESCENT_AUDIT_C = {
    "code": "audit_c_adolescent",
    "instrument": "audit_c",
    "bands": ["positive"],
    "programs": ["adolescent"],
    "minimum_level": "IOP",
    "text": "Positive AUDIT-C in an adolescent: at least IOP.",
}


def test_rule_limited_to_adolescents_does_not_fire_for_adults() -> None:
    policy = policy_with(instrument_rules=[ADOLESCENT_AUDIT_C])
    positive = result("audit_c", "positive", 5)
    adult = recommend(ratings(), positive, program="adult", policy=policy)
    adolescent = recommend(ratings(), positive, program="adolescent", policy=policy)
    assert adult.level is CareLevel.OP
    assert codes(adult) == ["highest_dimension", "recommended_level"]
    assert adolescent.level is CareLevel.IOP
    assert codes(adolescent) == ["highest_dimension", "audit_c_adolescent", "recommended_level"]
    assert adolescent.rationale[1].text == "Positive AUDIT-C in an adolescent: at least IOP."


def test_rule_with_band_and_flag_needs_both() -> None:
    rule = {
        "code": "phq9_moderate_with_self_harm",
        "instrument": "phq9",
        "bands": ["moderate", "moderately_severe"],
        "flag": "same_day_review",
        "minimum_level": "PHP",
        "text": "PHQ-9 {band} ({total}) with thoughts of self-harm: at least {minimum_level}.",
    }
    policy = policy_with(instrument_rules=[rule])
    assert recommend(ratings(), result("phq9", "moderate", 12), policy=policy).level is CareLevel.OP
    assert recommend(ratings(), result("phq9", "mild", 9, ("same_day_review",)), policy=policy).level is CareLevel.OP
    flagged = recommend(ratings(), result("phq9", "moderate", 12, ("same_day_review",)), policy=policy)
    assert flagged.level is CareLevel.PHP
    assert flagged.rationale[1].text == "PHQ-9 moderate (12) with thoughts of self-harm: at least PHP."


def test_policy_without_co_occurring_rule_does_not_raise() -> None:
    policy = policy_with(co_occurring=None)
    recommendation = recommend(ratings(emotional=2), result("audit", "harmful", 19), policy=policy)
    assert recommendation.level is CareLevel.IOP


def test_recommendation_is_frozen() -> None:
    recommendation = recommend(ratings())
    with pytest.raises(AttributeError):
        recommendation.level = CareLevel.PHP  # type: ignore[misc]


# --- properties -----------------------------------------------------------------------------------

rating = st.integers(min_value=0, max_value=4)
all_ratings = st.fixed_dictionaries({name: rating for name in DIMENSIONS})
programs = st.sampled_from(PROGRAMS)


@st.composite
def instrument_results(draw: st.DrawFn) -> InstrumentResult:
    name = draw(st.sampled_from(sorted(INSTRUMENTS)))
    spec = INSTRUMENTS[name]
    total = None if spec.max_total is None else draw(st.integers(0, spec.max_total))
    return InstrumentResult(
        instrument=name,
        total=total,
        band=draw(st.sampled_from(spec.bands)),
        flags=draw(st.lists(st.sampled_from(spec.flags), unique=True)) if spec.flags else [],
    )


results = st.lists(instrument_results(), max_size=6)
levels = st.sampled_from(LEVEL_ORDER)


@st.composite
def conditions(draw: st.DrawFn, names: tuple[str, ...]) -> dict[str, Any]:
    name = draw(st.sampled_from(names))
    spec = INSTRUMENTS[name]
    condition: dict[str, Any] = {"instrument": name}
    choices = ["bands", "flag", "total_at_least"]
    if spec.max_total is None:
        choices.remove("total_at_least")
    if not spec.flags:
        choices.remove("flag")
    for key in draw(st.lists(st.sampled_from(choices), min_size=1, unique=True)):
        if key == "bands":
            condition["bands"] = draw(st.lists(st.sampled_from(spec.bands), min_size=1, unique=True))
        elif key == "flag":
            condition["flag"] = draw(st.sampled_from(spec.flags))
        else:
            assert spec.max_total is not None
            condition["total_at_least"] = draw(st.integers(0, spec.max_total))
    return condition


@st.composite
def policies(draw: st.DrawFn) -> PlacementPolicy:
    """Any valid policy: a non-decreasing rating map and random rules."""
    ranks = sorted(draw(st.lists(st.integers(0, len(LEVEL_ORDER) - 1), min_size=5, max_size=5)))
    dimension_rules = [
        {
            "code": f"dimension_{index}",
            "dimensions": draw(st.lists(st.sampled_from(DIMENSIONS), min_size=1, unique=True)),
            "rating_at_least": draw(rating),
            "minimum_level": draw(levels).value,
            "text": "{dimensions} rated {rating}.",
        }
        for index in range(draw(st.integers(0, 2)))
    ]
    instrument_rules = [
        {
            **draw(conditions(tuple(sorted(INSTRUMENTS)))),
            "code": f"instrument_{index}",
            "programs": draw(st.lists(programs, min_size=1, unique=True)),
            "minimum_level": draw(levels).value,
            "text": "{instrument} {band}.",
        }
        for index in range(draw(st.integers(0, 4)))
    ]
    co_occurring = draw(
        st.none()
        | st.fixed_dictionaries(
            {
                "code": st.just("co_occurring"),
                "emotional_at_least": rating,
                "substance_results": st.lists(
                    conditions(("audit", "audit_c", "dast10", "bam")), min_size=1, max_size=3
                ),
                "raise_by": st.integers(1, 4),
                "cap": levels.map(lambda level: level.value),
                "text": st.just("{instrument} {band}: {level}."),
            }
        )
    )
    return PlacementPolicy.model_validate(
        {
            "version": "property",
            "levels_by_rating": {rating: LEVEL_ORDER[rank].value for rating, rank in enumerate(ranks)},
            "dimension_rules": dimension_rules,
            "instrument_rules": instrument_rules,
            "co_occurring": co_occurring,
        }
    )


any_policy = st.one_of(st.just(POLICY), policies())


@given(all_ratings)
def test_without_instruments_the_default_policy_is_the_simple_rule(values: dict[str, int]) -> None:
    level = recommend(DimensionRatings(**values)).level
    medical_severe = values["withdrawal"] == 4 or values["biomedical"] == 4
    assert level is (CareLevel.INPATIENT if medical_severe else IMPLIED[max(values.values())])


@given(all_ratings, results, programs, any_policy)
def test_level_never_lower_than_max_rating_implies(
    values: dict[str, int], found: list[InstrumentResult], program: Program, policy: PlacementPolicy
) -> None:
    recommendation = recommend(DimensionRatings(**values), *found, program=program, policy=policy)
    implied = policy.levels_by_rating[max(values.values())]
    assert RANK[recommendation.level] >= RANK[implied]
    assert recommendation.refer_out is (recommendation.level in (CareLevel.RESIDENTIAL, CareLevel.INPATIENT))
    assert recommendation.rationale[0].code == "highest_dimension"
    assert recommendation.rationale[-1].code == "recommended_level"
    assert recommendation.rationale[-1].text.startswith(f"Recommended level of care: {recommendation.level.value}")
    assert recommendation.policy_version == policy.version


@given(all_ratings, results, st.sampled_from(DIMENSIONS), st.integers(1, 4), programs, any_policy)
def test_level_monotone_when_a_rating_increases(
    values: dict[str, int],
    found: list[InstrumentResult],
    dimension: str,
    step: int,
    program: Program,
    policy: PlacementPolicy,
) -> None:
    raised = {**values, dimension: min(4, values[dimension] + step)}
    before = recommend(DimensionRatings(**values), *found, program=program, policy=policy).level
    after = recommend(DimensionRatings(**raised), *found, program=program, policy=policy).level
    assert RANK[after] >= RANK[before]


@given(all_ratings, results, instrument_results(), st.integers(0, 6), programs, any_policy)
def test_level_monotone_when_an_instrument_result_is_added(
    values: dict[str, int],
    found: list[InstrumentResult],
    added: InstrumentResult,
    position: int,
    program: Program,
    policy: PlacementPolicy,
) -> None:
    more = [*found[:position], added, *found[position:]]
    before = recommend(DimensionRatings(**values), *found, program=program, policy=policy).level
    after = recommend(DimensionRatings(**values), *more, program=program, policy=policy).level
    assert RANK[after] >= RANK[before]


@given(st.sampled_from(DIMENSIONS), results, programs)
def test_a_single_3_among_zeros_is_at_least_php(
    dimension: str, found: list[InstrumentResult], program: Program
) -> None:
    recommendation = recommend(ratings(**{dimension: 3}), *found, program=program)
    assert RANK[recommendation.level] >= RANK[CareLevel.PHP]
