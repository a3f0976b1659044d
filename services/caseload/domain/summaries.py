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
    "iop.treatment_plan.signed": lambda d: (
        f"Treatment plan version {d.version} signed"
        + (f", next review due {d.review_due_on.isoformat()}" if d.review_due_on else "")
    ),
    "iop.treatment_plan.review_due": lambda d: (
        f"Treatment plan review due {d.due_on.isoformat()} ({_words(d.reason)}, version {d.version})"
    ),
    "iop.treatment_plan.review_overdue": lambda d: (
        f"Treatment plan review overdue: was due {d.due_on.isoformat()} ({_words(d.reason)})"
    ),
    "iop.authorization.changed": lambda d: (
        f"Authorization ({d.payer}, {d.level}) {_words(d.status)}: "
        + (f"{d.units_used:g} of " if d.units_authorized is not None else "")
        + f"{_units(d.units_authorized if d.units_authorized is not None else d.units_used, d.unit)} used"
        + (f", review due {d.review_due_on.isoformat()}" if d.review_due_on else "")
    ),
    "iop.authorization.review_due": lambda d: (
        f"Authorization review due {d.review_due_on.isoformat()} ({d.payer}, {_words(d.reason)} "
        f"{d.deadline.isoformat()})"
    ),
    "iop.authorization.units_low": lambda d: (
        f"Authorization units low: {_units(d.units_remaining, d.unit)} left, "
        f"{_units(d.units_scheduled, d.unit)} scheduled in {d.days} days"
    ),
    "iop.authorization.exhausted": lambda d: (
        f"Authorization used up on {d.exhausted_on.isoformat()} ({_units(d.units_authorized, d.unit)}, {d.payer})"
    ),
    "iop.service.unauthorized": lambda d: (
        f"{'Day' if d.item == 'day' else 'Service'} of {d.service_date.isoformat()} ({d.level}, {d.code}) not "
        f"authorized: {_words(d.reason)}"
    ),
    "iop.authorization.level_mismatch": lambda d: (
        f"Clinical level {d.clinical_level} differs from the authorized level {d.authorized_level}"
    ),
    "iop.certification.due": lambda d: (
        f"{'Certification' if d.reason == 'initial' else 'Recertification'} due {d.due_on.isoformat()} ({d.payer})"
    ),
    "iop.treatment_plan.reviewed": lambda d: (
        f"Treatment plan version {d.version} reviewed ({d.outcome})"
        + (f", next review due {d.review_due_on.isoformat()}" if d.review_due_on else "")
    ),
    "iop.certification.recorded": lambda d: (
        f"Certification of {d.certified_on.isoformat()} recorded ({d.hours_per_week:g} h/week, {d.payer}): next due "
        f"{d.next_due_on.isoformat()}"
    ),
}


def _words(code: str) -> str:
    return code.replace("_", " ")


def _units(count: float, unit: str) -> str:
    return f"{count:g} {unit}{'' if count == 1 else 's'}"


def summary(data: EventData) -> str:
    """The line for ``data``; an event type without its own line is named by its type."""
    describe = SUMMARIES.get(data.event_type)
    return describe(data) if describe else data.event_type.removeprefix("iop.").replace("_", " ").replace(".", ": ")
