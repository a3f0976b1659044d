"""The authorizations tier's fixtures: the desk over the in-memory database, the event broker and the HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.authorizations import api
from services.authorizations.app import create_broker
from services.authorizations.changes import Desk
from services.authorizations.domain.coverage import Rules
from services.authorizations.domain.policy import load_policy
from services.authorizations.settings import AuthorizationsSettings
from services.authorizations.store import CoverageStore
from services.common.consumer import HANDLER_CONTEXT
from services.common.kafka import ServiceBroker
from services.common.outbox import no_relay
from tests.service.conftest import Events, running, service_app
from tests.service.conftest import api as client_of
from tests.service.memory_mongo import MemoryDatabase

SETTINGS = AuthorizationsSettings(_env_file=None)
RULES = Rules(load_policy(SETTINGS.authorizations_policy_file), SETTINGS.review_lead_business_days,
              SETTINGS.units_low_days, SETTINGS.clinic_timezone)  # fmt: skip
APP = service_app("authorizations", [api.router], consumes=True)


@pytest.fixture
async def desk(database: MemoryDatabase) -> Desk:
    store = CoverageStore(database, wake_relay=no_relay)  # type: ignore[arg-type]
    await store.create_indexes()
    return Desk(store, RULES)


@pytest.fixture
def kafka() -> ServiceBroker:
    return create_broker(SETTINGS)


@pytest.fixture
async def events(desk: Desk, shelf: Any, kafka: ServiceBroker) -> AsyncIterator[Events]:
    context = {HANDLER_CONTEXT: desk, "event_shelf": shelf}
    async for running_events in running("authorizations", kafka.broker, context):
        yield running_events


@pytest.fixture
async def http(database: MemoryDatabase, desk: Desk, kafka: ServiceBroker) -> AsyncIterator[httpx.AsyncClient]:
    async with await client_of("authorizations", APP, database, {"desk": desk, "kafka": kafka}) as client:
        yield client
