"""Level-of-care recommendation: the highest-risk dimension sets the level."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.intake.domain.placement import POLICY_VERSION, recommend_level
from stepwise_contract import CareLevel, DimensionRatings

DIMENSIONS = ("withdrawal", "biomedical", "emotional", "readiness", "relapse", "environment")
NON_MEDICAL = ("emotional", "readiness", "relapse", "environment")
ORDER = [CareLevel.OP, CareLevel.IOP, CareLevel.PHP, CareLevel.RESIDENTIAL, CareLevel.INPATIENT]
RANK = {level: rank for rank, level in enumerate(ORDER)}
IMPLIED = {0: CareLevel.OP, 1: CareLevel.OP, 2: CareLevel.IOP, 3: CareLevel.PHP, 4: CareLevel.RESIDENTIAL}


def ratings(**values: int) -> DimensionRatings:
    return DimensionRatings(**{name: values.get(name, 0) for name in DIMENSIONS})


@pytest.mark.parametrize(
    ("highest", "level"),
    [(0, CareLevel.OP), (1, CareLevel.OP), (2, CareLevel.IOP), (3, CareLevel.PHP)],
)
@pytest.mark.parametrize("dimension", DIMENSIONS)
def test_max_rating_sets_level(highest: int, level: CareLevel, dimension: str) -> None:
    others = {name: min(highest, 1) for name in DIMENSIONS if name != dimension}
    recommendation = recommend_level(ratings(**others, **{dimension: highest}))
    assert recommendation.level is level
    assert recommendation.policy_version == POLICY_VERSION == "simple-1"
    assert len(recommendation.rationale) == 1
    reason = recommendation.rationale[0]
    assert reason.code == "highest_dimension"
    assert f"rating is {highest}" in reason.text
    assert reason.text.endswith(f": {level.value}.")


@pytest.mark.parametrize("dimension", NON_MEDICAL)
def test_non_medical_dimension_at_4_is_residential(dimension: str) -> None:
    recommendation = recommend_level(ratings(withdrawal=3, biomedical=3, **{dimension: 4}))
    assert recommendation.level is CareLevel.RESIDENTIAL
    reason = recommendation.rationale[0]
    assert reason.code == "highest_dimension"
    assert reason.text == f"Highest dimension rating is 4 ({dimension}): RESIDENTIAL."


@pytest.mark.parametrize("dimension", ["withdrawal", "biomedical"])
def test_medical_dimension_at_4_is_inpatient(dimension: str) -> None:
    recommendation = recommend_level(ratings(emotional=4, relapse=2, **{dimension: 4}))
    assert recommendation.level is CareLevel.INPATIENT
    assert len(recommendation.rationale) == 1
    reason = recommendation.rationale[0]
    assert reason.code == "medical_severe"
    assert dimension in reason.text.lower()
    other = {"withdrawal": "biomedical", "biomedical": "withdrawal"}[dimension]
    assert other not in reason.text.lower()
    assert "4" in reason.text


def test_both_medical_dimensions_at_4_are_both_named() -> None:
    recommendation = recommend_level(ratings(withdrawal=4, biomedical=4))
    assert recommendation.level is CareLevel.INPATIENT
    text = recommendation.rationale[0].text.lower()
    assert "withdrawal" in text and "biomedical" in text


def test_rationale_names_every_driving_dimension_and_only_those() -> None:
    recommendation = recommend_level(
        DimensionRatings(withdrawal=1, biomedical=3, emotional=2, readiness=3, relapse=0, environment=3)
    )
    assert recommendation.level is CareLevel.PHP
    assert recommendation.rationale[0].text == (
        "Highest dimension rating is 3 (biomedical, readiness, environment): PHP."
    )


def test_ratings_are_not_averaged() -> None:
    # One 3 among zeros is PHP; many 2s never add up to more than IOP.
    assert recommend_level(ratings(relapse=3)).level is CareLevel.PHP
    assert recommend_level(ratings(**dict.fromkeys(DIMENSIONS, 2))).level is CareLevel.IOP


rating = st.integers(min_value=0, max_value=4)
all_ratings = st.fixed_dictionaries({name: rating for name in DIMENSIONS})


@given(all_ratings)
def test_level_never_lower_than_max_rating_implies(values: dict[str, int]) -> None:
    level = recommend_level(DimensionRatings(**values)).level
    implied = IMPLIED[max(values.values())]
    assert RANK[level] >= RANK[implied]
    medical_severe = values["withdrawal"] == 4 or values["biomedical"] == 4
    assert level is (CareLevel.INPATIENT if medical_severe else implied)


@given(all_ratings, st.sampled_from(DIMENSIONS), st.integers(min_value=1, max_value=4))
def test_level_monotone_when_a_rating_increases(values: dict[str, int], dimension: str, step: int) -> None:
    raised = {**values, dimension: min(4, values[dimension] + step)}
    before = recommend_level(DimensionRatings(**values)).level
    after = recommend_level(DimensionRatings(**raised)).level
    assert RANK[after] >= RANK[before]
