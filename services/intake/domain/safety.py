"""Safety escalation from scored instruments.

The published scoring sets the flags (PHQ-9 item 9 > 0: same-day clinician review; C-SSRS high risk:
immediate safety alert); this maps them to an alert level and reason codes, never the answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stepwise_contract import ALERT_LEVELS, AlertLevel, InstrumentResult

ESCALATIONS: dict[tuple[str, str], tuple[AlertLevel, str]] = {
    ("cssrs", "immediate_safety_alert"): ("immediate", "cssrs_high_risk"),
    ("phq9", "same_day_review"): ("same_day", "phq9_item9_positive"),
}


@dataclass(frozen=True)
class SafetyConcern:
    level: AlertLevel
    reasons: list[str]


def safety_concern(results: Sequence[InstrumentResult]) -> SafetyConcern | None:
    """The alert an assessment calls for, at the most urgent level among its reasons; None if none."""
    found = [
        ESCALATIONS[(r.instrument, flag)] for r in results for flag in r.flags if (r.instrument, flag) in ESCALATIONS
    ]
    if not found:
        return None
    level = min((level for level, _ in found), key=ALERT_LEVELS.index)  # the most urgent
    return SafetyConcern(level=level, reasons=[reason for _, reason in found])
