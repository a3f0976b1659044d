"""From a care event to the notifications it causes.

A notification's id is derived from the event (source + id) and what is sent to whom on which
channel, so a redelivered event maps onto the notification that exists already.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from stepwise_contract import CareLevelAssigned, CloudEvent, EventData, SafetyAlertRaised, SessionMissed

NAMESPACE = uuid.UUID("6f1c2b0e-5d1a-4c8e-9a57-2f3d0c9e4b11")

RecipientKind = Literal["patient", "care_team"]
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


def notification_id(event: CloudEvent[Any], purpose: str, recipient_kind: str, channel: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{event.dedup_key}|{purpose}|{recipient_kind}|{channel}"))


def plan_notifications(
    event: CloudEvent[EventData], care_team_channels: Sequence[Channel] = ()
) -> list[PlannedNotification]:
    """The notifications an event causes; ``care_team_channels`` are those the clinic configured."""
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
            for channel in care_team_channels
        ]
    if isinstance(data, CareLevelAssigned):
        if data.status != "active" or data.schedule is None:
            return []  # referral out is the care team's conversation, not an automatic message
        sessions = [
            {"starts_at": s.starts_at.isoformat(), "ends_at": s.ends_at.isoformat()} for s in data.schedule.sessions
        ]
        return [_patient_email(event, "welcome", {"timezone": data.schedule.timezone, "sessions": sessions})]
    if isinstance(data, SessionMissed):
        context = {"starts_at": data.starts_at.isoformat(), "consecutive_misses": data.consecutive_misses}
        return [_patient_email(event, "missed_session_outreach", context)]
    return []


def _patient_email(event: CloudEvent[Any], purpose: str, context: dict[str, Any]) -> PlannedNotification:
    return PlannedNotification(
        notification_id=notification_id(event, purpose, "patient", "email"),
        episode_id=event.subject,
        purpose=purpose,
        recipient_kind="patient",
        channel="email",
        context=context,
    )
