"""Level-of-care recommendation: rules as data in a policy file, validated at load with clear errors.

The highest-rated dimension sets the starting level (ratings are never averaged). Dimension rules and
instrument rules can only raise it to their minimum level; a co-occurring mental-health and
substance-use need then raises it by a number of steps, up to a cap. Every rule that matches adds a
reason to the rationale, and the last reason states the recommended level.

`recommend_level` is pure; `load_placement_policy` is the only function here that reads a file.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationInfo,
    field_validator,
    model_validator,
)

from services.common.policy_file import load_policy_file
from stepwise_contract import LEVEL_ORDER, PROGRAMS, CareLevel, DimensionRatings, InstrumentResult, Program, Reason

from .instruments import INSTRUMENTS

DEFAULT_PLACEMENT_POLICY = Path(__file__).resolve().parent.parent / "policy" / "placement.yaml"

_RANK: Final[dict[CareLevel, int]] = {level: rank for rank, level in enumerate(LEVEL_ORDER)}
REFER_OUT_LEVELS: Final[frozenset[CareLevel]] = frozenset({CareLevel.RESIDENTIAL, CareLevel.INPATIENT})
"""Levels an outpatient program does not deliver itself: the patient is referred out."""

Dimension = Literal["withdrawal", "biomedical", "emotional", "readiness", "relapse", "environment"]
InstrumentName = Literal["phq9", "gad7", "audit", "audit_c", "dast10", "cssrs", "bam"]


SUBSTANCE_INSTRUMENTS: Final[frozenset[str]] = frozenset({"audit", "audit_c", "dast10", "bam"})
RESERVED_CODES: Final[frozenset[str]] = frozenset({"highest_dimension", "recommended_level"})
"""Reason codes the engine itself writes; no rule may use them."""


def _yaml_text(value: object) -> object:
    # YAML 1.1 reads bare yes/no/on/off as booleans and 2026.11 as a number: never take those for text.
    if isinstance(value, bool | int | float) or value is None:
        raise ValueError(f'must be text, got {type(value).__name__}; quote it in the YAML file (e.g. "no")')
    return value


Text = Annotated[str, BeforeValidator(_yaml_text), Field(min_length=1, max_length=500)]
Code = Annotated[str, BeforeValidator(_yaml_text), Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
Rating = Annotated[int, Strict(), Field(ge=0, le=4)]


def _rating_key(value: object) -> object:
    # A quoted "2" (or a JSON object key) is the rating 2; a bare yes/no (a YAML 1.1 boolean) is not.
    return int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else value


RatingKey = Annotated[int, BeforeValidator(_rating_key), Strict(), Field(ge=0, le=4)]
Threshold = Annotated[int, Strict(), Field(ge=0)]


def _check_template(text: str, sample: Mapping[str, object]) -> str:
    """Accept a rationale template only if it formats with the allowed fields (sample values) and nothing else."""
    allowed = ", ".join(f"{{{name}}}" for name in sample)
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as error:
        raise ValueError(f"not a valid template ({error}); write a literal brace as {{{{ or }}}}") from None
    for name in names:
        if name not in sample:
            shown = f"{{{name}}}" if name else "{}"
            raise ValueError(f"unknown field {shown} in template; allowed: {allowed or 'none'}")
    try:
        text.format(**sample)
    except (ValueError, KeyError, IndexError, AttributeError, TypeError) as error:
        raise ValueError(f"template does not format ({error}); allowed fields: {allowed or 'none'}") from None
    return text


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InstrumentCondition(_Model):
    """A condition on one instrument result. Every condition given must hold; `bands` matches any one of them."""

    instrument: InstrumentName
    bands: tuple[Text, ...] | None = None
    total_at_least: Threshold | None = None
    flag: Text | None = None

    @field_validator("bands")
    @classmethod
    def _known_bands(cls, bands: tuple[str, ...] | None, info: ValidationInfo) -> tuple[str, ...] | None:
        if bands == ():
            raise ValueError("list at least one band, or leave bands out")
        spec = INSTRUMENTS.get(info.data.get("instrument", ""))
        for band in bands or ():
            if spec is not None and band not in spec.bands:
                raise ValueError(f"{band!r} is not a band of {info.data['instrument']}; use one of {list(spec.bands)}")
        return bands

    @field_validator("total_at_least")
    @classmethod
    def _total_in_range(cls, total: int | None, info: ValidationInfo) -> int | None:
        spec = INSTRUMENTS.get(info.data.get("instrument", ""))
        if total is not None and spec is not None:
            if spec.max_total is None:
                raise ValueError(f"{info.data['instrument']} has no total score; use bands or flag")
            if total > spec.max_total:
                raise ValueError(f"{info.data['instrument']} totals run 0–{spec.max_total}; {total} can never match")
        return total

    @field_validator("flag")
    @classmethod
    def _known_flag(cls, flag: str | None, info: ValidationInfo) -> str | None:
        spec = INSTRUMENTS.get(info.data.get("instrument", ""))
        if flag is not None and spec is not None and flag not in spec.flags:
            raise ValueError(f"{flag!r} is not a flag of {info.data['instrument']}; use one of {list(spec.flags)}")
        return flag

    @model_validator(mode="after")
    def _has_condition(self) -> InstrumentCondition:
        if self.bands is None and self.total_at_least is None and self.flag is None:
            code = getattr(self, "code", None)
            rule = f"rule {code!r}" if code else "a condition"
            raise ValueError(f"{rule} needs at least one of: bands, total_at_least, flag")
        return self

    @property
    def has_total(self) -> bool:
        return INSTRUMENTS[self.instrument].max_total is not None

    def matches(self, result: InstrumentResult) -> bool:
        if result.instrument != self.instrument:
            return False
        if self.bands is not None and result.band not in self.bands:
            return False
        if self.total_at_least is not None and (result.total is None or result.total < self.total_at_least):
            return False
        return self.flag is None or self.flag in result.flags


def _instrument_sample(condition: Mapping[str, Any], with_total: bool) -> dict[str, object]:
    sample: dict[str, object] = {"instrument": condition.get("instrument", "phq9"), "band": "moderate"}
    if with_total:
        sample["total"] = 0
    return sample


class InstrumentRule(InstrumentCondition):
    """An instrument result that matches raises the level to at least `minimum_level` (for the listed programs)."""

    code: Code
    programs: tuple[Program, ...] = Field(default=PROGRAMS, min_length=1)
    minimum_level: CareLevel
    text: Text

    @field_validator("text")
    @classmethod
    def _template(cls, text: str, info: ValidationInfo) -> str:
        instrument = info.data.get("instrument")
        with_total = instrument is None or INSTRUMENTS[instrument].max_total is not None
        sample = {**_instrument_sample(info.data, with_total), "minimum_level": CareLevel.IOP.value}
        return _check_template(text, sample)

    def render(self, result: InstrumentResult) -> str:
        return self.text.format(
            instrument=result.instrument, total=result.total, band=result.band, minimum_level=self.minimum_level.value
        )


class DimensionRule(_Model):
    """Any listed dimension rated `rating_at_least` or more raises the level to at least `minimum_level`."""

    code: Code
    dimensions: tuple[Dimension, ...] = Field(min_length=1)
    rating_at_least: Rating
    minimum_level: CareLevel
    text: Text

    @field_validator("text")
    @classmethod
    def _template(cls, text: str) -> str:
        return _check_template(text, {"dimensions": "withdrawal", "rating": 4, "minimum_level": CareLevel.IOP.value})

    def matching(self, ratings: Mapping[str, int]) -> list[str]:
        return [name for name in self.dimensions if ratings[name] >= self.rating_at_least]

    def render(self, names: Sequence[str], ratings: Mapping[str, int]) -> str:
        return self.text.format(
            dimensions=" and ".join(names),
            rating=max(ratings[name] for name in names),
            minimum_level=self.minimum_level.value,
        )


class CoOccurringRule(_Model):
    """Emotional dimension at `emotional_at_least` or more together with a substance-use result that matches
    one of `substance_results`: the level goes up `raise_by` steps, never past `cap` (and never down)."""

    code: Code
    emotional_at_least: Rating
    substance_results: tuple[InstrumentCondition, ...] = Field(min_length=1)
    raise_by: Annotated[int, Strict(), Field(ge=1, le=4)]
    cap: CareLevel
    text: Text

    @field_validator("substance_results")
    @classmethod
    def _substance_instruments(cls, conditions: tuple[InstrumentCondition, ...]) -> tuple[InstrumentCondition, ...]:
        for condition in conditions:
            if condition.instrument not in SUBSTANCE_INSTRUMENTS:
                raise ValueError(
                    f"{condition.instrument} is not a substance-use instrument; use one of "
                    f"{sorted(SUBSTANCE_INSTRUMENTS)}"
                )
        return conditions

    @field_validator("text")
    @classmethod
    def _template(cls, text: str, info: ValidationInfo) -> str:
        conditions: tuple[InstrumentCondition, ...] = info.data.get("substance_results", ())
        with_total = all(condition.has_total for condition in conditions)
        sample = {
            **_instrument_sample({"instrument": "audit"}, with_total),
            "emotional": 2,
            "level": CareLevel.PHP.value,
            "raise_by": 1,
            "cap": CareLevel.RESIDENTIAL.value,
        }
        return _check_template(text, sample)

    def render(self, emotional: int, result: InstrumentResult, level: CareLevel) -> str:
        return self.text.format(
            emotional=emotional,
            instrument=result.instrument,
            total=result.total,
            band=result.band,
            level=level.value,
            raise_by=self.raise_by,
            cap=self.cap.value,
        )


class PlacementPolicy(_Model):
    """A clinic's placement rules. `version` is recorded with every recommendation."""

    version: Text
    levels_by_rating: dict[RatingKey, CareLevel]
    dimension_rules: tuple[DimensionRule, ...] = ()
    instrument_rules: tuple[InstrumentRule, ...] = ()
    co_occurring: CoOccurringRule | None = None

    @field_validator("levels_by_rating")
    @classmethod
    def _every_rating_non_decreasing(cls, levels: dict[int, CareLevel]) -> dict[int, CareLevel]:
        missing = [rating for rating in range(5) if rating not in levels]
        if missing:
            raise ValueError(f"needs a level for every rating 0–4; missing {missing}")
        for rating in range(1, 5):
            if _RANK[levels[rating]] < _RANK[levels[rating - 1]]:
                raise ValueError(
                    f"rating {rating} maps to {levels[rating].value}, below {levels[rating - 1].value} for "
                    f"rating {rating - 1}: a higher rating must never give a lower level"
                )
        return levels

    @model_validator(mode="after")
    def _unique_codes(self) -> PlacementPolicy:
        seen: dict[str, str] = {}
        located = [(f"dimension_rules.{i}.code", rule.code) for i, rule in enumerate(self.dimension_rules)]
        located += [(f"instrument_rules.{i}.code", rule.code) for i, rule in enumerate(self.instrument_rules)]
        if self.co_occurring is not None:
            located.append(("co_occurring.code", self.co_occurring.code))
        for where, code in located:
            if code in RESERVED_CODES:
                raise ValueError(f"{where}: {code!r} is reserved for the engine's own reasons")
            if code in seen:
                raise ValueError(f"{where}: {code!r} is already used by {seen[code]}; codes must be unique")
            seen[code] = where
        return self


