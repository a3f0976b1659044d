"""Changes between an episode's assessments, for step-up / step-down review and trends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from stepwise_contract import InstrumentChange, InstrumentResult

MEANINGFUL_CHANGE = {"phq9": 5}
"""Published minimal clinically meaningful change in points, by instrument (PHQ-9: 5)."""


def compare(previous: Sequence[InstrumentResult], current: Sequence[InstrumentResult]) -> list[InstrumentChange]:
    """One change per instrument given in both assessments (higher totals mean more severe)."""
    before = {result.instrument: result for result in previous}
    changes = []
    for result in current:
        earlier = before.get(result.instrument)
        if earlier is None:
            continue
        delta = None if result.total is None or earlier.total is None else result.total - earlier.total
        changes.append(
            InstrumentChange(
                instrument=result.instrument,
                previous_total=earlier.total,
                total=result.total,
                delta=delta,
                previous_band=earlier.band,
                band=result.band,
                meaningful_change=_meaningful(result.instrument, delta),
            )
        )
    return changes


def _meaningful(instrument: str, delta: int | None) -> Literal["improvement", "worsening"] | None:
    threshold = MEANINGFUL_CHANGE.get(instrument)
    if threshold is None or delta is None or abs(delta) < threshold:
        return None
    return "improvement" if delta < 0 else "worsening"


def trend(totals: Sequence[int]) -> Literal["improving", "worsening", "stable"]:
    """Direction from the first to the latest total (lower is better for every scored instrument)."""
    if len(totals) < 2 or totals[-1] == totals[0]:
        return "stable"
    return "improving" if totals[-1] < totals[0] else "worsening"
