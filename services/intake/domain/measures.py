"""Measurement-based care (pure): when a change in an instrument's score counts, by the clinic's measures policy.

Every scored instrument, from a measure or an assessment, is compared with the episode's baseline (its first score on
that instrument) and, also reported, its previous score. The thresholds are policy data (``policy/measures.yaml``,
defaults from NHS Talking Therapies, derived from Jacobson & Truax 1991); the assessment's ``meaningful_change``
uses the same ones (``change_between``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.common.policy_file import load_policy_file
from stepwise_contract import INSTRUMENTS, InstrumentMeasure, InstrumentResult, MeasureClassification

DEFAULT_MEASURES_POLICY = Path(__file__).resolve().parent.parent / "policy" / "measures.yaml"
RELIABLE_Z = 1.96
"""Jacobson & Truax: a change is reliable when it exceeds 1.96 standard errors of the difference (p < .05)."""


class InstrumentThresholds(BaseModel):
    """One instrument's thresholds: a reliable change in points, or the SD and reliability to derive it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reliable_change: int | None = Field(default=None, ge=1, description="A change of this many points or more.")
    sd: float | None = Field(default=None, gt=0, description="The instrument's standard deviation (Jacobson-Truax).")
    reliability: float | None = Field(default=None, gt=0, lt=1, description="Its test-retest or internal reliability.")
    caseness: int | None = Field(default=None, ge=1, description="The lowest score that counts as a case.")
    source: str = Field(min_length=1, description="Where the numbers come from (a public source).")

    @model_validator(mode="after")
    def _one_way(self) -> InstrumentThresholds:
        derived = self.sd is not None and self.reliability is not None
        if (self.reliable_change is None) == (not derived):
            raise ValueError("give reliable_change, or sd and reliability (not both)")
        return self

    @property
    def points(self) -> int:
        """The smallest whole change that is reliable."""
        if self.reliable_change is not None:
            return self.reliable_change
        assert self.sd is not None and self.reliability is not None
        s_diff = math.sqrt(2) * self.sd * math.sqrt(1 - self.reliability)
        return math.floor(RELIABLE_Z * s_diff) + 1  # strictly more than 1.96 S_diff


class MeasuresPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(min_length=1)
    instruments: dict[str, InstrumentThresholds]
    crisis_resources: str = Field(min_length=1, description="Shown at once after a positive suicide item.")

    @model_validator(mode="after")
    def _known_instruments(self) -> MeasuresPolicy:
        for name in self.instruments:
            known = INSTRUMENTS.get(name)
            if known is None or known.max_total is None:
                raise ValueError(f"instruments.{name}: not an instrument with a total ({sorted(INSTRUMENTS)})")
        return self


def load_measures_policy(path: Path = DEFAULT_MEASURES_POLICY) -> MeasuresPolicy:
    """Read and validate a measures policy file; raise PolicyError naming the file and the field."""
    return load_policy_file(path, MeasuresPolicy, "measures policy")


def classify(baseline: int, score: int, thresholds: InstrumentThresholds | None) -> MeasureClassification:
    """A later score against the baseline (lower is better): reliable when the change reaches the threshold."""
    if thresholds is None or abs(score - baseline) < thresholds.points:
        return "no_reliable_change"
    return "reliable_improvement" if score < baseline else "reliable_deterioration"


def recovered(baseline: int, score: int, thresholds: InstrumentThresholds | None) -> bool:
    """From caseness (at or above it) at baseline to below it now."""
    caseness = None if thresholds is None else thresholds.caseness
    return caseness is not None and baseline >= caseness > score


def response(baseline: int, score: int) -> bool:
    """At least 50 % below a baseline above zero."""
    return baseline > 0 and 2 * score <= baseline


def change_between(
    instrument: str, previous: int, current: int, policy: MeasuresPolicy
) -> Literal["improvement", "worsening"] | None:
    """The assessment's ``meaningful_change``: the reliable-change threshold between two scores, or None."""
    found = classify(previous, current, policy.instruments.get(instrument))
    if found == "reliable_improvement":
        return "improvement"
    return "worsening" if found == "reliable_deterioration" else None


def measure_instrument(
    result: InstrumentResult, earlier: Sequence[int], policy: MeasuresPolicy
) -> InstrumentMeasure | None:
    """One scored instrument against the episode's earlier totals on it (oldest first); None without a total."""
    if result.total is None:
        return None
    score = result.total
    thresholds = policy.instruments.get(result.instrument)
    if not earlier:
        first = {"baseline_score": score, "previous_score": None, "recovered": False, "response": False}
        return InstrumentMeasure(instrument=result.instrument, score=score, band=result.band, classification="baseline",
                                 **first)  # fmt: skip
    baseline = earlier[0]
    return InstrumentMeasure(
        instrument=result.instrument,
        score=score,
        band=result.band,
        baseline_score=baseline,
        previous_score=earlier[-1],
        classification=classify(baseline, score, thresholds),
        recovered=recovered(baseline, score, thresholds),
        response=response(baseline, score),
    )


def measure_all(
    results: Sequence[InstrumentResult], history: Mapping[str, Sequence[int]], policy: MeasuresPolicy
) -> list[InstrumentMeasure]:
    """Every instrument with a total, in the order given, against ``history`` (earlier totals by instrument)."""
    found = (measure_instrument(result, history.get(result.instrument, ()), policy) for result in results)
    return [measured for measured in found if measured is not None]
