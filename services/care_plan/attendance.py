"""Recording attendance: one path for the HTTP API and for reports from other systems (Kafka)."""

from __future__ import annotations

from datetime import datetime

from services.common.outbox import retry_on_conflict
from services.common.utc import utc_now
from stepwise_contract import new_event

from .domain.care_plan import AttendanceRecord, AttendanceStatus, CarePlanError, record_attendance
from .settings import SOURCE
from .store import CarePlanStore


async def record_session_attendance(
    store: CarePlanStore,
    episode_id: str,
    session_id: str,
    status: AttendanceStatus,
    notice_given_at: datetime | None = None,
    applied: str | None = None,
) -> AttendanceRecord:
    """Store the session's attendance and, for a miss, its event, in one write; raises CarePlanError.

    ``applied`` is the source#id of a reported event: a redelivery of it changes nothing.
    """

    async def attempt() -> AttendanceRecord | None:
        stored = await store.get(episode_id)
        if stored is None:
            raise CarePlanError("no_care_plan", "no care plan for this episode")
        if applied and applied in stored.applied_events:
            return stored.plan.attendance[session_id]
        attendance, missed = record_attendance(stored.plan, session_id, status, utc_now(), notice_given_at)
        if attendance is stored.plan.attendance:
            return attendance[session_id]  # the same status again: nothing to store
        event = new_event(missed, source=SOURCE) if missed else None
        saved = await store.record_attendance(stored, attendance, event, applied)
        return attendance[session_id] if saved else None

    return await retry_on_conflict(attempt)
