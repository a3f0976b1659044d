"""authorizations: the clinic's utilization-review desk. Payers' authorizations of each episode, drawn down live
from the services and days delivered, projected over the calendar, with the reviews and certifications due."""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from typing import Any

from fastapi import FastAPI

from services.common.consumer import HANDLER_CONTEXT
from services.common.kafka import ServiceBroker, service_broker
from services.common.outbox import no_relay
from services.common.service import Runtime, create_service_app
from stepwise_contract import PUBLISHED_BY

from . import api, handlers
from .changes import Desk
from .domain.coverage import Rules
from .domain.policy import load_policy
from .settings import CONSUMER_GROUP, AuthorizationsSettings
from .store import COVERAGE, CoverageStore
from .timers import DailyLooks

PUBLISHES = PUBLISHED_BY["authorizations"]


def create_broker(settings: AuthorizationsSettings) -> ServiceBroker:
    return service_broker(settings, "authorizations", PUBLISHES, handlers.EVENT_HANDLERS, CONSUMER_GROUP)


def create_app(settings: AuthorizationsSettings | None = None) -> FastAPI:
    settings = settings or AuthorizationsSettings()
    policy = load_policy(settings.authorizations_policy_file)  # fail at start on a bad policy file
    rules = Rules(policy, settings.review_lead_business_days, settings.units_low_days, settings.clinic_timezone)
    kafka = create_broker(settings)

    async def startup(runtime: Runtime, app: FastAPI) -> Sequence[Coroutine[Any, Any, None]]:
        wake = runtime.relay or no_relay
        store = CoverageStore(runtime.database, wake_relay=wake)
        await store.create_indexes()
        desk = Desk(store, rules)
        app.state.desk = desk
        runtime.broker.context.set_global(HANDLER_CONTEXT, desk)
        return [DailyLooks(desk, settings.timer_poll_seconds).run()]

    return create_service_app(
        title="Stepwise authorizations",
        description=__doc__ or "",
        settings=settings,
        kafka=kafka,
        routers=[api.router],
        startup=startup,
        outbox_collections=[COVERAGE],
    )
