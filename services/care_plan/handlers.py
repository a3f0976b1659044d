"""Events care_plan consumes."""

from __future__ import annotations

import logging
from typing import Annotated

from faststream import Context
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaMessage

from services.common.consumer import EventRejected, read_event, subscriber_options
from services.common.utc import utc_now
from stepwise_contract import AssessmentCompleted, AttendanceReported, new_event

from .attendance import record_session_attendance
from .domain.care_plan import CarePlanError, assign_care_level
from .domain.policy import CarePolicy
from .settings import CONSUMER_GROUP, SOURCE, CarePlanSettings
from .store import CarePlanStore

log = logging.getLogger(__name__)


def subscriptions(settings: CarePlanSettings) -> KafkaRouter:
    router = KafkaRouter()
    for model, handler, description in (
        (AssessmentCompleted, on_assessment_completed, "An intake assessment assigns the care level and calendar."),
        (AttendanceReported, on_attendance_reported, "Another system reports a session's attendance."),
    ):
        router.subscriber(
            model.event_type,
            title=f"{model.event_type}:care_plan",
            description=description,
            **subscriber_options(settings, CONSUMER_GROUP, model.event_type),
        )(handler)
    return router


async def on_assessment_completed(
    data: AssessmentCompleted,
    message: KafkaMessage,
    store: Annotated[CarePlanStore, Context("care_plan_store")],
    policy: Annotated[CarePolicy, Context("care_policy")],
    timezone: Annotated[str, Context("clinic_timezone")],
) -> None:
    event = read_event(message, data)
    for _attempt in range(5):
        stored = await store.get(event.subject)
        if stored is None:
            plan, assigned = assign_care_level(event.data, policy, timezone, utc_now())
            if await store.create(plan, new_event(assigned, source=SOURCE), applied=event.dedup_key):
                log.info("episode %s: care level %s (%s)", plan.episode_id, plan.level.value, plan.status)
                return
            continue  # another instance created it meanwhile: decide again on what is stored
        if event.dedup_key in stored.applied_events:
            return  # redelivered
        # A plan exists: later assessments (reassessments) feed step-up/step-down review, not reassignment.
        if await store.mark_applied(stored, event.dedup_key):
            return
    raise RuntimeError("care plan kept changing; will retry the event")


async def on_attendance_reported(
    data: AttendanceReported,
    message: KafkaMessage,
    store: Annotated[CarePlanStore, Context("care_plan_store")],
) -> None:
    event = read_event(message, data)
    try:
        await record_session_attendance(
            store, event.subject, data.session_id, data.status, data.notice_given_at, applied=event.dedup_key
        )
    except CarePlanError as error:
        raise EventRejected(f"{error.code}: {error}") from None
