"""notifications' MongoDB database: the delivery log (one document per logical notification), the current
session calendar of each episode, alumni enrolments and opt-outs."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.common.mongo import Document
from services.common.outbox import (
    EPOCH,
    insert_aggregate,
    insert_new_aggregates,
    retry_on_conflict,
    update_aggregate,
    with_events,
)
from services.common.utc import utc_now, wall_clock
from stepwise_contract import AlumniEnrolled, AlumniLeft, EventData, NotificationFailed, NotificationSent, new_event

from .domain.messages import PlannedNotification

NOTIFICATIONS = "notifications"
SOURCE = "/stepwise/notifications"
SCHEDULES = "episode_schedules"
ALUMNI = "alumni_enrolments"
OPT_OUTS = "opt_outs"
PENDING, SENT, FAILED, CANCELLED = "pending", "sent", "failed", "cancelled"
FOREVER = datetime(9999, 12, 31, tzinfo=UTC)


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
        await self.notifications.create_index([("episode_id", ASCENDING), ("series_kind", ASCENDING)])

    async def add(self, planned: Sequence[PlannedNotification], cause: dict[str, str]) -> int:
        """Store notifications to send, in one round trip; returns how many are new (a redelivered event adds none)."""
        now = utc_now()
        return await insert_new_aggregates(self.notifications, [self._document(p, cause, now) for p in planned])

    @staticmethod
    def _document(planned: PlannedNotification, cause: dict[str, str], now: datetime) -> Document:
        fields = asdict(planned)
        not_before = fields.pop("not_before") or now
        return {
            "_id": fields.pop("notification_id"),
            **fields,
            "expires_at": fields["expires_at"] or FOREVER,
            "cause": cause,
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": not_before,
            "lease_until": EPOCH,
            "created_at": now,
            "sent_at": EPOCH,
            "last_error": "",
        }

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
        """Not to be sent after all (consent withdrawn, opt-out, too late): no delivery outcome is published."""
        await self.notifications.update_one(
            {"_id": notification_id, "status": PENDING},
            {"$set": {"status": CANCELLED, "lease_until": EPOCH, "last_error": reason}},
        )

    async def cancel_pending(self, query: Document, reason: str) -> int:
        """Cancel the pending messages ``query`` selects (each is checked again at send time anyway)."""
        result = await self.notifications.update_many(
            {**query, "status": PENDING}, {"$set": {"status": CANCELLED, "last_error": reason}}
        )
        return result.modified_count

    async def find(self, query: dict[str, Any], limit: int) -> list[Document]:
        """Newest first; the outbox and the contact-free context are the service's own business."""
        cursor = self.notifications.find(query, {"outbox": 0}).sort("created_at", DESCENDING).limit(limit)
        return [document async for document in cursor]


