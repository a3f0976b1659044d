"""The care_plan tier's fixtures: the store over the in-memory database, the event broker and the HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.care_plan.app import create_broker
from services.care_plan.handlers import Planning
from services.care_plan.store import CarePlanStore
from services.common.consumer import HANDLER_CONTEXT
from services.common.kafka import ServiceBroker
from services.common.outbox import no_relay
from tests.service.care_plan.helpers import APP, FAMILY_CONSENT, POLICY, SETTINGS, consents_answering
from tests.service.conftest import Events, running
from tests.service.conftest import api as client_of
from tests.service.memory_mongo import MemoryDatabase


@pytest.fixture
async def store(database: MemoryDatabase) -> CarePlanStore:
    store = CarePlanStore(database, wake_relay=no_relay)  # type: ignore[arg-type]
    await store.create_indexes()  # as the service's start-up does: the unique seat index among them
    return store


@pytest.fixture
def kafka() -> ServiceBroker:
    return create_broker(SETTINGS)


@pytest.fixture
async def events(
    database: MemoryDatabase, store: CarePlanStore, shelf: Any, kafka: ServiceBroker
) -> AsyncIterator[Events]:
    broker = kafka.broker
    context = {HANDLER_CONTEXT: Planning(store, POLICY, SETTINGS.clinic_timezone), "event_shelf": shelf}
    async for running_events in running("care_plan", broker, context):
        yield running_events


@pytest.fixture
async def http(
    database: MemoryDatabase, store: CarePlanStore, kafka: ServiceBroker
) -> AsyncIterator[httpx.AsyncClient]:
    state = {"store": store, "policy": POLICY, "kafka": kafka, "clinic_timezone": SETTINGS.clinic_timezone,
             "consents": consents_answering(FAMILY_CONSENT)}  # fmt: skip
    async with await client_of("care_plan", APP, database, state) as client:
        yield client
