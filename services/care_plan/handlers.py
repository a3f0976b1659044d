"""Events and commands care_plan consumes: what happens on each is one function, listed in ``EVENT_HANDLERS``.

Each goes through ``changes.change_plan`` (or creates the plan), with the event's source + id as its
dedup key, so a redelivery changes nothing."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from services.common.consumer import EventHandlers, EventRejected, Subscription
from services.common.utc import utc_now
from stepwise_contract import (
    AssessmentCompleted,
    AttendanceReported,
    CloudEvent,
    DrugScreenRecorded,
    SafetyAlertRaised,
    new_event,
)

from .changes import adopt_pending, learn, record_session_attendance
from .domain.care_plan import assign_care_level
from .domain.model import CareInput, CarePlanError
from .domain.policy import CarePolicy
from .domain.review import next_check
from .settings import SOURCE
from .store import CarePlanStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Planning:
    """What the handlers work with: one per service instance (in the broker's context, ``HANDLER_CONTEXT``)."""

    store: CarePlanStore
    policy: CarePolicy
    clinic_timezone: str


async def on_assessment_completed(event: CloudEvent[AssessmentCompleted], planning: Planning) -> None:
    data, store, policy = event.data, planning.store, planning.policy
    if data.kind == "intake" and await store.get(event.subject) is None:
        plan, assigned = assign_care_level(data, policy, planning.clinic_timezone, utc_now())
        created = await store.create(
            plan, new_event(assigned, source=SOURCE), event.dedup_key, next_check(plan, policy, utc_now())
        )
        if created:
            log.info("episode %s: care level %s (%s)", plan.episode_id, plan.level.value, plan.status)
            await adopt_pending(store, policy, event.subject)
            return
    # A reassessment (or a repeated intake assessment) feeds the review of the existing plan.
    learned = CareInput(kind="assessment", at=data.assessed_at, source_id=data.assessment_id,
                        instruments=data.instruments, changes=data.changes)  # fmt: skip
    await learn(store, policy, event.subject, learned, event.dedup_key)
    await adopt_pending(store, policy, event.subject)  # left by a crash between creating the plan and adopting


async def on_safety_alert_raised(event: CloudEvent[SafetyAlertRaised], planning: Planning) -> None:
    data = event.data
    learned = CareInput(kind="safety_alert", at=data.raised_at, source_id=data.alert_id, alert_level=data.level)
    await learn(planning.store, planning.policy, event.subject, learned, event.dedup_key)


async def on_drug_screen_recorded(event: CloudEvent[DrugScreenRecorded], planning: Planning) -> None:
    data = event.data
    learned = CareInput(kind="drug_screen", at=data.collected_at, source_id=data.screen_id,
                        unexpected_positive=data.unexpected_positive)  # fmt: skip
    await learn(planning.store, planning.policy, event.subject, learned, event.dedup_key)


async def on_attendance_reported(event: CloudEvent[AttendanceReported], planning: Planning) -> None:
    data = event.data
    try:
        await record_session_attendance(
            planning.store,
            planning.policy,
            event.subject,
            data.session_id,
            data.status,
            data.notice_given_at,
            event.dedup_key,
        )
    except CarePlanError as error:
        raise EventRejected(f"{error.code}: {error}") from None


EVENT_HANDLERS: EventHandlers = {
    AssessmentCompleted: Subscription(on_assessment_completed, "An intake assessment starts the care plan; a "
                                      "reassessment feeds step-up / step-down review."),
    SafetyAlertRaised: Subscription(on_safety_alert_raised, "A safety alert feeds step-up review."),
    DrugScreenRecorded: Subscription(on_drug_screen_recorded, "A drug screen feeds step-up / step-down review."),
    AttendanceReported: Subscription(on_attendance_reported, "Another system reports a session's attendance."),
}  # fmt: skip
