"""PHQ-9 and GAD-7 scoring: totals, severity bands and flags."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.intake.domain.instruments import score_all, score_gad7, score_phq9

PHQ9_BANDS = [
    (0, 4, "minimal"),
    (5, 9, "mild"),
    (10, 14, "moderate"),
    (15, 19, "moderately_severe"),
    (20, 27, "severe"),
]
GAD7_BANDS = [(0, 4, "minimal"), (5, 9, "mild"), (10, 14, "moderate"), (15, 21, "severe")]
PHQ9_RANK = {name: rank for rank, (_, _, name) in enumerate(PHQ9_BANDS)}
GAD7_RANK = {name: rank for rank, (_, _, name) in enumerate(GAD7_BANDS)}


def items_for(total: int, count: int, *, last_zero: bool = False) -> list[int]:
    """Answers (0-3 each) that add up to ``total``, filled from the first item."""
    items = []
    remaining = total
    for index in range(count):
        value = 0 if (last_zero and index == count - 1) else min(3, remaining)
        items.append(value)
        remaining -= value
    assert remaining == 0, f"cannot reach {total} with {count} items"
    assert sum(items) == total and len(items) == count
    return items


def band_in(total: int, table: list[tuple[int, int, str]]) -> str:
    return next(name for low, high, name in table if low <= total <= high)


PHQ9_BOUNDARIES = sorted({t for low, high, _ in PHQ9_BANDS for t in (low, high)})
GAD7_BOUNDARIES = sorted({t for low, high, _ in GAD7_BANDS for t in (low, high)})


@pytest.mark.parametrize(
    ("total", "band"),
    [
        (0, "minimal"),
        (4, "minimal"),
        (5, "mild"),
        (9, "mild"),
        (10, "moderate"),
        (14, "moderate"),
        (15, "moderately_severe"),
        (19, "moderately_severe"),
        (20, "severe"),
        (27, "severe"),
    ],
)
def test_phq9_band_boundaries(total: int, band: str) -> None:
    # Item 9 kept at 0 where possible so the flag does not depend on the total.
    items = items_for(total, 9, last_zero=total <= 24)
    result = score_phq9(items)
    assert result.instrument == "phq9"
    assert result.total == total
    assert result.band == band
    assert result.flags == ([] if items[8] == 0 else ["same_day_review"])


def test_boundary_table_covers_every_band_edge() -> None:
    assert PHQ9_BOUNDARIES == [0, 4, 5, 9, 10, 14, 15, 19, 20, 27]
    assert GAD7_BOUNDARIES == [0, 4, 5, 9, 10, 14, 15, 21]


@pytest.mark.parametrize(
    ("total", "band", "flags"),
    [
        (0, "minimal", []),
        (4, "minimal", []),
        (5, "mild", []),
        (9, "mild", []),
        (10, "moderate", ["further_assessment"]),
        (14, "moderate", ["further_assessment"]),
        (15, "severe", ["further_assessment"]),
        (21, "severe", ["further_assessment"]),
    ],
)
def test_gad7_band_boundaries_and_flag(total: int, band: str, flags: list[str]) -> None:
    result = score_gad7(items_for(total, 7))
    assert result.instrument == "gad7"
    assert result.total == total
    assert result.band == band
    assert result.flags == flags


@pytest.mark.parametrize("item9", [1, 2, 3])
def test_phq9_item9_above_zero_flags_same_day_review_even_when_minimal(item9: int) -> None:
    items = [0, 0, 0, 0, 0, 0, 0, 0, item9]
    result = score_phq9(items)
    assert result.total == item9
    assert result.band == "minimal"
    assert result.flags == ["same_day_review"]


def test_phq9_item9_zero_no_flag_even_when_severe() -> None:
    result = score_phq9([3, 3, 3, 3, 3, 3, 3, 3, 0])
    assert result.total == 24
    assert result.band == "severe"
    assert result.flags == []


def test_phq9_only_item9_drives_the_flag() -> None:
    # Item 1 (not item 9) at 3: no flag.
    assert score_phq9([3, 0, 0, 0, 0, 0, 0, 0, 0]).flags == []
    assert score_phq9([0, 0, 0, 0, 0, 0, 0, 3, 0]).flags == []


def test_gad7_flag_threshold_is_ten() -> None:
    assert score_gad7([3, 3, 3, 0, 0, 0, 0]).flags == []  # 9
    assert score_gad7([3, 3, 3, 1, 0, 0, 0]).flags == ["further_assessment"]  # 10


def test_score_all_scores_each_instrument_in_order() -> None:
    results = score_all({"gad7": [2, 2, 2, 2, 2, 0, 0], "phq9": [1, 1, 1, 1, 0, 0, 0, 0, 1]})
    assert [(r.instrument, r.total, r.band, r.flags) for r in results] == [
        ("gad7", 10, "moderate", ["further_assessment"]),
        ("phq9", 5, "mild", ["same_day_review"]),
    ]


def test_results_carry_no_item_answers() -> None:
    dumped = score_phq9([1, 2, 3, 0, 1, 2, 3, 0, 1]).model_dump()
    assert set(dumped) == {"instrument", "total", "band", "flags", "subscales"}
    assert dumped["subscales"] == {}


answer = st.integers(min_value=0, max_value=3)
phq9_items = st.lists(answer, min_size=9, max_size=9)
gad7_items = st.lists(answer, min_size=7, max_size=7)


@given(phq9_items)
def test_phq9_properties(items: list[int]) -> None:
    result = score_phq9(items)
    assert 0 <= result.total <= 27
    assert result.total == sum(items)
    assert result.band == band_in(sum(items), PHQ9_BANDS)
    assert result.flags == (["same_day_review"] if items[8] > 0 else [])


@given(gad7_items)
def test_gad7_properties(items: list[int]) -> None:
    result = score_gad7(items)
    assert 0 <= result.total <= 21
    assert result.total == sum(items)
    assert result.band == band_in(sum(items), GAD7_BANDS)
    assert result.flags == (["further_assessment"] if sum(items) >= 10 else [])


@given(phq9_items, phq9_items)
def test_phq9_band_monotonic_in_total(a: list[int], b: list[int]) -> None:
    ra, rb = score_phq9(a), score_phq9(b)
    if ra.total <= rb.total:
        assert PHQ9_RANK[ra.band] <= PHQ9_RANK[rb.band]
    if ra.total == rb.total:
        assert ra.band == rb.band


@given(gad7_items, gad7_items)
def test_gad7_band_monotonic_in_total(a: list[int], b: list[int]) -> None:
    ra, rb = score_gad7(a), score_gad7(b)
    if ra.total <= rb.total:
        assert GAD7_RANK[ra.band] <= GAD7_RANK[rb.band]
    if ra.total == rb.total:
        assert ra.band == rb.band
