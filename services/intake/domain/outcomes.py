"""An episode's scores as series per instrument, and outcomes across episodes (pure).

The series recomputes each point's classification from the episode's records under the policy in force, the same
way ``iop.measure.recorded`` was built (``measures.measure_instrument``). Outcomes are the population view The Joint
Commission's CTS.03.01.09 asks for: per instrument, of the episodes with two or more scores, the share with a reliable
improvement, deterioration, recovery, and the median change from baseline to the latest score; a group smaller than
the clinic's minimum is suppressed (small cells could identify a person).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from stepwise_contract import InstrumentMeasure, InstrumentResult

from .measures import MeasuresPolicy, measure_instrument
from .model import Episode

Source = Literal["measure", "assessment"]


@dataclass(frozen=True)
class SeriesPoint:
    record_id: str
    source: Source
    recorded_at: datetime
    measured: InstrumentMeasure


def _records(episode: Episode) -> list[tuple[datetime, Source, str, list[InstrumentResult]]]:
    """The episode's scored records, oldest first (assessments before measures at the same moment)."""
    found: list[tuple[datetime, Source, str, list[InstrumentResult]]] = [
        (a.assessed_at, "assessment", a.assessment_id, a.instruments) for a in episode.assessments
    ]
    found += [(m.recorded_at, "measure", m.measure_id, m.instruments) for m in episode.measures]
    return sorted(found, key=lambda record: record[0])


def series(episode: Episode, policy: MeasuresPolicy) -> dict[str, list[SeriesPoint]]:
    """Every total on each instrument, oldest first, each against the baseline and the previous score."""
    totals: dict[str, list[int]] = {}
    points: dict[str, list[SeriesPoint]] = {}
    for at, source, record_id, results in _records(episode):
        for result in results:
            measured = measure_instrument(result, totals.get(result.instrument, []), policy)
            if measured is None:
                continue
            totals.setdefault(result.instrument, []).append(measured.score)
            points.setdefault(result.instrument, []).append(SeriesPoint(record_id, source, at, measured))
    return points


@dataclass(frozen=True)
class InstrumentOutcome:
    instrument: str
    episodes: int | None
    """Episodes with two or more scores on the instrument; None when suppressed."""
    suppressed: bool
    reliable_improvement: float | None
    reliable_deterioration: float | None
    recovered: float | None
    median_change: float | None


def _latest(points: Sequence[SeriesPoint]) -> InstrumentMeasure | None:
    return points[-1].measured if len(points) >= 2 else None


def outcomes(episodes: Iterable[Episode], policy: MeasuresPolicy, min_group: int) -> list[InstrumentOutcome]:
    """Per instrument (in name order): of the episodes with two or more scores, the latest score against the
    baseline; groups under ``min_group`` episodes are suppressed (no counts, no shares)."""
    latest: dict[str, list[InstrumentMeasure]] = {}
    for episode in episodes:
        for instrument, points in series(episode, policy).items():
            last = _latest(points)
            if last is not None:
                latest.setdefault(instrument, []).append(last)
    return [_outcome(instrument, latest[instrument], min_group) for instrument in sorted(latest)]


def _outcome(instrument: str, last: Sequence[InstrumentMeasure], min_group: int) -> InstrumentOutcome:
    if len(last) < min_group:
        return InstrumentOutcome(instrument, None, True, None, None, None, None)

    def share(count: int) -> float:
        return round(count / len(last), 3)

    return InstrumentOutcome(
        instrument=instrument,
        episodes=len(last),
        suppressed=False,
        reliable_improvement=share(sum(m.classification == "reliable_improvement" for m in last)),
        reliable_deterioration=share(sum(m.classification == "reliable_deterioration" for m in last)),
        recovered=share(sum(m.recovered for m in last)),
        median_change=float(statistics.median(m.score - m.baseline_score for m in last)),
    )
