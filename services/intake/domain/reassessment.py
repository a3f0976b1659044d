"""Changes between an episode's assessments, for step-up / step-down review and trends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from stepwise_contract import InstrumentChange, InstrumentResult

from .measures import MeasuresPolicy, change_between


def compare(
    previous: Sequence[InstrumentResult], current: Sequence[InstrumentResult], policy: MeasuresPolicy
) -> list[InstrumentChange]:
    """One change per instrument given in both assessments (higher totals mean more severe); a change is
    meaningful by the instrument's reliable-change threshold in the measures policy (as a measure's classification)."""
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
                meaningful_change=None if delta is None else change_between(result.instrument, 0, delta, policy),
            )
        )
    return changes


def trend(totals: Sequence[int]) -> Literal["improving", "worsening", "stable"]:
    """Direction from the first to the latest total (lower is better for every scored instrument)."""
    if len(totals) < 2 or totals[-1] == totals[0]:
        return "stable"
    return "improving" if totals[-1] < totals[0] else "worsening"
