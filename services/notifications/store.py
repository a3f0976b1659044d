"""notifications' MongoDB database: one document per logical notification (the delivery log)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any, Literal

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from services.common.mongo import Document
from services.common.outbox import EPOCH, insert_aggregate, with_events
from services.common.utc import utc_now, wall_clock
from stepwise_contract import EventData, NotificationFailed, NotificationSent, new_event

from .domain.messages import PlannedNotification

NOTIFICATIONS = "notifications"
SOURCE = "/stepwise/notifications"
PENDING, SENT, FAILED, CANCELLED = "pending", "sent", "failed", "cancelled"


def _outcome(notification: Document) -> dict[str, Any]:
    return {
        "episode_id": notification["episode_id"],
        "notification_id": notification["_id"],
        "purpose": notification["purpose"],
        "recipient_kind": notification["recipient_kind"],
        "channel": notification["channel"],
        "attempts": notification["attempts"],
    }


class NotificationStore:
    def __init__(self, database: AsyncDatabase[Document], wake_relay: Callable[[], None]) -> None:
        self.notifications = database[NOTIFICATIONS]
        self._wake_relay = wake_relay

    async def create_indexes(self) -> None:
        await self.notifications.create_index([("status", ASCENDING), ("next_attempt_at", ASCENDING)])
        await self.notifications.create_index([("episode_id", ASCENDING), ("created_at", DESCENDING)])

    async def add(self, planned: PlannedNotification, cause: dict[str, str]) -> bool:
        """Store a notification to send; False if it exists already (a redelivered event)."""
        now = utc_now()
        fields = asdict(planned)
        document = {
            "_id": fields.pop("notification_id"),
            **fields,
            "cause": cause,
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "lease_until": EPOCH,
            "created_at": now,
            "sent_at": EPOCH,
            "last_error": "",
        }
        return await insert_aggregate(self.notifications, document)

    async def claim_due(self, lease: timedelta) -> Document | None:
        """Take one due notification for sending; the lease keeps other instances off it."""
        now, wall = utc_now(), wall_clock()
        return await self.notifications.find_one_and_update(
            {"status": PENDING, "next_attempt_at": {"$lte": now}, "lease_until": {"$lt": wall}},
            {"$set": {"lease_until": wall + lease}, "$inc": {"attempts": 1}},
            sort=[("next_attempt_at", ASCENDING)],
            return_document=ReturnDocument.AFTER,
        )

    async def mark_sent(self, notification: Document) -> None:
        """Record the send and queue iop.notification.sent in one write."""
        now = utc_now()
        event = NotificationSent(**_outcome(notification), sent_at=now)
        update = {"$set": {"status": SENT, "sent_at": now, "lease_until": EPOCH, "last_error": ""}}
        await self._finish(notification, update, event)

    async def retry_later(self, notification_id: str, delay: timedelta, error: str) -> None:
        await self.notifications.update_one(
            {"_id": notification_id},
            {"$set": {"next_attempt_at": utc_now() + delay, "lease_until": EPOCH, "last_error": error}},
        )

    async def mark_failed(self, notification: Document, error: str, permanent: bool) -> None:
        """Record the failure (the reason stays here) and queue iop.notification.failed in one write."""
        reason_code: Literal["permanent", "retries_exhausted"] = "permanent" if permanent else "retries_exhausted"
        event = NotificationFailed(**_outcome(notification), failed_at=utc_now(), reason_code=reason_code)
        update = {"$set": {"status": FAILED, "lease_until": EPOCH, "last_error": error}}
        await self._finish(notification, update, event)

    async def _finish(self, notification: Document, update: Document, event: EventData) -> None:
        # Guarded by the status, not the version: a send that happened must be recorded whatever else changed.
        await self.notifications.update_one(
            {"_id": notification["_id"], "status": PENDING},
            with_events(update, [new_event(event, source=SOURCE)]),
        )
        self._wake_relay()

    async def defer(self, notification_id: str, until: datetime) -> None:
        """Wait (quiet hours): not a failed attempt, so the claim's attempt is given back."""
        await self.notifications.update_one(
            {"_id": notification_id, "status": PENDING},
            {"$set": {"next_attempt_at": until, "lease_until": EPOCH}, "$inc": {"attempts": -1}},
        )

    async def mark_cancelled(self, notification_id: str, reason: str) -> None:
        """Not to be sent after all (a consent was withdrawn): no delivery outcome is published."""
        await self.notifications.update_one(
            {"_id": notification_id, "status": PENDING},
            {"$set": {"status": CANCELLED, "lease_until": EPOCH, "last_error": reason}},
        )

    async def find(self, query: dict[str, Any], limit: int) -> list[Document]:
        """Newest first; the outbox and the contact-free context are the service's own business."""
        cursor = self.notifications.find(query, {"outbox": 0}).sort("created_at", DESCENDING).limit(limit)
        return [document async for document in cursor]
