"""A notification in the delivery log, and the outcome events its delivery publishes (pure: no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
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
    due_at: datetime
    """When it was first due (its schedule, or when it was planned): the retry budget runs from here."""
    traceparent: str | None = None
    """The trace of the event that planned it (W3C Trace Context): its delivery continues that trace."""
    none_opted_out_at: float | None = None
    """When (this process's monotonic clock) no recipient of its episode had opted out, as its episode's first
    calendar here proved; only on a message handed over as it was stored, never stored. None: opt-outs are looked up."""


@dataclass(frozen=True)
class RetryBudget:
    """How long a message that meets transient failures (relay unreachable, 4xx temporary, 5xx) is tried,
    and the longest wait between two attempts. A budget of time, not a count: attempts spent in seconds
    never end a message that a real outage of hours would have let through."""

    budget: timedelta = timedelta(hours=72)
    longest_wait: timedelta = timedelta(seconds=60)

    def next_attempt(self, notification: Notification, now: datetime, jitter: float) -> datetime | None:
        """When to try again, with capped exponential backoff (``jitter`` in [0, 1] spreads the retries of
        many messages); None once the budget from when it was due is spent."""
        give_up_at = notification.due_at + self.budget
        if now >= give_up_at:
            return None
        ceiling = min(self.longest_wait.total_seconds(), 0.5 * 2.0 ** min(notification.attempts, 32))
        wait = timedelta(seconds=ceiling * (0.5 + 0.5 * jitter))
        return min(now + wait, give_up_at)


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
