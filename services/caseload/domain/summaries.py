"""One line per event for an episode's timeline: what happened, in the clinic's words (pure; ids, codes and
levels only, as the events carry)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stepwise_contract import EventData

SUMMARIES: dict[str, Callable[[Any], str]] = {
    "iop.assessment.completed": lambda d: (
        ("Intake assessment" if d.kind == "intake" else "Reassessment")
        + f": {d.recommended_level} recommended"
        + (f", {d.placement.chosen_level} chosen" if d.placement else "")
    ),
    "iop.care_level.assigned": lambda d: (
        f"Care plan started at {d.level}" if d.status == "active" else f"Referred out ({d.level})"
    ),
    "iop.care_level.changed": lambda d: f"Level changed {d.from_level} → {d.to_level} (step {d.direction})",
    "iop.care_level.step_up_recommended": lambda d: (
        f"Step up recommended: {d.from_level} → {d.to_level}" + (" (referral out)" if d.refer_out else "")
    ),
    "iop.care_level.step_down_recommended": lambda d: f"Step down recommended: {d.from_level} → {d.to_level}",
    "iop.schedule.changed": lambda d: f"Calendar changed ({d.reason.replace('_', ' ')})",
    "iop.group.waitlisted": lambda d: f"Waitlisted for a {d.level} {d.track} group (position {d.position})",
    "iop.session.missed": lambda d: f"Missed session {d.session_id} ({d.consecutive_misses} in a row)",
    "iop.service.delivered": lambda d: (
        f"Session {d.session_id}: {d.attendance}" + (" (corrected)" if d.revision > 1 else "")
    ),
    "iop.safety.alert_raised": lambda d: f"Safety alert ({d.level.replace('_', ' ')}): {', '.join(d.reasons)}",
    "iop.safety.alert_acknowledged": lambda _: "Safety alert acknowledged",
    "iop.safety.alert_escalated": lambda _: "Safety alert not acknowledged in time: sent to on-call",
    "iop.measure.due": lambda d: f"Measure due: {', '.join(d.instruments)} ({d.reason})",
    "iop.measure.overdue": lambda d: f"Measure overdue: {', '.join(d.instruments)}",
    "iop.measure.recorded": lambda d: (
        "Scores: "
        + ", ".join(f"{i.instrument} {i.score} ({i.band}, {i.classification.replace('_', ' ')})" for i in d.instruments)
    ),
    "iop.notification.failed": lambda d: f"Message not delivered: {d.purpose} to {d.recipient_kind} by {d.channel}",
    "iop.notification.sent": lambda d: f"Message sent: {d.purpose} to {d.recipient_kind} by {d.channel}",
    "iop.episode.graduated": lambda d: f"Graduated ({d.by})",
    "iop.episode.discharged": lambda d: f"Discharged ({d.reason_code.replace('_', ' ')})",
    "iop.care_team.changed": lambda _: "Primary clinician assigned",
    "iop.drug_screen.recorded": lambda d: (
        "Drug screen recorded" + (": unexpected positive" if d.unexpected_positive else "")
    ),
    "iop.attendance.rule_triggered": lambda d: f"Attendance rule {d.rule_code}: {d.action.replace('_', ' ')}",
    "iop.consent.changed": lambda d: f"Consent {d.status} ({d.recipient_kind})",
}


def summary(data: EventData) -> str:
    """The line for ``data``; an event type without its own line is named by its type."""
    describe = SUMMARIES.get(data.event_type)
    return describe(data) if describe else data.event_type.removeprefix("iop.").replace("_", " ").replace(".", ": ")
