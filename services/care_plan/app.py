"""care_plan: care level and calendar, program groups and their rosters, attendance and no-shows, services
delivered, missed-session rules, step-up / step-down, graduation and discharge."""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from typing import Any

from fastapi import FastAPI

from services.common.consumer import HANDLER_CONTEXT
from services.common.kafka import ServiceBroker, service_broker
from services.common.outbox import no_relay
from services.common.service import Runtime, create_service_app
from stepwise_contract import PUBLISHED_BY

from . import api, api_moved, api_plan, care_team_api, handlers
from .consents import IntakeConsents
from .domain.policy import load_policy
from .handlers import Planning
from .settings import CONSUMER_GROUP, CarePlanSettings
from .store import PLANS, CarePlanStore
from .timers import DueChecks

PUBLISHES = PUBLISHED_BY["care_plan"]


def create_broker(settings: CarePlanSettings) -> ServiceBroker:
    return service_broker(settings, "care_plan", PUBLISHES, handlers.EVENT_HANDLERS, CONSUMER_GROUP)


def create_app(settings: CarePlanSettings | None = None) -> FastAPI:
    settings = settings or CarePlanSettings()
    policy = load_policy(settings.care_plan_policy_file)  # fail at start on a bad policy file
    kafka = create_broker(settings)

    async def startup(runtime: Runtime, app: FastAPI) -> Sequence[Coroutine[Any, Any, None]]:
        wake = runtime.relay or no_relay
        store = CarePlanStore(runtime.database, wake_relay=wake)
        await store.create_indexes()
        app.state.store = store
        app.state.policy = policy
        app.state.clinic_timezone = settings.clinic_timezone
        app.state.consents = IntakeConsents(settings, runtime.dependencies)
        runtime.broker.context.set_global(HANDLER_CONTEXT, Planning(store, policy, settings.clinic_timezone))
        return [DueChecks(store, policy, settings.timer_poll_seconds).run()]

    return create_service_app(
        title="Stepwise care plan",
        description=__doc__ or "",
        settings=settings,
        kafka=kafka,
        routers=[api.router, care_team_api.router, api.groups, api_plan.router, api_moved.router],
        startup=startup,
        outbox_collections=[PLANS],
        components=api.policy_components(policy),
    )
