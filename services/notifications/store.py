"""notifications' MongoDB database: the delivery log (one document per logical notification), the current
session calendar of each episode, alumni enrolments and opt-outs."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from pymongo import ASCENDING, DESCENDING, ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.common.audit import AUDIT_LOG, audit_entry, audit_indexes
from services.common.auth import Principal
from services.common.bulk import BulkWrites, Insert
from services.common.change_path import CONFLICT, Conflict, retry
from services.common.indexes import Index
from services.common.mongo import Document, count, equals
from services.common.outbox import (
    EPOCH,
    Relay,
    insert_aggregate,
    inserted_new_aggregates,
    update_aggregate,
    update_with_events,
)
from services.common.phones import DEFAULT_REGION, matching_form
from services.common.tracing import current_traceparent
from services.common.utc import assume_utc, utc_now, wall_clock
from stepwise_contract import (
    AlumniEnrolled,
    AlumniLeft,
    Channel,
    EventData,
    NotificationFailed,
    NotificationSent,
    RecipientKind,
    SafetyAlertAcknowledged,
    SafetyAlertEscalated,
    new_event,
)

from .domain.alumni import Enrolment, EnrolmentStatus
from .domain.delivery import Notification, NotificationStatus
from .domain.messages import KnownSession, PlannedNotification
from .domain.opt_outs import OptOut
from .domain.safety import AlertStatus, SafetyAlert
from .settings import SOURCE

NOTIFICATIONS = "notifications"
SCHEDULES = "episode_schedules"
ALUMNI = "alumni_enrolments"
OPT_OUTS = "opt_outs"
SAFETY_ALERTS = "safety_alerts"
PENDING, SENT, FAILED, CANCELLED = "pending", "sent", "failed", "cancelled"
FOREVER = datetime(9999, 12, 31, tzinfo=UTC)
"""The expiry of a message that never expires (an explicit value: no null checks in queries)."""
_STORED_AS_PLANNED = tuple(
    field.name
    for field in fields(PlannedNotification)
    if field.name not in ("notification_id", "not_before", "expires_at")
)


EITHER_LANE = {"$in": [False, True]}
"""Both the routine and the urgent lane, named: the delivery log's indexes have the lane before the channel, and a
count that fixes it (both values) is served by them as one that leaves it out would not be."""
LANES = (True, False)
"""The urgent lane, then the routine one: a lane a query looks in (the stand-in nx-27017 matches no date kept by
``$set`` beside an ``$in``, so the waiting messages are looked for lane by lane, not with ``EITHER_LANE``)."""

INDEXES = (
    Index(NOTIFICATIONS, (("status", 1), ("urgent", 1), ("channel", 1), ("next_attempt_at", 1), ("lease_until", 1)),
          "the dispatcher's claim: the pending message of a lane and channel due longest, not leased; /metrics' "
          "counts per status and channel", replaces=("status_1_urgent_1_channel_1_next_attempt_at_1",)),
    Index(NOTIFICATIONS, (("status", 1), ("urgent", 1), ("channel", 1), ("last_error", 1), ("next_attempt_at", 1)),
          "the messages waiting out a channel's failures: sent at once when it works again, one probing it"),
    Index(NOTIFICATIONS, (("episode_id", 1), ("created_at", -1)), "an episode's delivery log, newest first; "
          "cancelling what waits of an episode (its reminders, its alumni or family messages)",
          scope="one episode's messages", replaces=("episode_id_1_series_kind_1",)),
    Index(NOTIFICATIONS, (("consent_id", 1), ("status", 1)), "cancelling what waits under a consent withdrawn"),
    Index(SAFETY_ALERTS, (("status", 1), ("due_at", 1), ("lease_until", 1)),
          "the escalation pass: the open alert due longest, not leased", replaces=("due_at_1_lease_until_1",)),
    Index(SAFETY_ALERTS, (("status", 1), ("raised_at", -1)), "alerts by status newest first; /metrics' open count"),
    Index(SAFETY_ALERTS, (("episode_id", 1), ("raised_at", -1)), "an episode's alerts, newest first"),
    Index(ALUMNI, (("patient_id", 1), ("status", 1)), "a patient's enrolments in the alumni program"),
    Index(OPT_OUTS, (("episode_id", 1), ("opted_out_at", -1)), "the opt-outs staff recorded for an episode",
          scope="one episode's opt-outs"),
    Index(OPT_OUTS, (("source", 1), ("opted_out_at", -1)), "the opt-outs staff recorded, newest first"),
    *audit_indexes(),
)  # fmt: skip


def _waiting_on(channel: Channel, urgent: bool) -> Document:
    """The messages of ``channel`` and a lane waiting for their next attempt after a failure."""
    return {"status": equals(PENDING), "urgent": equals(urgent), "channel": equals(channel),
            "last_error": {"$ne": ""}, "next_attempt_at": {"$gt": utc_now()}}  # fmt: skip


def _notification(document: Document) -> Notification:
    expires_at = assume_utc(document.get("expires_at", FOREVER))
    status: NotificationStatus = document["status"]
    return Notification(
        **{name: document[name] for name in _STORED_AS_PLANNED if name in document},
        notification_id=document["_id"],
        expires_at=None if expires_at == FOREVER else expires_at,
        status=status,
        attempts=document["attempts"],
        not_before=assume_utc(document["next_attempt_at"]),
        created_at=assume_utc(document["created_at"]),
        sent_at=assume_utc(document["sent_at"]) if status == SENT else None,
        last_error=document["last_error"] or None,
        cause_event_type=document["cause"]["event_type"],
        due_at=assume_utc(document.get("due_at", document["created_at"])),
        traceparent=document["cause"].get("traceparent"),
    )


@dataclass(frozen=True)
class Added:
    """What ``NotificationStore.add_leasing`` stored."""

    count: int
    """How many notifications were new (a redelivered event adds none)."""
    leased: list[Notification]
    """The new ones due now, stored leased to this instance: it sends them now, without claiming them."""
    urgent_waiting: frozenset[bool]
    """Whether urgent and routine ones due now were stored for a pass to send (not leased here)."""


COUNTED = (PENDING, FAILED)
"""The statuses /metrics counts in the store: the work waiting, and what will never be delivered."""


class NotificationStore:
    """The delivery log: one document per logical notification, with the outbox of its outcome events."""

    def __init__(self, database: AsyncDatabase[Document], wake_relay: Relay) -> None:
        self.notifications = database[NOTIFICATIONS]
        self._wake_relay = wake_relay

    async def add(self, planned: Sequence[PlannedNotification], cause: dict[str, str]) -> int:
        """Store notifications to send, in one round trip; returns how many are new (a redelivered event adds none)."""
        return (await self.add_leasing(planned, cause, None)).count

    async def add_leasing(
        self, planned: Sequence[PlannedNotification], cause: dict[str, str], lease: timedelta | None
    ) -> Added:
        """Store notifications to send, in one round trip; with a ``lease``, those due now are stored claimed by this
        instance (leased, their first attempt counted, as ``claim_due`` would), for it to send at once: the lease and
        the record of the message are one write. A redelivered event adds none and leases none."""
        now, wall = utc_now(), wall_clock()
        traceparent = current_traceparent()  # the event's trace, continued when each is sent
        cause = cause | ({"traceparent": traceparent} if traceparent else {})
        documents = [self._document(p, cause, now) for p in planned]
        if lease is not None:
            for document in documents:
                if document["next_attempt_at"] <= now:
                    document |= {"lease_until": wall + lease, "attempts": 1}
        added = await inserted_new_aggregates(self.notifications, documents)
        leased = [_notification(document) for document in added if document["attempts"]]
        # Only what is due now wakes a lane: what is due later (a reminder) a pass finds when it is, and a pass woken
        # for it now would find nothing (an empty claim per channel on every new episode).
        waiting = frozenset(bool(document["urgent"]) for document in added
                            if not document["attempts"] and document["next_attempt_at"] <= now)  # fmt: skip
        return Added(len(added), leased, waiting)

    async def counts(self) -> dict[tuple[str, str], int]:
        """(status, channel) -> how many notifications wait or failed for good (for /metrics): a count per pair, on
        the index that starts with the status (a $group on a compound key is what the MongoDB stand-in gets wrong).
        Sent and cancelled ones are not counted: the delivery log keeps them for ever, so a count of them grows with
        the clinic on every scrape; sends are counted as they happen (``stepwise_notification_send_seconds``)."""
        pairs = [(status, channel) for status in COUNTED for channel in get_args(Channel)]
        counted = await asyncio.gather(
            *(
                count(self.notifications, {"status": equals(status), "urgent": EITHER_LANE, "channel": equals(channel)})
                for status, channel in pairs
            )
        )
        return dict(zip(pairs, counted, strict=True))

    @staticmethod
    def _document(planned: PlannedNotification, cause: dict[str, str], now: datetime) -> Document:
        # Plain values, and the context copied at its top (``dataclasses.asdict`` would copy all of it, deeply: a
        # twentieth of notifications' CPU, an episode planning dozens of reminders). Nothing changes it once planned.
        fields = {**vars(planned), "context": dict(planned.context)}
        not_before = fields.pop("not_before") or now
        return {
            "_id": fields.pop("notification_id"),
            **fields,
            "expires_at": fields["expires_at"] or FOREVER,
            "cause": cause,
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": not_before,
            "due_at": not_before,
            "lease_until": EPOCH,
            "created_at": now,
            "sent_at": EPOCH,
            "last_error": "",
        }

    async def claim_due(self, lease: timedelta, *, channel: Channel, urgent: bool) -> Notification | None:
        """Take the notification of ``channel`` and of the urgent or routine lane that has been due longest, for
        sending; the lease keeps other instances off it."""
        now, wall = utc_now(), wall_clock()
        # The whole document: FerretDB cannot project a findAndModify (docs/development.md, "Backends").
        document = await self.notifications.find_one_and_update(
            {
                "status": equals(PENDING),
                "urgent": equals(urgent),
                "channel": equals(channel),
                "next_attempt_at": {"$lte": now},
                "lease_until": {"$lt": wall},
            },
            {"$set": {"lease_until": wall + lease}, "$inc": {"attempts": 1}},
            sort=[("next_attempt_at", ASCENDING)],
            return_document=ReturnDocument.AFTER,
        )
        return None if document is None else _notification(document)

    async def mark_sent(self, notification: Notification, event: NotificationSent) -> None:
        """Record the send and queue iop.notification.sent in one write."""
        update = {"$set": {"status": SENT, "sent_at": event.sent_at, "lease_until": EPOCH, "last_error": ""}}
        await self._finish(notification, update, event)

    async def retry_later(self, notification_id: str, delay: timedelta, error: str) -> None:
        await self.notifications.update_one(
            {"_id": notification_id},
            {"$set": {"next_attempt_at": utc_now() + delay, "lease_until": EPOCH, "last_error": error}},
        )

    async def mark_failed(self, notification: Notification, error: str, event: NotificationFailed) -> None:
        """Record the failure (the reason stays here) and queue iop.notification.failed in one write."""
        update = {"$set": {"status": FAILED, "lease_until": EPOCH, "last_error": error}}
        await self._finish(notification, update, event)

    async def _finish(self, notification: Notification, update: Document, event: EventData) -> None:
        # Guarded by the status, not the version: a send that happened must be recorded whatever else changed.
        await update_with_events(self.notifications, {"_id": notification.notification_id, "status": PENDING}, update,
                                 [new_event(event, source=SOURCE)], self._wake_relay)  # fmt: skip

    async def defer(self, notification_id: str, until: datetime, reason: str | None = None) -> None:
        """Wait (quiet hours, a dependency down): not a failed attempt, so the claim's attempt is given back."""
        changes: Document = {"next_attempt_at": until, "lease_until": EPOCH} | (
            {"last_error": reason} if reason else {}
        )
        await self.notifications.update_one(
            {"_id": notification_id, "status": PENDING}, {"$set": changes, "$inc": {"attempts": -1}}
        )

    async def extend_lease(self, notification_id: str, lease: timedelta) -> None:
        """Keep holding a message this instance is still busy with (recording a send the store refused)."""
        await self.notifications.update_one(
            {"_id": notification_id, "status": PENDING}, {"$set": {"lease_until": wall_clock() + lease}}
        )

    async def retry_now(self, channel: Channel) -> int:
        """A channel works again: the messages waiting out its failures go now, not at their next backoff."""
        modified = 0
        for urgent in LANES:
            result = await self.notifications.update_many(
                _waiting_on(channel, urgent), {"$set": {"next_attempt_at": utc_now()}}
            )
            modified += result.modified_count
        return modified

    async def probe(self, channel: Channel) -> bool:
        """While a channel is down, one of the messages waiting on it (an urgent one if any) goes now: the first
        to find it back."""
        for urgent in LANES:
            found = await self.notifications.find_one_and_update(  # no projection: as in ``claim_due``
                _waiting_on(channel, urgent), {"$set": {"next_attempt_at": utc_now()}}
            )
            if found is not None:
                return True
        return False

    async def mark_cancelled(self, notification_id: str, reason: str) -> None:
        """Not to be sent after all (consent withdrawn, opt-out, too late): no delivery outcome is published."""
        await self.notifications.update_one(
            {"_id": notification_id, "status": PENDING},
            {"$set": {"status": CANCELLED, "lease_until": EPOCH, "last_error": reason}},
        )

    # What waits is cancelled when it is no longer wanted (each is checked again at send time anyway), found by the
    # episode's or the consent's equality (``equals``: on the episode's or the consent's index, never the whole log).

    async def cancel_session_reminders(self, episode_id: str, reason: str, *, keep_series: str | None = None) -> int:
        """The reminders of the episode's sessions, but for those of ``keep_series`` (the current calendar)."""
        query: Document = {"episode_id": equals(episode_id), "series_kind": "sessions"}
        return await self._cancel(query | ({"series": {"$ne": keep_series}} if keep_series else {}), reason)

    async def cancel_alumni_messages(self, episode_id: str, reason: str) -> int:
        return await self._cancel({"episode_id": equals(episode_id), "series_kind": "alumni"}, reason)

    async def cancel_for_consent(self, consent_id: str, reason: str) -> int:
        return await self._cancel({"consent_id": equals(consent_id)}, reason)

    async def cancel_for_recipient(
        self, episode_id: str, recipient_kind: RecipientKind, consent_id: str | None, reason: str
    ) -> int:
        query: Document = {"episode_id": equals(episode_id), "recipient_kind": recipient_kind}
        return await self._cancel(query | ({"consent_id": consent_id} if consent_id else {}), reason)

    async def cancel(self, notification_ids: Sequence[str], reason: str) -> int:
        """Those of ``notification_ids`` still waiting (an acknowledged alert's pages to the on-call route)."""
        return await self._cancel({"_id": {"$in": list(notification_ids)}}, reason)

    async def _cancel(self, query: Document, reason: str) -> int:
        result = await self.notifications.update_many(
            {**query, "status": PENDING}, {"$set": {"status": CANCELLED, "last_error": reason}}
        )
        return result.modified_count

    async def find(
        self,
        *,
        episode_id: str | None = None,
        recipient_kind: str | None = None,
        purpose: str | None = None,
        status: NotificationStatus | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[Notification]:
        """The delivery log, newest first, filtered by what is given."""
        filters = {"episode_id": episode_id, "recipient_kind": recipient_kind, "purpose": purpose, "status": status}
        query: Document = {key: value for key, value in filters.items() if value}
        window = {op: moment for op, moment in {"$gte": since, "$lt": until}.items() if moment}
        if window:
            query["created_at"] = window
        cursor = self.notifications.find(query, {"outbox": 0}).sort("created_at", DESCENDING).limit(limit)
        return [_notification(document) async for document in cursor]


@dataclass(frozen=True)
class Adopted:
    """A calendar made the episode's current one."""

    first: bool
    """The episode's first calendar here: there are no reminders of another to replace. Made by this adoption's insert
    (the episode had no calendar record), it also says that no recipient of the episode had opted out then: recording
    an opt-out makes the episode's calendar record first (``EpisodeSchedules.before_opt_out``)."""
    replaced: list[KnownSession]
    """The sessions ahead in the calendar it replaced (none for the first; a calendar stored before notifications
    kept its sessions counts as none)."""


@dataclass(frozen=True)
class StoredAlert:
    alert: SafetyAlert
    version: int


class SafetyAlerts:
    """One document per safety alert: its deadline and acknowledgement, the outbox of its events, and ``due_at``,
    when the escalation timer next has work on it (claimed under a lease, so it fires once among instances and
    survives restarts; ``FOREVER`` once its pages are stored or it was acknowledged)."""

    def __init__(self, database: AsyncDatabase[Document], wake_relay: Relay) -> None:
        self.alerts = database[SAFETY_ALERTS]
        self._wake_relay = wake_relay

    async def open_count(self) -> int:
        """Alerts raised and not acknowledged yet (for /metrics)."""
        return await count(self.alerts, {"status": equals("open")})

    async def add(self, alert: SafetyAlert, cause: dict[str, str]) -> bool:
        """Keep a new alert, due at its deadline; False if it is kept already (a redelivered event)."""
        fields = _alert_fields(alert) | {"due_at": alert.acknowledge_by, "lease_until": EPOCH, "cause": cause,
                                         "received_at": utc_now()}  # fmt: skip
        return await insert_aggregate(self.alerts, fields)

    async def get_stored(self, alert_id: str) -> StoredAlert | None:
        document = await self.alerts.find_one({"_id": alert_id}, {"outbox": 0})
        return None if document is None else StoredAlert(_alert(document), document["version"])

    async def save(
        self, stored: StoredAlert, alert: SafetyAlert, event: SafetyAlertAcknowledged | SafetyAlertEscalated
    ) -> bool:
        """Store the changed alert with its event in one write; False if it changed meanwhile. An acknowledged
        alert is never due again."""
        changes = _alert_fields(alert) | ({"due_at": FOREVER} if alert.status == "acknowledged" else {})
        return await update_aggregate(self.alerts, alert.alert_id, stored.version, changes,
                                      [new_event(event, source=SOURCE)], relay=self._wake_relay)  # fmt: skip

    async def claim_due(self, lease: timedelta) -> str | None:
        """The id of an alert whose timer is due, leased to this instance; None when none is. Only an open alert is
        ever due (acknowledging one ends its timer in the same write): the open ones are all this looks at."""
        document = await self.alerts.find_one_and_update(
            {"status": equals("open"), "due_at": {"$lte": utc_now()}, "lease_until": {"$lt": wall_clock()}},
            {"$set": {"lease_until": wall_clock() + lease}},
            {"_id": 1},
            sort=[("due_at", ASCENDING)],
        )
        return None if document is None else str(document["_id"])

    async def settle(self, alert_id: str) -> None:
        """Nothing is left for the alert's timer (its pages are stored, or it needs none): never due again."""
        await self.alerts.update_one({"_id": alert_id}, {"$set": {"due_at": FOREVER, "lease_until": EPOCH}})

    async def find(
        self, *, status: AlertStatus | None = None, episode_id: str | None = None, limit: int = 100
    ) -> list[SafetyAlert]:
        """Alerts, newest first."""
        query: Document = {key: value for key, value in {"status": status, "episode_id": episode_id}.items() if value}
        cursor = self.alerts.find(query, {"outbox": 0}).sort("raised_at", DESCENDING).limit(limit)
        return [_alert(document) async for document in cursor]


def _alert_fields(alert: SafetyAlert) -> Document:
    fields = asdict(alert)
    # Explicit values instead of nulls, as this store's documents are written.
    return {"_id": fields.pop("alert_id"), **fields, "escalated_at": alert.escalated_at or EPOCH,
            "acknowledged_at": alert.acknowledged_at or EPOCH, "acknowledged_by": alert.acknowledged_by or "",
            "acknowledged_as": alert.acknowledged_as or ""}  # fmt: skip


def _alert(document: Document) -> SafetyAlert:
    escalated_at, acknowledged_at = assume_utc(document["escalated_at"]), assume_utc(document["acknowledged_at"])
    return SafetyAlert(
        alert_id=document["_id"],
        episode_id=document["episode_id"],
        assessment_id=document["assessment_id"],
        level=document["level"],
        reasons=list(document["reasons"]),
        raised_at=assume_utc(document["raised_at"]),
        acknowledge_by=assume_utc(document["acknowledge_by"]),
        status=document["status"],
        escalated_at=None if escalated_at == EPOCH else escalated_at,
        acknowledged_at=None if acknowledged_at == EPOCH else acknowledged_at,
        acknowledged_by=document["acknowledged_by"] or None,
        acknowledged_as=document["acknowledged_as"] or None,
    )


class AuditLog:
    """Who did or read what of clinical records here (safety alerts), and when."""

    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self.entries = database[AUDIT_LOG]

    async def record(self, by: Principal, action: str, **details: Any) -> None:
        await self.entries.insert_one(audit_entry(by, action, **details))


NO_CALENDAR: Document = {"series": "", "made": 0, "ended": False, "sessions": [], "replaced": []}
"""The calendar record of an episode with no calendar yet (made for an opt-out): every calendar is later than it."""
UPSERTS_AT_ONCE = 1000


class EpisodeSchedules:
    """Which session calendar of each episode is current, so reminders of a replaced one are never sent, and its
    sessions ahead, so the next calendar can say which sessions it booked or cancelled."""

    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self.schedules = database[SCHEDULES]
        self._new = BulkWrites()

    async def before_opt_out(self, *episode_ids: str) -> None:
        """An opt-out of a recipient of these episodes is about to be recorded: each has a calendar record from now on
        (with no calendar, where it had none), so that no first calendar adopted later is taken for one of an episode
        nobody opted out of (``Adopted.first``). In bulk: also what the start-up does for the opt-outs on record."""
        upserts = [UpdateOne({"_id": episode_id}, {"$setOnInsert": NO_CALENDAR}, upsert=True)
                   for episode_id in dict.fromkeys(episode_ids)]  # fmt: skip
        for start in range(0, len(upserts), UPSERTS_AT_ONCE):
            await self.schedules.bulk_write(upserts[start : start + UPSERTS_AT_ONCE], ordered=False)

    async def adopt(
        self, episode_id: str, series: str, as_of: datetime, sessions: list[KnownSession], *, likely_first: bool = False
    ) -> Adopted | None:
        """Make ``series`` (``sessions``: its sessions ahead) current unless a later calendar is, or the episode
        ended (None). The same calendar again (a redelivery) is compared with what it replaced, as the first time.
        ``likely_first`` (a new episode's calendar): stored at once, looked up only if the episode has one already."""
        made = int(as_of.timestamp() * 1_000_000)  # an integer orders the same on every store
        document = {"_id": episode_id, "series": series, "made": made, "ended": False, "sessions": sessions,
                    "replaced": []}  # fmt: skip
        insert_first = likely_first

        async def attempt() -> Adopted | Conflict | None:
            nonlocal insert_first
            if insert_first:
                insert_first = False
                with contextlib.suppress(DuplicateKeyError):  # it has one: look at it
                    await self._new.write(self.schedules, Insert(document))  # with the batch's other new episodes'
                    return Adopted(first=True, replaced=[])
            found = await self.schedules.find_one({"_id": episode_id})
            if found is None:
                try:
                    await self.schedules.insert_one(document)
                except DuplicateKeyError:
                    return CONFLICT  # another calendar of the episode came first: look again
                return Adopted(first=True, replaced=[])
            if found["ended"] or found["made"] > made:
                return None  # a later calendar is current, or the episode ended
            if (found["made"], found["series"]) == (made, series):
                return Adopted(first=False, replaced=found.get("replaced", []))
            replaced = found.get("sessions", [])
            current = {"_id": episode_id, "made": found["made"], "series": found["series"], "ended": False}
            changes = {"series": series, "made": made, "sessions": sessions, "replaced": replaced}
            result = await self.schedules.update_one(current, {"$set": changes})
            return Adopted(first=False, replaced=replaced) if result.matched_count == 1 else CONFLICT

        return await retry(attempt)

    async def end(self, episode_id: str) -> None:
        await self.schedules.update_one(
            {"_id": episode_id}, {"$set": {"ended": True, "series": "", "made": 0}}, upsert=True
        )

    async def is_current(self, episode_id: str, series: str) -> bool:
        found = await self.schedules.find_one({"_id": episode_id})
        return found is not None and not found["ended"] and found["series"] == series


@dataclass(frozen=True)
class StoredEnrolment:
    enrolment: Enrolment
    version: int


class AlumniEnrolments:
    """One document per graduated episode whose graduate joined the alumni group, with its outbox."""

    def __init__(self, database: AsyncDatabase[Document], wake_relay: Relay) -> None:
        self.enrolments = database[ALUMNI]
        self._wake_relay = wake_relay

    async def add(self, enrolment: Enrolment, event: AlumniEnrolled) -> bool:
        """Store a new enrolment with iop.alumni.enrolled in one write; False if the episode has one already."""
        return await insert_aggregate(self.enrolments, _enrolment_fields(enrolment), [new_event(event, source=SOURCE)],
                                      relay=self._wake_relay)  # fmt: skip

    async def get(self, episode_id: str) -> Enrolment | None:
        document = await self.enrolments.find_one({"_id": episode_id}, {"outbox": 0})
        return None if document is None else _enrolment(document)

    async def enrolled(self, *, patient_id: str) -> list[Enrolment]:
        cursor = self.enrolments.find({"patient_id": equals(patient_id), "status": equals("enrolled")}, {"outbox": 0})
        return [_enrolment(document) async for document in cursor]

    async def find(self, *, status: EnrolmentStatus | None = None, limit: int = 100) -> list[Enrolment]:
        query = {"status": status} if status else {}
        cursor = self.enrolments.find(query, {"outbox": 0}).sort("enrolled_at", DESCENDING).limit(limit)
        return [_enrolment(document) async for document in cursor]

    async def get_stored(self, episode_id: str) -> StoredEnrolment | None:
        document = await self.enrolments.find_one({"_id": episode_id}, {"outbox": 0})
        return None if document is None else StoredEnrolment(_enrolment(document), document["version"])

    async def save(self, stored: StoredEnrolment, enrolment: Enrolment, event: AlumniLeft) -> bool:
        """Store the changed enrolment with its event in one write; False if it changed meanwhile."""
        events = [new_event(event, source=SOURCE)]
        return await update_aggregate(self.enrolments, enrolment.episode_id, stored.version,
                                      _enrolment_fields(enrolment), events, relay=self._wake_relay)  # fmt: skip


def _enrolment_fields(enrolment: Enrolment) -> Document:
    fields = asdict(enrolment)
    # Explicit values instead of nulls, as the enrolment documents have always been written.
    return {"_id": fields.pop("episode_id"), **fields, "left_at": enrolment.left_at or EPOCH,
            "left_reason": enrolment.left_reason or ""}  # fmt: skip


def _enrolment(document: Document) -> Enrolment:
    left = document["status"] == "left"
    return Enrolment(
        episode_id=document["_id"],
        patient_id=document["patient_id"],
        consent_id=document["consent_id"],
        status=document["status"],
        graduated_at=assume_utc(document["graduated_at"]),
        enrolled_at=assume_utc(document["enrolled_at"]),
        left_at=assume_utc(document["left_at"]) if left else None,
        left_reason=document["left_reason"] if left else None,
    )


class OptOuts:
    """Recipients who asked for no more (non-urgent) messages: by recipient, or by a number that replied STOP.

    A number is kept only as a keyed hash (HMAC-SHA256 under CONTACT_HASH_KEY): the service never
    stores contact data, and the hash cannot be reversed without the key. It is hashed in E.164, national
    numbers read in the clinic's region (CLINIC_PHONE_REGION), so every way of writing a number matches.
    """

    def __init__(self, database: AsyncDatabase[Document], hash_key: str, region: str = DEFAULT_REGION) -> None:
        self.opt_outs = database[OPT_OUTS]
        self._key = hash_key.encode()
        self._region = region

    def number_key(self, number: str) -> str:
        written = matching_form(number, self._region)
        return "sms:" + hmac.new(self._key, written.encode(), hashlib.sha256).hexdigest()

    async def add(self, opt_out: OptOut) -> tuple[OptOut, bool]:
        """Record the opt-out (True) or return the one on record (False)."""
        fields = asdict(opt_out)
        try:
            await self.opt_outs.insert_one({"_id": fields.pop("opt_out_id"), **fields})
        except DuplicateKeyError:
            existing = await self.opt_outs.find_one({"_id": opt_out.opt_out_id})
            if existing is not None:
                return _opt_out(existing), False
            raise
        return opt_out, True

    async def remove(self, key: str) -> bool:
        return (await self.opt_outs.delete_one({"_id": key})).deleted_count == 1

    async def has(self, key: str) -> bool:
        return await self.opt_outs.find_one({"_id": key}, {"_id": 1}) is not None

    async def episodes_opted_out_of(self) -> list[str]:
        """The episodes with a recipient's opt-out on record (at start-up: those a previous version recorded)."""
        cursor = self.opt_outs.find({"source": "api"}, {"episode_id": 1})
        return [str(document["episode_id"]) async for document in cursor if document.get("episode_id")]

    async def recorded_by_staff(self, *, episode_id: str | None = None, limit: int = 100) -> list[OptOut]:
        query: Document = {"source": "api"} | ({"episode_id": episode_id} if episode_id else {})
        cursor = self.opt_outs.find(query).sort("opted_out_at", DESCENDING).limit(limit)
        return [_opt_out(document) async for document in cursor]


def _opt_out(document: Document) -> OptOut:
    return OptOut(
        opt_out_id=document["_id"],
        source=document["source"],
        opted_out_at=assume_utc(document["opted_out_at"]),
        episode_id=document.get("episode_id"),
        recipient_kind=document.get("recipient_kind"),
        consent_id=document.get("consent_id"),
    )
