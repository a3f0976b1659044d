"""Shared vocabulary of the events: the order of the levels of care, and what each instrument reports.

``InstrumentResult.band`` and ``.flags`` in events take exactly these values; rules in Stepwise and in
subscribing systems can check names against them instead of copying them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .events import CareLevel

LEVEL_ORDER: tuple[CareLevel, ...] = (
    CareLevel.OP,
    CareLevel.IOP,
    CareLevel.PHP,
    CareLevel.RESIDENTIAL,
    CareLevel.INPATIENT,
)
"""Levels of care from least to most intensive."""


@dataclass(frozen=True)
class InstrumentVocabulary:
    label: str
    bands: tuple[str, ...]
    """Band names, least to most severe."""
    flags: tuple[str, ...]
    max_total: int | None
    """Highest total; None for an instrument without one (C-SSRS, BAM)."""


INSTRUMENTS: Mapping[str, InstrumentVocabulary] = {
    "phq9": InstrumentVocabulary(
        "PHQ-9", ("minimal", "mild", "moderate", "moderately_severe", "severe"), ("same_day_review",), 27
    ),
    "gad7": InstrumentVocabulary("GAD-7", ("minimal", "mild", "moderate", "severe"), ("further_assessment",), 21),
    "audit": InstrumentVocabulary(
        "AUDIT", ("low", "hazardous", "harmful", "possible_dependence"), ("specialist_referral",), 40
    ),
    "audit_c": InstrumentVocabulary("AUDIT-C", ("negative", "positive"), ("cutoff_sex_unspecified",), 12),
    "dast10": InstrumentVocabulary(
        "DAST-10", ("none", "low", "moderate", "substantial", "severe"), ("intensive_assessment",), 10
    ),
    "cssrs": InstrumentVocabulary(
        "C-SSRS", ("low", "moderate", "high"), ("clinician_review", "immediate_safety_alert"), None
    ),
    "bam": InstrumentVocabulary("BAM", ("reported",), ("use_reported",), None),
}
"""Every instrument intake scores, by the name events use."""