class EpisodeSchedules:
    """Which session calendar of each episode is current, so reminders of a replaced one are never sent."""

    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self.schedules = database[SCHEDULES]

    async def adopt(self, episode_id: str, series: str, as_of: datetime) -> bool:
        """Make ``series`` current unless a later schedule is, or the episode ended; True if it is current."""
        made = int(as_of.timestamp() * 1_000_000)  # an integer orders the same on every store
        try:
            await self.schedules.update_one(
                {"_id": episode_id, "made": {"$lte": made}, "ended": False},
                {"$set": {"series": series, "made": made, "ended": False}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False  # the document exists and did not match: a newer schedule, or the episode ended
        return True

    async def end(self, episode_id: str) -> None:
        await self.schedules.update_one(
            {"_id": episode_id}, {"$set": {"ended": True, "series": "", "made": 0}}, upsert=True
        )

    async def is_current(self, episode_id: str, series: str) -> bool:
        found = await self.schedules.find_one({"_id": episode_id})
        return found is not None and not found["ended"] and found["series"] == series


ENROLLED, LEFT = "enrolled", "left"
LeaveReason = Literal["opted_out", "new_episode", "consent_withdrawn"]


class AlumniEnrolments:
    """One document per graduated episode whose graduate joined the alumni group, with its outbox."""

    def __init__(self, database: AsyncDatabase[Document], wake_relay: Callable[[], None]) -> None:
        self.enrolments = database[ALUMNI]
        self._wake_relay = wake_relay

    async def create_indexes(self) -> None:
        await self.enrolments.create_index([("patient_id", ASCENDING), ("status", ASCENDING)])

    async def enrol(self, episode_id: str, patient_id: str, consent_id: str, graduated_at: datetime,
                    check_in_days: list[int]) -> bool:  # fmt: skip
        """Enrol once per episode (False if enrolled already) and queue iop.alumni.enrolled in the same write."""
        now = utc_now()
        event = AlumniEnrolled(episode_id=episode_id, consent_id=consent_id, graduated_at=graduated_at,
                               enrolled_at=now, check_in_days=check_in_days)  # fmt: skip
        document = {"_id": episode_id, "patient_id": patient_id, "consent_id": consent_id, "status": ENROLLED,
                    "graduated_at": graduated_at, "enrolled_at": now, "left_at": EPOCH, "left_reason": ""}  # fmt: skip
        added = await insert_aggregate(self.enrolments, document, [new_event(event, source=SOURCE)])
        if added:
            self._wake_relay()
        return added

    async def get(self, episode_id: str) -> Document | None:
        return await self.enrolments.find_one({"_id": episode_id}, {"outbox": 0})

    async def enrolled(self, *, patient_id: str | None = None) -> list[Document]:
        query: Document = {"status": ENROLLED} | ({"patient_id": patient_id} if patient_id else {})
        return [doc async for doc in self.enrolments.find(query, {"outbox": 0})]

    async def find(self, query: Document, limit: int) -> list[Document]:
        cursor = self.enrolments.find(query, {"outbox": 0}).sort("enrolled_at", DESCENDING).limit(limit)
        return [document async for document in cursor]

    async def leave(self, episode_id: str, reason: LeaveReason) -> bool:
        """End the enrolment and queue iop.alumni.left in one write; False if it was not enrolled."""

        async def attempt() -> bool | None:
            enrolment = await self.get(episode_id)
            if enrolment is None or enrolment["status"] != ENROLLED:
                return False
            now = utc_now()
            event = AlumniLeft(episode_id=episode_id, left_at=now, reason_code=reason)
            changes = {"status": LEFT, "left_at": now, "left_reason": reason}
            events = [new_event(event, source=SOURCE)]
            if not await update_aggregate(self.enrolments, episode_id, enrolment["version"], changes, events):
                return None  # another write won: load and decide again
            self._wake_relay()
            return True

        return await retry_on_conflict(attempt)


class OptOuts:
    """Recipients who asked for no more (non-urgent) messages: by recipient, or by a number that replied STOP.

    A number is kept only as a keyed hash (HMAC-SHA256 under CONTACT_HASH_KEY): the service never
    stores contact data, and the hash cannot be reversed without the key.
    """

    def __init__(self, database: AsyncDatabase[Document], hash_key: str) -> None:
        self.opt_outs = database[OPT_OUTS]
        self._key = hash_key.encode()

    @staticmethod
    def recipient_key(episode_id: str, recipient_kind: str, consent_id: str | None) -> str:
        return f"recipient:{episode_id}:{recipient_kind}:{consent_id or '-'}"

    def number_key(self, number: str) -> str:
        digits = "+" + "".join(ch for ch in number if ch.isdigit())
        return "sms:" + hmac.new(self._key, digits.encode(), hashlib.sha256).hexdigest()

    async def add(self, key: str, details: Document) -> tuple[Document, bool]:
        """Record the opt-out (True) or return the one on record (False)."""
        document = {"_id": key, **details, "opted_out_at": utc_now()}
        try:
            await self.opt_outs.insert_one(document)
        except DuplicateKeyError:
            existing = await self.opt_outs.find_one({"_id": key})
            if existing is not None:
                return existing, False
            raise
        return document, True

    async def remove(self, key: str) -> bool:
        return (await self.opt_outs.delete_one({"_id": key})).deleted_count == 1

    async def get(self, key: str) -> Document | None:
        return await self.opt_outs.find_one({"_id": key})

    async def find(self, query: Document, limit: int) -> list[Document]:
        cursor = self.opt_outs.find(query).sort("opted_out_at", DESCENDING).limit(limit)
        return [document async for document in cursor]
