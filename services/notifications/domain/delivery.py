"""A notification in the delivery log, and the outcome events its delivery publishes (pure: no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from stepwise_contract import NotificationFailed, NotificationSent

from .messages import PlannedNotification

NotificationStatus = Literal["pending", "sent", "failed", "cancelled"]


@dataclass(frozen=True, kw_only=True)
class Notification(PlannedNotification):
    """A planned notification as the delivery log holds it: where its delivery stands."""

    status: NotificationStatus
    attempts: int
    """Attempts claimed so far (a quiet-hours wait gives its attempt back). ``not_before`` is when the next
    may be made (its schedule, a retry's backoff, the end of quiet hours)."""
    created_at: datetime
    sent_at: datetime | None
    last_error: str | None
    cause_event_type: str


def sent(notification: Notification, at: datetime) -> NotificationSent:
    return NotificationSent(**_outcome(notification), sent_at=at)


def failed(notification: Notification, at: datetime, permanent: bool) -> NotificationFailed:
    reason: Literal["permanent", "retries_exhausted"] = "permanent" if permanent else "retries_exhausted"
    return NotificationFailed(**_outcome(notification), failed_at=at, reason_code=reason)


def _outcome(notification: Notification) -> dict[str, object]:
    return {
        "episode_id": notification.episode_id,
        "notification_id": notification.notification_id,
        "purpose": notification.purpose,
        "recipient_kind": notification.recipient_kind,
        "channel": notification.channel,
        "attempts": notification.attempts,
    }
