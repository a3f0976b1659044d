"""Events and commands care_plan consumes: what happens on each is one function, listed in ``EVENT_HANDLERS``.

Each goes through ``changes.change_plan`` (or creates the plan), with the event's source + id as its
dedup key, so a redelivery changes nothing."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from services.common.consumer import EventHandlers, EventRejected, Subscription
from stepwise_contract import (
    AssessmentCompleted,
    AttendanceReported,
    CloudEvent,
    DrugScreenRecorded,
    MeasureRecorded,
    SafetyAlertRaised,
)

from .changes import learn, record_session_attendance, record_sheet, start_plan
from .domain.model import CareInput, CarePlanError
from .domain.policy import CarePolicy
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
    if data.kind == "intake":  # None from start_plan: the episode has a plan already (its write found it)
        plan = await start_plan(store, policy, data, event.dedup_key, planning.clinic_timezone)
        if plan is not None:  # it took the inputs that came before it, in the same write
            where = plan.group.group_id if plan.group else "waitlist" if plan.waitlist else "-"
            log.info("episode %s: care level %s (%s, %s)", plan.episode_id, plan.level.value, plan.status, where)
            return
    # A reassessment (or a repeated intake assessment) feeds the review of the existing plan.
    learned = CareInput(kind="assessment", at=data.assessed_at, source_id=data.assessment_id,
                        instruments=data.instruments, changes=data.changes,
                        recommended_level=data.level)  # fmt: skip
    await learn(store, policy, event.subject, learned, event.dedup_key)


async def on_safety_alert_raised(event: CloudEvent[SafetyAlertRaised], planning: Planning) -> None:
    data = event.data
    learned = CareInput(kind="safety_alert", at=data.raised_at, source_id=data.alert_id, alert_level=data.level)
    await learn(planning.store, planning.policy, event.subject, learned, event.dedup_key)


async def on_drug_screen_recorded(event: CloudEvent[DrugScreenRecorded], planning: Planning) -> None:
    data = event.data
    learned = CareInput(kind="drug_screen", at=data.collected_at, source_id=data.screen_id,
                        unexpected_positive=data.unexpected_positive)  # fmt: skip
    await learn(planning.store, planning.policy, event.subject, learned, event.dedup_key)


async def on_measure_recorded(event: CloudEvent[MeasureRecorded], planning: Planning) -> None:
    data = event.data
    learned = CareInput(kind="measure", at=data.recorded_at, source_id=data.measure_id, measured=data.instruments)
    # Intake's measure of an assessment comes with it, on another topic: usually before the plan the assessment makes.
    before_plan = data.source == "assessment"
    await learn(planning.store, planning.policy, event.subject, learned, event.dedup_key, before_plan=before_plan)


async def on_attendance_reported(event: CloudEvent[AttendanceReported], planning: Planning) -> None:
    data = event.data
    if data.schema_version == 2:
        await _record_sheet(event, planning)
        return
    assert data.status is not None  # checked by the schema
    try:
        await record_session_attendance(
            planning.store,
            planning.policy,
            event.subject,
            data.session_id,
            data.status,
            data.notice_given_at,
            event.dedup_key,
            minutes=data.minutes,
        )
    except CarePlanError as error:
        raise EventRejected(f"{error.code}: {error}") from None


async def _record_sheet(event: CloudEvent[AttendanceReported], planning: Planning) -> None:
    """A group session's sheet: each line is stored through its plan; the lines that cannot be are set aside
    together, with their reasons, while the others stay stored (a replay stores no line twice)."""
    data = event.data
    assert data.group_id is not None  # checked by the schema
    if planning.policy.group(data.group_id) is None:
        raise EventRejected(f"unknown_group: no group {data.group_id!r}")
    lines = await record_sheet(planning.store, planning.policy, data.group_id, data.session_id, data.attendance,
                               event.dedup_key)  # fmt: skip
    rejected = [line for line in lines if line.outcome == "rejected"]
    stored = len(lines) - len(rejected)
    log.info("sheet %s/%s: %d of %d lines stored", data.group_id, data.session_id, stored, len(lines))
    if rejected:
        reasons = "; ".join(f"{line.episode_id}: {line.code}" for line in rejected)
        raise EventRejected(f"{len(rejected)} of {len(lines)} lines not stored ({reasons})")


EVENT_HANDLERS: EventHandlers = {
    AssessmentCompleted: Subscription(on_assessment_completed, "An intake assessment starts the care plan; a "
                                      "reassessment feeds step-up / step-down review."),
    SafetyAlertRaised: Subscription(on_safety_alert_raised, "A safety alert feeds step-up review; an immediate one "
                                    "makes the treatment plan due for review at once."),
    DrugScreenRecorded: Subscription(on_drug_screen_recorded, "A drug screen feeds step-up / step-down review."),
    MeasureRecorded: Subscription(on_measure_recorded, "A measure settles the due measures of its instruments; "
                                  "a reliable deterioration feeds step-up review and makes the treatment plan due "
                                  "for review at once."),
    AttendanceReported: Subscription(on_attendance_reported, "Another system reports a session's attendance, "
                                     "or a group session's whole sheet."),
}  # fmt: skip
