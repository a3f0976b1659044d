"""Scoring of standard screening instruments from their item answers (published scoring).

The input models validate the answers (item count, per-item range, C-SSRS skip logic) so the HTTP
API can use them directly and a 422 names the instrument and the item. The scorers turn valid answers
into a total, a severity band or risk level, flag codes and subscales. Item answers never leave intake:
an ``InstrumentResult`` carries scores only. Items are 1-based in the clinical reference and 0-based
in lists (PHQ-9 item 9 is ``items[8]``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError, PydanticKnownError

from stepwise_contract import CSSRS_QUESTIONS, InstrumentResult
from stepwise_contract import INSTRUMENTS as CONTRACT_INSTRUMENTS

Bands = Sequence[tuple[int, str]]
"""(lowest total of the band, band name), ascending."""

PHQ9_BANDS: Bands = ((0, "minimal"), (5, "mild"), (10, "moderate"), (15, "moderately_severe"), (20, "severe"))
GAD7_BANDS: Bands = ((0, "minimal"), (5, "mild"), (10, "moderate"), (15, "severe"))
AUDIT_BANDS: Bands = ((0, "low"), (8, "hazardous"), (16, "harmful"), (20, "possible_dependence"))
DAST10_BANDS: Bands = ((0, "none"), (1, "low"), (3, "moderate"), (6, "substantial"), (9, "severe"))

Sex = Literal["male", "female", "unspecified"]
AUDIT_C_POSITIVE_AT: Mapping[Sex, int] = {"male": 4, "female": 3, "unspecified": 3}
"""Lowest AUDIT-C total that screens positive; unspecified sex takes the more sensitive cut-off."""

DAST10_REVERSED_ITEM = 3
"""1-based DAST-10 item scored 1 for "no" and 0 for "yes"."""

CSSRS_RISK_LEVELS = ("low", "moderate", "high")
CSSRS_FLAGS: Mapping[str, list[str]] = {
    "low": [],
    "moderate": ["clinician_review"],
    "high": ["immediate_safety_alert"],
}

BAM_SUBSCALES: Mapping[str, tuple[int, ...]] = {
    "use": (4, 5, 6),
    "risk": (1, 2, 3, 8, 11, 15),
    "protective": (9, 10, 12, 13, 14, 16),
}
"""1-based BAM items summed into each subscale; item 7 (which substances) and item 17 are in none."""
BAM_BAND = "reported"
"""The BAM has no published single band."""


INSTRUMENTS = CONTRACT_INSTRUMENTS
"""What each instrument reports, from the contract; a unit test checks the scoring tables above agree."""


def _zero_two_or_four(value: int) -> int:
    if value not in (0, 2, 4):
        raise PydanticKnownError("literal_error", {"expected": "0, 2 or 4"})
    return value


# Strict: JSON integers (and booleans below) only, so "2", 2.5 or true are rejected, not coerced.
Item03 = Annotated[StrictInt, Field(ge=0, le=3)]
Item04 = Annotated[StrictInt, Field(ge=0, le=4)]
Item024 = Annotated[StrictInt, AfterValidator(_zero_two_or_four), Field(json_schema_extra={"enum": [0, 2, 4]})]
SexField = Annotated[Sex, Field(description="Selects the AUDIT-C cut-off (male >= 4, female >= 3).")]
Substance = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]

AuditItems = tuple[Item04, Item04, Item04, Item04, Item04, Item04, Item04, Item04, Item024, Item024]


class AuditAnswers(BaseModel):
    """AUDIT: items 1-8 take 0-4, items 9 and 10 take only 0, 2 or 4."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    items: AuditItems = Field(description="10 items: 1–8 in 0–4, 9–10 in {0, 2, 4}.")
    sex: SexField = "unspecified"