def load_placement_policy(path: Path = DEFAULT_PLACEMENT_POLICY) -> PlacementPolicy:
    """Read and validate a placement policy file; raise PolicyError naming the file and the field."""
    return load_policy_file(path, PlacementPolicy, "placement policy")


@dataclass(frozen=True)
class Recommendation:
    level: CareLevel
    rationale: list[Reason]
    policy_version: str
    refer_out: bool


def _higher(first: CareLevel, second: CareLevel) -> CareLevel:
    return first if _RANK[first] >= _RANK[second] else second


def recommend_level(
    dimensions: DimensionRatings,
    instruments: Sequence[InstrumentResult],
    program: Program,
    policy: PlacementPolicy,
) -> Recommendation:
    """Recommend a level of care: the highest dimension sets it; matching rules only ever raise it."""
    ratings: dict[str, int] = dimensions.model_dump()
    level, rationale = _by_highest_dimension(ratings, policy)
    for minimum, reason in [*_dimension_rules(ratings, policy), *_instrument_rules(instruments, program, policy)]:
        level = _higher(level, minimum)
        rationale.append(reason)
    co_occurring = _co_occurring(level, ratings, instruments, policy.co_occurring)
    if co_occurring is not None:
        level, reason = co_occurring
        rationale.append(reason)
    refer_out = level in REFER_OUT_LEVELS
    ending = "; refer out to a program that provides it" if refer_out else ""
    rationale.append(Reason(code="recommended_level", text=f"Recommended level of care: {level.value}{ending}."))
    return Recommendation(level=level, rationale=rationale, policy_version=policy.version, refer_out=refer_out)


