"""notifications' store on a real server: the delivery log's claims, leases and outcomes; calendars, alumni,
opt-outs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.common.indexes import create_indexes
from services.common.outbox import no_relay
from services.common.utc import utc_now
from services.notifications.domain.alumni import enrol, leave
from services.notifications.domain.delivery import sent
from services.notifications.domain.messages import PlannedNotification
from services.notifications.domain.opt_outs import staff_opt_out
from services.notifications.store import (
    INDEXES,
    NOTIFICATIONS,
    AlumniEnrolments,
    EpisodeSchedules,
    NotificationStore,
    OptOuts,
)
from tests.store.conftest import Document

pytestmark = pytest.mark.second_server

LEASE = timedelta(seconds=30)
CAUSE = {"event_type": "iop.care_level.assigned", "event_id": "e-1"}


def planned(notification_id: str, *, not_before_minutes: int = -1, urgent: bool = False) -> PlannedNotification:
    return PlannedNotification(notification_id=notification_id, episode_id="ep-1", purpose="welcome",
                               recipient_kind="patient", channel="email", urgent=urgent, consent_id="c-1",
                               not_before=utc_now() + timedelta(minutes=not_before_minutes))  # fmt: skip


async def store_with(database: AsyncDatabase[Document], *messages: PlannedNotification) -> NotificationStore:
    store = NotificationStore(database, no_relay)
    await create_indexes(database, INDEXES)
    assert await store.add(messages, CAUSE) == len(messages)
    return store


async def test_the_message_due_longest_is_claimed_once_with_its_attempt_counted(
    database: AsyncDatabase[Document],
) -> None:
    # The claim is a findAndModify: FerretDB answered NotImplemented while it carried a projection.
    store = await store_with(database, planned("later", not_before_minutes=-1), planned("first", not_before_minutes=-5),
                             planned("not-yet", not_before_minutes=60))  # fmt: skip
    claimed = await store.claim_due(LEASE, channel="email", urgent=False)
    assert claimed is not None
    assert (claimed.notification_id, claimed.attempts, claimed.status) == ("first", 1, "pending")
    again = await store.claim_due(LEASE, channel="email", urgent=False)
    assert again is not None and again.notification_id == "later"
    assert await store.claim_due(LEASE, channel="email", urgent=False) is None  # leased, or not due
    assert await store.claim_due(LEASE, channel="email", urgent=True) is None  # another lane


async def test_a_deferred_message_gives_its_attempt_back_and_waits(database: AsyncDatabase[Document]) -> None:
    store = await store_with(database, planned("n-1"))
    claimed = await store.claim_due(LEASE, channel="email", urgent=False)
    assert claimed is not None
    await store.defer("n-1", utc_now() - timedelta(seconds=1), "quiet hours")
    again = await store.claim_due(LEASE, channel="email", urgent=False)
    assert again is not None
    assert again.attempts == 1  # $set and $inc in one update, on different paths
    await store.defer("n-1", utc_now() + timedelta(hours=1))
    assert await store.claim_due(LEASE, channel="email", urgent=False) is None


async def test_a_send_is_recorded_with_its_event_and_listed_without_the_outbox(
    database: AsyncDatabase[Document],
) -> None:
    store = await store_with(database, planned("n-1"))
    claimed = await store.claim_due(LEASE, channel="email", urgent=False)
    assert claimed is not None
    at = utc_now()
    await store.mark_sent(claimed, sent(claimed, at))
    stored = await database[NOTIFICATIONS].find_one({"_id": "n-1"})
    assert stored is not None
    assert (stored["status"], stored["outbox_pending"], len(stored["outbox"])) == ("sent", 1, 1)
    [listed] = await store.find(episode_id="ep-1")
    assert (listed.status, listed.sent_at, listed.attempts) == ("sent", at, 1)
    assert await store.claim_due(LEASE, channel="email", urgent=False) is None


async def test_a_probe_releases_one_message_waiting_on_a_channel_then_all_of_them(
    database: AsyncDatabase[Document],
) -> None:
    # The probe is a findAndModify too, and carried a projection FerretDB does not implement.
    store = await store_with(database, planned("routine"), planned("urgent", urgent=True))
    for urgent in (False, True):
        claimed = await store.claim_due(LEASE, channel="email", urgent=urgent)
        assert claimed is not None
        await store.retry_later(claimed.notification_id, timedelta(hours=1), "relay unreachable")
    assert await store.probe("email")
    assert await store.claim_due(LEASE, channel="email", urgent=True) is not None  # the urgent one first
    assert await store.claim_due(LEASE, channel="email", urgent=False) is None
    assert await store.retry_now("email") == 1
    assert await store.claim_due(LEASE, channel="email", urgent=False) is not None
    assert not await store.probe("sms")


async def test_cancelling_by_consent_touches_pending_messages_only(database: AsyncDatabase[Document]) -> None:
    store = await store_with(database, planned("n-1"), planned("n-2"))
    claimed = await store.claim_due(LEASE, channel="email", urgent=False)
    assert claimed is not None
    await store.mark_sent(claimed, sent(claimed, utc_now()))
    assert await store.cancel_for_consent("c-1", "consent withdrawn") == 1
    [other] = {"n-1", "n-2"} - {claimed.notification_id}
    statuses = {notification.notification_id: notification.status for notification in await store.find()}
    assert statuses == {claimed.notification_id: "sent", other: "cancelled"}


async def test_a_later_calendar_replaces_an_earlier_one_and_an_ended_episode_keeps_none(
    database: AsyncDatabase[Document],
) -> None:
    schedules = EpisodeSchedules(database)
    now = utc_now()
    session = {"session_id": "s-1", "starts_at": now.isoformat(), "kind": "group"}
    first = await schedules.adopt("ep-1", "calendar-1", now, [session])
    assert first is not None and first.first
    second = await schedules.adopt("ep-1", "calendar-2", now + timedelta(minutes=1), [])
    assert second is not None and second.replaced == [session]
    assert await schedules.adopt("ep-1", "calendar-0", now - timedelta(minutes=1), []) is None
    assert await schedules.is_current("ep-1", "calendar-2")
    await schedules.end("ep-1")
    assert not await schedules.is_current("ep-1", "calendar-2")
    assert await schedules.adopt("ep-1", "calendar-3", now + timedelta(minutes=2), []) is None


async def test_an_enrolment_is_stored_once_and_left_with_its_event(database: AsyncDatabase[Document]) -> None:
    alumni = AlumniEnrolments(database, no_relay)
    await create_indexes(database, INDEXES)
    now = utc_now()
    enrolment, enrolled = enrol("ep-1", "pt-1", "c-1", now - timedelta(days=1), [30, 90], now)
    assert await alumni.add(enrolment, enrolled)
    assert not await alumni.add(enrolment, enrolled)
    stored = await alumni.get_stored("ep-1")
    assert stored is not None and stored.enrolment == enrolment
    assert [found.episode_id for found in await alumni.enrolled(patient_id="pt-1")] == ["ep-1"]
    ended = leave(enrolment, "opted_out", now)
    assert ended is not None
    assert await alumni.save(stored, *ended)
    assert not await alumni.save(stored, *ended)  # the version moved on
    assert await alumni.get("ep-1") == ended[0]
    assert await alumni.enrolled(patient_id="pt-1") == []


async def test_an_opt_out_is_recorded_once_and_can_be_removed(database: AsyncDatabase[Document]) -> None:
    opt_outs = OptOuts(database, "test-hash-key")
    opt_out = staff_opt_out("ep-1", "patient", None, utc_now())
    assert await opt_outs.add(opt_out) == (opt_out, True)
    assert await opt_outs.add(opt_out) == (opt_out, False)
    assert await opt_outs.has(opt_out.opt_out_id)
    assert await opt_outs.recorded_by_staff(episode_id="ep-1") == [opt_out]
    assert await opt_outs.remove(opt_out.opt_out_id)
    assert not await opt_outs.has(opt_out.opt_out_id)
