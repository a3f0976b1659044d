"""Instrument scoring: totals, severity bands or risk levels, flags and subscales."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from services.intake.domain.instruments import (
    AuditAnswers,
    AuditCAnswers,
    BamAnswers,
    CssrsAnswers,
    InstrumentAnswers,
    score_audit,
    score_audit_c,
    score_bam,
    score_cssrs,
    score_dast10,
    score_gad7,
    score_phq9,
)

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


def test_answers_score_each_instrument_in_a_stable_order() -> None:
    answers = InstrumentAnswers(gad7=[2, 2, 2, 2, 2, 0, 0], phq9=[1, 1, 1, 1, 0, 0, 0, 0, 1])
    results = answers.score()
    assert [(r.instrument, r.total, r.band, r.flags) for r in results] == [
        ("phq9", 5, "mild", ["same_day_review"]),
        ("gad7", 10, "moderate", ["further_assessment"]),
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
    assert result.total is not None
    assert 0 <= result.total <= 27
    assert result.total == sum(items)
    assert result.band == band_in(sum(items), PHQ9_BANDS)
    assert result.flags == (["same_day_review"] if items[8] > 0 else [])


@given(gad7_items)
def test_gad7_properties(items: list[int]) -> None:
    result = score_gad7(items)
    assert result.total is not None
    assert 0 <= result.total <= 21
    assert result.total == sum(items)
    assert result.band == band_in(sum(items), GAD7_BANDS)
    assert result.flags == (["further_assessment"] if sum(items) >= 10 else [])


@given(phq9_items, phq9_items)
def test_phq9_band_monotonic_in_total(a: list[int], b: list[int]) -> None:
    ra, rb = score_phq9(a), score_phq9(b)
    assert ra.total is not None and rb.total is not None
    if ra.total <= rb.total:
        assert PHQ9_RANK[ra.band] <= PHQ9_RANK[rb.band]
    if ra.total == rb.total:
        assert ra.band == rb.band


@given(gad7_items, gad7_items)
def test_gad7_band_monotonic_in_total(a: list[int], b: list[int]) -> None:
    ra, rb = score_gad7(a), score_gad7(b)
    assert ra.total is not None and rb.total is not None
    if ra.total <= rb.total:
        assert GAD7_RANK[ra.band] <= GAD7_RANK[rb.band]
    if ra.total == rb.total:
        assert ra.band == rb.band


# --- AUDIT, AUDIT-C, DAST-10, C-SSRS, BAM -------------------------------------------------------------------------

AUDIT_BANDS = [(0, 7, "low"), (8, 15, "hazardous"), (16, 19, "harmful"), (20, 40, "possible_dependence")]
AUDIT_RANK = {name: rank for rank, (_, _, name) in enumerate(AUDIT_BANDS)}
DAST10_BANDS = [(0, 0, "none"), (1, 2, "low"), (3, 5, "moderate"), (6, 8, "substantial"), (9, 10, "severe")]
DAST10_RANK = {name: rank for rank, (_, _, name) in enumerate(DAST10_BANDS)}
RISK_RANK = {"low": 0, "moderate": 1, "high": 2}


def audit(items: list[int], sex: str = "unspecified") -> AuditAnswers:
    return AuditAnswers.model_validate({"items": items, "sex": sex})


def cssrs(**answers: bool | None) -> CssrsAnswers:
    return CssrsAnswers.model_validate(answers)


@pytest.mark.parametrize(
    ("items", "total", "band", "flags"),
    [
        ([0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0, "low", []),
        ([4, 3, 0, 0, 0, 0, 0, 0, 0, 0], 7, "low", []),
        ([0, 0, 0, 1, 0, 0, 0, 0, 2, 4], 7, "low", []),
        ([4, 4, 0, 0, 0, 0, 0, 0, 0, 0], 8, "hazardous", []),
        ([0, 0, 0, 0, 0, 0, 0, 0, 4, 4], 8, "hazardous", []),
        ([4, 4, 4, 3, 0, 0, 0, 0, 0, 0], 15, "hazardous", []),
        ([4, 4, 4, 4, 0, 0, 0, 0, 0, 0], 16, "harmful", []),
        ([4, 4, 4, 4, 3, 0, 0, 0, 0, 0], 19, "harmful", []),
        ([1, 1, 1, 1, 1, 0, 0, 0, 4, 2], 11, "hazardous", []),
        ([4, 4, 4, 4, 4, 0, 0, 0, 0, 0], 20, "possible_dependence", ["specialist_referral"]),
        ([4, 4, 4, 0, 0, 0, 0, 0, 4, 4], 20, "possible_dependence", ["specialist_referral"]),
        ([4, 4, 4, 4, 4, 4, 4, 4, 4, 4], 40, "possible_dependence", ["specialist_referral"]),
    ],
)
def test_audit_band_boundaries_and_referral(items: list[int], total: int, band: str, flags: list[str]) -> None:
    result, _ = score_audit(audit(items))
    assert (result.instrument, result.total, result.band, result.flags) == ("audit", total, band, flags)
    assert result.subscales == {}


@pytest.mark.parametrize(
    ("first_three", "sex", "band", "flags"),
    [
        ([1, 1, 0], "male", "negative", []),
        ([1, 1, 0], "female", "negative", []),
        ([1, 1, 0], "unspecified", "negative", ["cutoff_sex_unspecified"]),
        ([1, 1, 1], "male", "negative", []),
        ([1, 1, 1], "female", "positive", []),
        ([1, 1, 1], "unspecified", "positive", ["cutoff_sex_unspecified"]),
        ([4, 0, 0], "male", "positive", []),
        ([0, 0, 4], "female", "positive", []),
        ([2, 2, 0], "unspecified", "positive", ["cutoff_sex_unspecified"]),
        ([0, 0, 0], "female", "negative", []),
        ([4, 4, 4], "male", "positive", []),
    ],
)
def test_audit_c_cutoff_by_sex(first_three: list[int], sex: str, band: str, flags: list[str]) -> None:
    total = sum(first_three)
    alone = score_audit_c(AuditCAnswers.model_validate({"items": first_three, "sex": sex}))
    # From a full AUDIT: only items 1-3 count, however high items 4-10 are.
    _, from_audit = score_audit(audit([*first_three, 4, 4, 4, 4, 4, 4, 4], sex))
    for result in (alone, from_audit):
        assert (result.instrument, result.total, result.band, result.flags) == ("audit_c", total, band, flags)


def test_audit_c_sex_defaults_to_unspecified_with_the_sensitive_cutoff() -> None:
    result = score_audit_c(AuditCAnswers.model_validate({"items": [3, 0, 0]}))
    assert (result.total, result.band, result.flags) == (3, "positive", ["cutoff_sex_unspecified"])


def test_score_audit_returns_audit_then_audit_c() -> None:
    results = score_audit(audit([2, 1, 1, 0, 0, 1, 0, 0, 0, 2], "male"))
    assert [(r.instrument, r.total, r.band, r.flags) for r in results] == [
        ("audit", 7, "low", []),
        ("audit_c", 4, "positive", []),
    ]


def dast(yes: set[int]) -> list[bool]:
    """DAST-10 answers with "yes" to the given 1-based items and "no" to the rest."""
    return [number in yes for number in range(1, 11)]


@pytest.mark.parametrize(
    ("yes", "total", "band", "flags"),
    [
        ({3}, 0, "none", []),
        (set(), 1, "low", []),  # "no" to item 3 scores 1
        ({1, 3}, 1, "low", []),
        ({1}, 2, "low", []),
        ({1, 2, 3}, 2, "low", []),
        ({1, 2}, 3, "moderate", []),
        ({1, 2, 3, 4}, 3, "moderate", []),
        ({1, 2, 4, 5}, 5, "moderate", []),
        ({1, 2, 3, 4, 5, 6}, 5, "moderate", []),
        ({1, 2, 4, 5, 6}, 6, "substantial", ["intensive_assessment"]),
        ({1, 2, 3, 4, 5, 6, 7}, 6, "substantial", ["intensive_assessment"]),
        ({1, 2, 4, 5, 6, 7, 8}, 8, "substantial", ["intensive_assessment"]),
        ({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 9, "severe", ["intensive_assessment"]),  # all yes
        ({1, 2, 4, 5, 6, 7, 8, 9}, 9, "severe", ["intensive_assessment"]),
        ({1, 2, 4, 5, 6, 7, 8, 9, 10}, 10, "severe", ["intensive_assessment"]),
    ],
)
def test_dast10_band_boundaries_with_reversed_item_3(yes: set[int], total: int, band: str, flags: list[str]) -> None:
    result = score_dast10(dast(yes))
    assert (result.instrument, result.total, result.band, result.flags) == ("dast10", total, band, flags)


@pytest.mark.parametrize(
    ("answers", "risk", "flags"),
    [
        # Q2 no: Q3-Q5 not asked.
        ({"q1": False, "q2": False, "q6": False}, "low", []),
        ({"q1": True, "q2": False, "q6": False}, "low", []),
        ({"q1": False, "q2": False, "q6": True, "q6_within_3_months": False}, "moderate", ["clinician_review"]),
        ({"q1": True, "q2": False, "q6": True, "q6_within_3_months": True}, "high", ["immediate_safety_alert"]),
        # Q2 yes: Q3-Q5 asked.
        ({"q1": True, "q2": True, "q3": False, "q4": False, "q5": False, "q6": False}, "low", []),
        ({"q1": True, "q2": True, "q3": True, "q4": False, "q5": False, "q6": False}, "moderate", ["clinician_review"]),
        (
            {"q1": True, "q2": True, "q3": False, "q4": True, "q5": False, "q6": False},
            "high",
            ["immediate_safety_alert"],
        ),
        (
            {"q1": True, "q2": True, "q3": False, "q4": False, "q5": True, "q6": False},
            "high",
            ["immediate_safety_alert"],
        ),
        (
            {"q1": False, "q2": True, "q3": True, "q4": True, "q5": True, "q6": False},
            "high",
            ["immediate_safety_alert"],
        ),
        (
            {"q1": True, "q2": True, "q3": True, "q4": False, "q5": False, "q6": True, "q6_within_3_months": False},
            "moderate",
            ["clinician_review"],
        ),
        (
            {"q1": True, "q2": True, "q3": False, "q4": False, "q5": False, "q6": True, "q6_within_3_months": False},
            "moderate",
            ["clinician_review"],
        ),
        (
            {"q1": True, "q2": True, "q3": False, "q4": False, "q5": False, "q6": True, "q6_within_3_months": True},
            "high",
            ["immediate_safety_alert"],
        ),
    ],
)
def test_cssrs_risk_levels(answers: dict[str, bool], risk: str, flags: list[str]) -> None:
    result = score_cssrs(cssrs(**answers))
    assert (result.instrument, result.total, result.band, result.flags) == ("cssrs", None, risk, flags)


def valid_cssrs_answers() -> list[dict[str, bool | None]]:
    """Every answer set the skip logic allows."""
    combos: list[dict[str, bool | None]] = []
    for q1, q2, q6 in itertools.product((False, True), repeat=3):
        follow_ups = list(itertools.product((False, True), repeat=3)) if q2 else [(None, None, None)]
        within = [False, True] if q6 else [None]
        for (q3, q4, q5), recent in itertools.product(follow_ups, within):
            combos.append({"q1": q1, "q2": q2, "q3": q3, "q4": q4, "q5": q5, "q6": q6, "q6_within_3_months": recent})
    return combos


def test_cssrs_every_valid_answer_set_scores_and_the_risk_counts_are_exact() -> None:
    combos = valid_cssrs_answers()
    assert len(combos) == 54
    risks = Counter(score_cssrs(cssrs(**answers)).band for answers in combos)
    assert risks == {"high": 42, "moderate": 8, "low": 4}


BAM_ITEMS = [f"item{n}" for n in range(1, 18) if n != 7]


def bam(**overrides: object) -> BamAnswers:
    return BamAnswers.model_validate({**dict.fromkeys(BAM_ITEMS, 0), **overrides})


@pytest.mark.parametrize(
    ("number", "subscales"),
    [
        (1, {"use": 0, "risk": 4, "protective": 0}),
        (2, {"use": 0, "risk": 4, "protective": 0}),
        (3, {"use": 0, "risk": 4, "protective": 0}),
        (4, {"use": 4, "risk": 0, "protective": 0}),
        (5, {"use": 4, "risk": 0, "protective": 0}),
        (6, {"use": 4, "risk": 0, "protective": 0}),
        (8, {"use": 0, "risk": 4, "protective": 0}),
        (9, {"use": 0, "risk": 0, "protective": 4}),
        (10, {"use": 0, "risk": 0, "protective": 4}),
        (11, {"use": 0, "risk": 4, "protective": 0}),
        (12, {"use": 0, "risk": 0, "protective": 4}),
        (13, {"use": 0, "risk": 0, "protective": 4}),
        (14, {"use": 0, "risk": 0, "protective": 4}),
        (15, {"use": 0, "risk": 4, "protective": 0}),
        (16, {"use": 0, "risk": 0, "protective": 4}),
        (17, {"use": 0, "risk": 0, "protective": 0}),
    ],
)
def test_bam_each_item_lands_in_its_subscale_only(number: int, subscales: dict[str, int]) -> None:
    result = score_bam(bam(**{f"item{number}": 4}))
    assert result.subscales == subscales
    assert result.flags == (["use_reported"] if subscales["use"] else [])


def test_bam_item7_is_ignored_by_scoring() -> None:
    without = score_bam(bam(item17=3))
    with_substances = score_bam(bam(item17=3, item7=["alcohol", "cannabis"]))
    assert without == with_substances
    assert (without.total, without.band, without.flags) == (None, "reported", [])
    assert without.subscales == {"use": 0, "risk": 0, "protective": 0}


def test_bam_subscale_sums() -> None:
    answers = bam(
        item1=1, item2=2, item3=3, item4=1, item5=2, item6=4, item8=4, item9=1, item10=2,
        item11=0, item12=3, item13=4, item14=0, item15=1, item16=2, item17=4,
    )  # fmt: skip
    result = score_bam(answers)
    assert result.instrument == "bam"
    assert result.total is None
    assert result.band == "reported"
    assert result.subscales == {"use": 7, "risk": 11, "protective": 12}
    assert result.flags == ["use_reported"]


audit_strategy = st.builds(
    lambda first, last, sex: audit([*first, *last], sex),
    st.lists(st.integers(0, 4), min_size=8, max_size=8),
    st.lists(st.sampled_from([0, 2, 4]), min_size=2, max_size=2),
    st.sampled_from(["male", "female", "unspecified"]),
)
dast_strategy = st.lists(st.booleans(), min_size=10, max_size=10)


@given(audit_strategy)
def test_audit_properties(answers: AuditAnswers) -> None:
    result, audit_c = score_audit(answers)
    assert result.total == sum(answers.items)
    assert 0 <= result.total <= 40
    assert result.band == band_in(result.total, AUDIT_BANDS)
    assert result.flags == (["specialist_referral"] if result.total >= 20 else [])
    assert audit_c.total == sum(answers.items[:3])
    assert 0 <= audit_c.total <= 12
    cutoff = {"male": 4, "female": 3, "unspecified": 3}[answers.sex]
    assert audit_c.band == ("positive" if audit_c.total >= cutoff else "negative")


@given(audit_strategy, audit_strategy)
def test_audit_band_monotonic_in_total(a: AuditAnswers, b: AuditAnswers) -> None:
    (ra, ca), (rb, cb) = score_audit(a), score_audit(b)
    assert ra.total is not None and rb.total is not None
    if ra.total <= rb.total:
        assert AUDIT_RANK[ra.band] <= AUDIT_RANK[rb.band]
    assert ca.total is not None and cb.total is not None
    if a.sex == b.sex and ca.total <= cb.total:
        assert ca.band == "negative" or cb.band == "positive"


@given(dast_strategy)
def test_dast10_properties(answers: list[bool]) -> None:
    result = score_dast10(answers)
    assert result.total == sum(answers) - answers[2] + (not answers[2])
    assert 0 <= result.total <= 10
    assert result.band == band_in(result.total, DAST10_BANDS)
    assert result.flags == (["intensive_assessment"] if result.total >= 6 else [])


@given(dast_strategy, dast_strategy)
def test_dast10_band_monotonic_in_total(a: list[bool], b: list[bool]) -> None:
    ra, rb = score_dast10(a), score_dast10(b)
    assert ra.total is not None and rb.total is not None
    if ra.total <= rb.total:
        assert DAST10_RANK[ra.band] <= DAST10_RANK[rb.band]


def dast_total(answers: list[bool]) -> int:
    total = score_dast10(answers).total
    assert total is not None
    return total


def flipped(answers: list[bool], index: int) -> list[bool]:
    return [not value if i == index else value for i, value in enumerate(answers)]


@given(dast_strategy, st.sampled_from([0, 1, 3, 4, 5, 6, 7, 8, 9]))
def test_dast10_item3_is_reverse_scored(answers: list[bool], other: int) -> None:
    answers = flipped(answers, other) if answers[other] != answers[2] else answers  # same answer on both items
    item3_change = dast_total(flipped(answers, 2)) - dast_total(answers)
    other_change = dast_total(flipped(answers, other)) - dast_total(answers)
    assert abs(item3_change) == 1
    assert item3_change == -other_change
    # Turning a "no" into a "yes" raises every item but item 3.
    assert other_change == (1 if not answers[other] else -1)


@st.composite
def cssrs_answers(draw: st.DrawFn) -> dict[str, bool | None]:
    q2, q6 = draw(st.booleans()), draw(st.booleans())
    follow_up = st.booleans() if q2 else st.none()
    return {
        "q1": draw(st.booleans()),
        "q2": q2,
        "q3": draw(follow_up),
        "q4": draw(follow_up),
        "q5": draw(follow_up),
        "q6": q6,
        "q6_within_3_months": draw(st.booleans() if q6 else st.none()),
    }


@given(cssrs_answers(), st.data())
def test_cssrs_risk_never_lower_when_a_yes_is_added(answers: dict[str, bool | None], data: st.DataObject) -> None:
    noes = [question for question, value in answers.items() if value is False]
    assume(noes)
    question = data.draw(st.sampled_from(noes))
    more = {**answers, question: True}
    if question == "q2":  # Q3-Q5 become asked: any answers, each a "no" or a further "yes"
        more |= {q: data.draw(st.booleans()) for q in ("q3", "q4", "q5")}
    if question == "q6":
        more["q6_within_3_months"] = data.draw(st.booleans())
    before, after = score_cssrs(cssrs(**answers)).band, score_cssrs(cssrs(**more)).band
    assert RISK_RANK[after] >= RISK_RANK[before]


@given(st.fixed_dictionaries({name: st.integers(0, 4) for name in BAM_ITEMS}))
def test_bam_subscales_in_range(items: dict[str, int]) -> None:
    result = score_bam(BamAnswers.model_validate(items))
    assert 0 <= result.subscales["use"] <= 12
    assert 0 <= result.subscales["risk"] <= 24
    assert 0 <= result.subscales["protective"] <= 24
    assert result.subscales["use"] == items["item4"] + items["item5"] + items["item6"]
    assert sum(result.subscales.values()) == sum(items.values()) - items["item17"]


def test_scoring_tables_agree_with_the_contract_vocabulary() -> None:
    """Intake's scoring produces exactly the bands and flags the contract publishes, in order of severity."""
    from services.intake.domain.instruments import (
        AUDIT_BANDS,
        BAM_BAND,
        CSSRS_FLAGS,
        CSSRS_RISK_LEVELS,
        DAST10_BANDS,
        GAD7_BANDS,
        PHQ9_BANDS,
    )
    from stepwise_contract import INSTRUMENTS

    def names(bands: object) -> tuple[str, ...]:
        return tuple(name for _, name in bands)  # type: ignore[attr-defined]

    assert INSTRUMENTS["phq9"].bands == names(PHQ9_BANDS)
    assert INSTRUMENTS["gad7"].bands == names(GAD7_BANDS)
    assert INSTRUMENTS["audit"].bands == names(AUDIT_BANDS)
    assert INSTRUMENTS["dast10"].bands == names(DAST10_BANDS)
    assert INSTRUMENTS["cssrs"].bands == CSSRS_RISK_LEVELS
    assert set(INSTRUMENTS["cssrs"].flags) == {flag for flags in CSSRS_FLAGS.values() for flag in flags}
    assert INSTRUMENTS["bam"].bands == (BAM_BAND,)
    assert {score_phq9([3] * 9).band, score_phq9([0] * 9).band} <= set(INSTRUMENTS["phq9"].bands)


def test_the_forms_words_match_what_intake_takes() -> None:
    """The contract's words for forms (the console's intake page, the questionnaire page) name every field intake's
    request has, in its order, with one label per answer it scores."""
    from pydantic import ValidationError

    from services.intake.domain.instruments import CssrsAnswers, InstrumentAnswers
    from services.intake.schemas import DimensionsIn
    from stepwise_contract import CSSRS_QUESTIONS, DIMENSION_RATINGS, DIMENSIONS, QUESTIONNAIRES

    assert list(DIMENSIONS) == list(DimensionsIn.model_fields) and len(DIMENSION_RATINGS) == 5  # 0-4
    assert [question.name for question in CSSRS_QUESTIONS] == list(CssrsAnswers.model_fields)
    assert {q.asked_if for q in CSSRS_QUESTIONS} == {None, "q2", "q6"}
    for name, questionnaire in QUESTIONNAIRES.items():
        highest, items = len(questionnaire.options) - 1, len(questionnaire.items)
        assert InstrumentAnswers.model_validate({name: [highest] * items})
        for wrong in ([highest] * (items - 1), [highest] * (items + 1), [highest + 1] * items):
            with pytest.raises(ValidationError):
                InstrumentAnswers.model_validate({name: wrong})