def _by_highest_dimension(ratings: dict[str, int], policy: PlacementPolicy) -> tuple[CareLevel, list[Reason]]:
    highest = max(ratings.values())
    drivers = [name for name, rating in ratings.items() if rating == highest]
    level = policy.levels_by_rating[highest]
    text = f"Highest dimension rating is {highest} ({', '.join(drivers)}): {level.value}."
    return level, [Reason(code="highest_dimension", text=text)]


def _dimension_rules(ratings: dict[str, int], policy: PlacementPolicy) -> list[tuple[CareLevel, Reason]]:
    """Each dimension rule that matches: its minimum level, and why."""
    raised = []
    for rule in policy.dimension_rules:
        names = rule.matching(ratings)
        if names:
            raised.append((rule.minimum_level, Reason(code=rule.code, text=rule.render(names, ratings))))
    return raised


def _instrument_rules(
    instruments: Sequence[InstrumentResult], program: Program, policy: PlacementPolicy
) -> list[tuple[CareLevel, Reason]]:
    """Each instrument rule of the program that a result matches (the first such result): its minimum level,
    and why."""
    raised = []
    for rule in (rule for rule in policy.instrument_rules if program in rule.programs):
        result = next((result for result in instruments if rule.matches(result)), None)
        if result is not None:
            raised.append((rule.minimum_level, Reason(code=rule.code, text=rule.render(result))))
    return raised


def _co_occurring(
    level: CareLevel, ratings: dict[str, int], instruments: Sequence[InstrumentResult], rule: CoOccurringRule | None
) -> tuple[CareLevel, Reason] | None:
    """Emotional rating and a substance result together raise the level by the rule's steps, up to its cap."""
    if rule is None or ratings["emotional"] < rule.emotional_at_least:
        return None
    matching = (result for condition in rule.substance_results for result in instruments if condition.matches(result))
    substance = next(matching, None)
    if substance is None:
        return None
    level = _higher(level, LEVEL_ORDER[min(_RANK[level] + rule.raise_by, _RANK[rule.cap])])
    return level, Reason(code=rule.code, text=rule.render(ratings["emotional"], substance, level))
