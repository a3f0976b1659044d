"""Intake: registers patients, opens episodes, scores assessments, recommends a level of care, raises safety alerts."""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from typing import Any

from fastapi import FastAPI

from services.common import phones
from services.common.consumer import HANDLER_CONTEXT
from services.common.edge import AuthFailures
from services.common.idempotency import ExpiredKeyPurge, IdempotencyKeys
from services.common.kafka import ServiceBroker, service_broker
from services.common.outbox import no_relay
from services.common.service import Runtime, create_service_app
from stepwise_contract import PUBLISHED_BY

from . import api, handlers, lookup_api, web
from .domain.measures import load_measures_policy
from .domain.placement import load_placement_policy
from .settings import CONSUMER_GROUP, IntakeSettings
from .store import EPISODES, IntakeStore

PUBLISHES = PUBLISHED_BY["intake"]


def create_broker(settings: IntakeSettings) -> ServiceBroker:
    return service_broker(settings, "intake", PUBLISHES, handlers.EVENT_HANDLERS, CONSUMER_GROUP)


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    placement_policy = load_placement_policy(settings.intake_placement_policy_file)  # fail at start if invalid
    measures_policy = load_measures_policy(settings.intake_measures_policy_file)
    phones.use_region(settings.clinic_phone_region)
    kafka = create_broker(settings)

    async def startup(runtime: Runtime, app: FastAPI) -> Sequence[Coroutine[Any, Any, None]]:
        wake = runtime.relay or no_relay
        store = IntakeStore(runtime.database, wake_relay=wake)
        await store.create_indexes()
        app.state.store = store
        app.state.idempotency_keys = keys = IdempotencyKeys(runtime.database)
        await keys.create_indexes()
        await keys.note_keys_kept_in_records(store.patients, store.episodes)
        app.state.placement_policy = placement_policy
        app.state.measures_policy = measures_policy
        app.state.outcomes_settings = settings.outcomes
        app.state.link_settings = links = settings.links
        app.state.link_requests = AuthFailures(links.per_minute)
        runtime.broker.context.set_global(HANDLER_CONTEXT, store)
        return [] if keys.expired_by_server else [ExpiredKeyPurge(keys).run()]

    return create_service_app(
        title="Stepwise intake",
        description=__doc__ or "",
        settings=settings,
        kafka=kafka,
        routers=[api.router, lookup_api.router, web.router],
        startup=startup,
        outbox_collections=[EPISODES],
    )
