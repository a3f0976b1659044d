"""Scoring of standard screening instruments from their item answers (published scoring).

The API validates the shape of the answers (item count and range); these functions turn valid
answers into a total, a severity band and flag codes. Item answers never leave intake.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from stepwise_contract import InstrumentResult

Bands = Sequence[tuple[int, str]]
"""(lowest total of the band, band name), ascending."""

PHQ9_BANDS: Bands = ((0, "minimal"), (5, "mild"), (10, "moderate"), (15, "moderately_severe"), (20, "severe"))
GAD7_BANDS: Bands = ((0, "minimal"), (5, "mild"), (10, "moderate"), (15, "severe"))


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


SCORERS: dict[str, Callable[[Sequence[int]], InstrumentResult]] = {"phq9": score_phq9, "gad7": score_gad7}


def score_all(answers: Mapping[str, Sequence[int]]) -> list[InstrumentResult]:
    return [SCORERS[name](items) for name, items in answers.items()]