class AuditCAnswers(BaseModel):
    """AUDIT-C given on its own: the first three AUDIT items."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    items: list[Item04] = Field(min_length=3, max_length=3, description="3 items, 0–4.")
    sex: SexField = "unspecified"


def _asked_only_if(gate: str) -> Callable[[bool | None, ValidationInfo], bool | None]:
    """A validator for a follow-up question that is asked exactly when ``gate`` was answered yes."""

    def check(value: bool | None, info: ValidationInfo) -> bool | None:
        if gate not in info.data:  # the gate itself failed validation and is reported on its own
            return value
        if info.data[gate] and value is None:
            raise PydanticCustomError("follow_up_required", "required when {gate} is yes", {"gate": gate})
        if not info.data[gate] and value is not None:
            raise PydanticCustomError("not_asked", "must be empty when {gate} is no", {"gate": gate})
        return value

    return check


def _follow_ups(gate: str, *items: str) -> dict[str, Any]:
    """The skip logic in the JSON schema: the follow-up items answered exactly when ``gate`` is yes."""
    return {
        "if": {"properties": {gate: {"const": True}}},
        "then": {"required": list(items), "properties": {item: {"type": "boolean"} for item in items}},
        "else": {"properties": {item: {"type": "null"} for item in items}},
    }


def _skipped(gate: str, description: str) -> Any:
    return Field(default=None, validate_default=True, description=f"{description} Only when {gate} is yes.")


def _asks(name: str) -> str:
    """A C-SSRS answer's description: the question's heading (the contract's ``CSSRS_QUESTIONS``)."""
    question = next(question for question in CSSRS_QUESTIONS if question.name == name)
    return f"{name.upper().split('_')[0]}: {question.text}."


class CssrsAnswers(BaseModel):
    """C-SSRS screener. Q3-Q5 are asked only when Q2 is yes; Q6 is always asked."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [{"q1": True, "q2": False, "q6": False}],
            "allOf": [_follow_ups("q2", "q3", "q4", "q5"), _follow_ups("q6", "q6_within_3_months")],
        },
    )

    q1: StrictBool = Field(description=_asks("q1"))
    q2: StrictBool = Field(description=_asks("q2"))
    q3: StrictBool | None = _skipped("q2", _asks("q3"))
    q4: StrictBool | None = _skipped("q2", _asks("q4"))
    q5: StrictBool | None = _skipped("q2", _asks("q5"))
    q6: StrictBool = Field(description=_asks("q6"))
    q6_within_3_months: StrictBool | None = _skipped("q6", _asks("q6_within_3_months"))

    _q2_follow_ups = field_validator("q3", "q4", "q5")(_asked_only_if("q2"))
    _q6_follow_up = field_validator("q6_within_3_months")(_asked_only_if("q6"))


class BamAnswers(BaseModel):
    """Brief Addiction Monitor, past 30 days: items on their 0-4 response scale; item 7 is not scored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    item1: Item04
    item2: Item04
    item3: Item04
    item4: Item04
    item5: Item04
    item6: Item04
    item7: list[Substance] | None = Field(default=None, max_length=20, description="Substances used; not scored.")
    item8: Item04
    item9: Item04
    item10: Item04
    item11: Item04
    item12: Item04
    item13: Item04
    item14: Item04
    item15: Item04
    item16: Item04
    item17: Item04

    def item(self, number: int) -> int:
        if number == 7:
            raise ValueError("BAM item 7 (which substances) is not scored")
        return int(getattr(self, f"item{number}"))


INSTRUMENTS_EXAMPLE: dict[str, Any] = {
    "phq9": [1, 2, 1, 2, 1, 1, 2, 1, 0],
    "gad7": [1, 1, 2, 1, 0, 1, 1],
    "audit": {"items": [2, 1, 1, 0, 0, 1, 0, 0, 0, 2], "sex": "female"},
    "dast10": [True, False, True, False, False, False, False, False, False, False],
    "cssrs": {"q1": True, "q2": True, "q3": True, "q4": False, "q5": False, "q6": False},
    "bam": {
        "item1": 2,
        "item2": 1,
        "item3": 1,
        "item4": 1,
        "item5": 0,
        "item6": 1,
        "item7": ["alcohol"],
        "item8": 2,
        "item9": 3,
        "item10": 2,
        "item11": 1,
        "item12": 3,
        "item13": 2,
        "item14": 3,
        "item15": 1,
        "item16": 2,
        "item17": 3,
    },
}


class InstrumentAnswers(BaseModel):
    """Item answers by instrument; an unknown instrument is rejected. Every instrument is optional."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [INSTRUMENTS_EXAMPLE],
            "not": {  # AUDIT-C is scored from the AUDIT's items when both were asked
                "required": ["audit", "audit_c"],
                "properties": {"audit": {"type": "object"}, "audit_c": {"type": "object"}},
            },
        },
    )

    phq9: list[Item03] | None = Field(default=None, min_length=9, max_length=9, description="PHQ-9: 9 items, 0–3.")
    gad7: list[Item03] | None = Field(default=None, min_length=7, max_length=7, description="GAD-7: 7 items, 0–3.")
    audit: AuditAnswers | None = Field(default=None, description="AUDIT; also scored as AUDIT-C (items 1–3).")
    audit_c: AuditCAnswers | None = Field(default=None, description="AUDIT-C on its own; omit when AUDIT is given.")
    dast10: list[StrictBool] | None = Field(
        default=None, min_length=10, max_length=10, description="DAST-10: 10 yes/no items (true/false)."
    )
    cssrs: CssrsAnswers | None = Field(default=None, description="C-SSRS screener.")
    bam: BamAnswers | None = Field(default=None, description="Brief Addiction Monitor.")

    @field_validator("audit_c")
    @classmethod
    def _not_with_audit(cls, value: AuditCAnswers | None, info: ValidationInfo) -> AuditCAnswers | None:
        if value is not None and info.data.get("audit") is not None:
            raise PydanticCustomError("scored_from_audit", "must be empty when audit is given (scored from its items)")
        return value

    def score(self) -> list[InstrumentResult]:
        """Results of the instruments answered, in field order (AUDIT yields AUDIT, then AUDIT-C)."""
        results: list[InstrumentResult] = []
        if self.phq9 is not None:
            results.append(score_phq9(self.phq9))
        if self.gad7 is not None:
            results.append(score_gad7(self.gad7))
        if self.audit is not None:
            results.extend(score_audit(self.audit))
        if self.audit_c is not None:
            results.append(score_audit_c(self.audit_c))
        if self.dast10 is not None:
            results.append(score_dast10(self.dast10))
        if self.cssrs is not None:
            results.append(score_cssrs(self.cssrs))
        if self.bam is not None:
            results.append(score_bam(self.bam))
        return results


def band_of(total: int, bands: Bands) -> str:
    return [name for lowest, name in bands if total >= lowest][-1]


def score_phq9(items: Sequence[int]) -> InstrumentResult:
    total = sum(items)
    flags = ["same_day_review"] if items[8] > 0 else []  # item 9: thoughts of self-harm
    return InstrumentResult(instrument="phq9", total=total, band=band_of(total, PHQ9_BANDS), flags=flags)


def score_gad7(items: Sequence[int]) -> InstrumentResult:
    total = sum(items)
    flags = ["further_assessment"] if total >= 10 else []
    return InstrumentResult(instrument="gad7", total=total, band=band_of(total, GAD7_BANDS), flags=flags)


def _audit_c(items: Sequence[int], sex: Sex) -> InstrumentResult:
    total = sum(items[:3])
    band = "positive" if total >= AUDIT_C_POSITIVE_AT[sex] else "negative"
    flags = ["cutoff_sex_unspecified"] if sex == "unspecified" else []
    return InstrumentResult(instrument="audit_c", total=total, band=band, flags=flags)


def score_audit_c(answers: AuditCAnswers) -> InstrumentResult:
    return _audit_c(answers.items, answers.sex)


def score_audit(answers: AuditAnswers) -> tuple[InstrumentResult, InstrumentResult]:
    """The AUDIT result and the AUDIT-C result from its first three items."""
    total = sum(answers.items)
    flags = ["specialist_referral"] if total >= 20 else []
    audit = InstrumentResult(instrument="audit", total=total, band=band_of(total, AUDIT_BANDS), flags=flags)
    return audit, _audit_c(answers.items, answers.sex)


def score_dast10(answers: Sequence[bool]) -> InstrumentResult:
    total = sum(answer != (number == DAST10_REVERSED_ITEM) for number, answer in enumerate(answers, start=1))
    flags = ["intensive_assessment"] if total >= 6 else []
    return InstrumentResult(instrument="dast10", total=total, band=band_of(total, DAST10_BANDS), flags=flags)


def cssrs_risk(answers: CssrsAnswers) -> str:
    if answers.q4 or answers.q5 or (answers.q6 and answers.q6_within_3_months):
        return "high"
    if answers.q3 or answers.q6:  # Q6 here is lifetime only: within 3 months is high above
        return "moderate"
    return "low"


def score_cssrs(answers: CssrsAnswers) -> InstrumentResult:
    risk = cssrs_risk(answers)
    return InstrumentResult(instrument="cssrs", total=None, band=risk, flags=list(CSSRS_FLAGS[risk]))


def score_bam(answers: BamAnswers) -> InstrumentResult:
    subscales = {name: sum(answers.item(number) for number in items) for name, items in BAM_SUBSCALES.items()}
    flags = ["use_reported"] if subscales["use"] > 0 else []
    return InstrumentResult(instrument="bam", total=None, band=BAM_BAND, flags=flags, subscales=subscales)
