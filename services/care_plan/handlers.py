"""Events care_plan consumes."""

from __future__ import annotations

import logging
from typing import Annotated

from faststream import Context
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaMessage

from services.common.consumer import read_event, subscriber_options
from services.common.utc import utc_now
from stepwise_contract import AssessmentCompleted, new_event

from .domain.care_plan import assign_care_level
from .domain.policy import CarePolicy
from .settings import CONSUMER_GROUP, SOURCE, CarePlanSettings
from .store import CarePlanStore

log = logging.getLogger(__name__)


def subscriptions(settings: CarePlanSettings) -> KafkaRouter:
    router = KafkaRouter()
    topic = AssessmentCompleted.event_type
    router.subscriber(
        topic,
        title=f"{topic}:care_plan",
        description="An intake assessment assigns the care level and builds the session calendar.",
        **subscriber_options(settings, CONSUMER_GROUP, topic),
    )(on_assessment_completed)
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
