"""The intake tier's fixtures: the store and the idempotency keys over the in-memory database, the event broker
and the HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.common.edge import AuthFailures
from services.common.idempotency import IdempotencyKeys
from services.common.kafka import ServiceBroker
from services.common.outbox import no_relay
from services.intake.app import create_broker
from services.intake.store import IntakeStore
from tests.service.conftest import api as client_of
from tests.service.intake.helpers import APP, MEASURES, POLICY, SETTINGS
from tests.service.memory_mongo import MemoryDatabase


@pytest.fixture
async def store(database: MemoryDatabase) -> IntakeStore:
    store = IntakeStore(database, wake_relay=no_relay)  # type: ignore[arg-type]
    await store.create_indexes()  # as the service's start-up does
    return store


@pytest.fixture
async def keys(database: MemoryDatabase) -> IdempotencyKeys:
    keys = IdempotencyKeys(database)  # type: ignore[arg-type]
    await keys.create_indexes()  # the TTL index too: the in-memory store expires keys by the tier's clock
    await keys.note_keys_kept_in_records(database["patients"], database["episodes"])  # type: ignore[arg-type]
    return keys


@pytest.fixture
def kafka() -> ServiceBroker:
    return create_broker(SETTINGS)


@pytest.fixture
async def http(
    database: MemoryDatabase, store: IntakeStore, keys: IdempotencyKeys, kafka: ServiceBroker
) -> AsyncIterator[httpx.AsyncClient]:
    state = {
        "store": store,
        "placement_policy": POLICY,
        "measures_policy": MEASURES,
        "outcomes_settings": SETTINGS.outcomes,
        "link_settings": SETTINGS.links,
        "link_requests": AuthFailures(SETTINGS.links.per_minute),
        "idempotency_keys": keys,
        "kafka": kafka,
    }
    async with await client_of("intake", APP, database, state) as client:
        yield client
