"""From a care event to the notifications it causes.

A notification's id is derived from the event (source + id) and what is sent to whom on which
channel, so a redelivered event maps onto the notification that exists already.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from stepwise_contract import (
    AttendanceRuleTriggered,
    CareLevelAssigned,
    CloudEvent,
    EventData,
    SafetyAlertRaised,
    SessionMissed,
    StepDownRecommended,
    StepUpRecommended,
)

NAMESPACE = uuid.UUID("6f1c2b0e-5d1a-4c8e-9a57-2f3d0c9e4b11")

RecipientKind = Literal["patient", "care_team", "family", "designated_support"]
SUPPORT_KINDS = ("family", "designated_support")
Channel = Literal["email", "webhook"]


@dataclass(frozen=True)
class PlannedNotification:
    notification_id: str
    episode_id: str
    purpose: str
    """Also the template name."""
    recipient_kind: RecipientKind
    channel: Channel
    context: dict[str, Any] = field(default_factory=dict)
    """What the template needs: times and counts, never contact data."""
    urgent: bool = False
    """Safety messages to staff: never delayed or suppressed."""
    consent_id: str | None = None
    """For a family member or designated support: the consent that names them (checked again at send time)."""


def notification_id(event: CloudEvent[Any], purpose: str, recipient_kind: str, channel: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{event.dedup_key}|{purpose}|{recipient_kind}|{channel}"))


def support_scope(event: CloudEvent[EventData]) -> str | None:
    """What a consent must allow for supports to hear of this event (None: supports are not told)."""
    if isinstance(event.data, CareLevelAssigned) and event.data.status == "active":
        return "appointments"
    if isinstance(event.data, SessionMissed):
        return "attendance"
    return None


def plan_notifications(
    event: CloudEvent[EventData],
    care_team_channels: Sequence[Channel] = (),
    supports: Sequence[tuple[str, str]] = (),
) -> list[PlannedNotification]:
    """The notifications an event causes.

    ``care_team_channels``: those the clinic configured; ``supports``: (consent_id, kind) of the supports
    whose current consent allows ``support_scope(event)``; nobody else is ever planned for.
    """
    return [*_for_care_team(event, care_team_channels), *_for_patient(event), *_for_supports(event, supports)]


def _for_supports(event: CloudEvent[EventData], supports: Sequence[tuple[str, str]]) -> list[PlannedNotification]:
    if not supports or support_scope(event) is None:
        return []
    purpose = "support_schedule" if isinstance(event.data, CareLevelAssigned) else "support_missed_session"
    context = _for_patient(event)[0].context
    return [
        PlannedNotification(
            notification_id=notification_id(event, purpose, f"{kind}:{consent_id}", "email"),
            episode_id=event.subject,
            purpose=purpose,
            recipient_kind=kind,  # type: ignore[arg-type]
            channel="email",
            context=context,
            consent_id=consent_id,
        )
        for consent_id, kind in supports
        if kind in SUPPORT_KINDS
    ]


def _for_care_team(event: CloudEvent[EventData], channels: Sequence[Channel]) -> list[PlannedNotification]:
    data = event.data
    if isinstance(data, SafetyAlertRaised):
        alert: dict[str, Any] = {
            "level": data.level,
            "reasons": data.reasons,
            "raised_at": data.raised_at.isoformat(),
            "assessment_id": data.assessment_id,
        }
        return [
            PlannedNotification(
                notification_id=notification_id(event, "safety_alert", "care_team", channel),
                episode_id=event.subject,
                purpose="safety_alert",
                recipient_kind="care_team",
                channel=channel,
                context=alert,
                urgent=True,
            )
            for channel in channels
        ]
    if "email" not in channels:
        return []
    if isinstance(data, StepUpRecommended | StepDownRecommended):
        step: dict[str, Any] = {
            "direction": "up" if isinstance(data, StepUpRecommended) else "down",
            "from_level": data.from_level.value,
            "to_level": data.to_level.value,
            "reasons": [reason.text for reason in data.rationale],
            "recommendation_id": data.recommendation_id,
            "policy_version": data.policy_version,
        }
        return [_email(event, "care_team", "step_recommendation", step)]
    if isinstance(data, AttendanceRuleTriggered):
        escalation: dict[str, Any] = {
            "action": data.action,
            "rule_code": data.rule_code,
            "session_id": data.session_id,
            "reasons": [reason.text for reason in data.rationale],
        }
        return [_email(event, "care_team", "attendance_escalation", escalation)]
    return []


def _for_patient(event: CloudEvent[EventData]) -> list[PlannedNotification]:
    data = event.data
    if isinstance(data, CareLevelAssigned):
        if data.status != "active" or data.schedule is None:
            return []  # referral out is the care team's conversation, not an automatic message
        sessions = [
            {"starts_at": s.starts_at.isoformat(), "ends_at": s.ends_at.isoformat()} for s in data.schedule.sessions
        ]
        return [_email(event, "patient", "welcome", {"timezone": data.schedule.timezone, "sessions": sessions})]
    if isinstance(data, SessionMissed):
        missed: dict[str, Any] = {
            "starts_at": data.starts_at.isoformat(),
            "consecutive_misses": data.consecutive_misses,
        }
        return [_email(event, "patient", "missed_session_outreach", missed)]
    return []


def _email(
    event: CloudEvent[Any], recipient_kind: RecipientKind, purpose: str, context: dict[str, Any]
) -> PlannedNotification:
    return PlannedNotification(
        notification_id=notification_id(event, purpose, recipient_kind, "email"),
        episode_id=event.subject,
        purpose=purpose,
        recipient_kind=recipient_kind,
        channel="email",
        context=context,
    )
