"""notifications' MongoDB database: one document per logical notification (the delivery log)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.common.mongo import Document
from services.common.outbox import EPOCH
from services.common.utc import utc_now, wall_clock

from .domain.messages import PlannedNotification

PENDING, SENT, FAILED = "pending", "sent", "failed"


class NotificationStore:
    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self.notifications = database["notifications"]

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
        try:
            await self.notifications.insert_one(document)
        except DuplicateKeyError:
            return False
        return True

    async def claim_due(self, lease: timedelta) -> Document | None:
        """Take one due notification for sending; the lease keeps other instances off it."""
        now, wall = utc_now(), wall_clock()
        return await self.notifications.find_one_and_update(
            {"status": PENDING, "next_attempt_at": {"$lte": now}, "lease_until": {"$lt": wall}},
            {"$set": {"lease_until": wall + lease}, "$inc": {"attempts": 1}},
            sort=[("next_attempt_at", ASCENDING)],
            return_document=ReturnDocument.AFTER,
        )

    async def mark_sent(self, notification_id: str) -> None:
        await self.notifications.update_one(
            {"_id": notification_id},
            {"$set": {"status": SENT, "sent_at": utc_now(), "lease_until": EPOCH, "last_error": ""}},
        )

    async def retry_later(self, notification_id: str, delay: timedelta, error: str) -> None:
        await self.notifications.update_one(
            {"_id": notification_id},
            {"$set": {"next_attempt_at": utc_now() + delay, "lease_until": EPOCH, "last_error": error}},
        )

    async def mark_failed(self, notification_id: str, error: str) -> None:
        await self.notifications.update_one(
            {"_id": notification_id}, {"$set": {"status": FAILED, "lease_until": EPOCH, "last_error": error}}
        )

    async def find(self, query: dict[str, Any], limit: int) -> list[Document]:
        cursor = self.notifications.find(query).sort("created_at", DESCENDING).limit(limit)
        return [document async for document in cursor]
