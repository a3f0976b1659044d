"""The caseload tier's fixtures: the store over the in-memory database, a fake intake answering names and searches
(and keeping the Authorization it was called with), the event broker and the HTTP client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from services.caseload import api
from services.caseload.app import create_broker
from services.caseload.names import IntakeDirectory
from services.caseload.queries import Caseload
from services.caseload.settings import CaseloadSettings
from services.caseload.store import CaseloadStore
from services.common.consumer import HANDLER_CONTEXT
from services.common.kafka import ServiceBroker
from tests.service.conftest import Events, running, service_app
from tests.service.conftest import api as client_of
from tests.service.memory_mongo import MemoryDatabase

SETTINGS = CaseloadSettings(kafka_consumers_enabled=True)
ZONE = ZoneInfo("America/New_York")
APP = service_app("caseload", [api.router], consumes=True)
NAMES = {"name": "Alex Example", "date_of_birth": "1990-04-01", "patient_id": "p-1"}


class FakeIntake:
    """Intake's names and search: every episode is Alex Example's; keeps each call's Authorization header."""

    def __init__(self) -> None:
        self.authorizations: list[str] = []
        self.status = 200
        self.found: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.authorizations.append(request.headers.get("authorization", ""))
        if self.status != 200:
            return httpx.Response(self.status, json={"detail": "refused"})
        body = json.loads(request.content)
        if request.url.path == "/v1/patients/names":
            names = [{"episode_id": episode, **NAMES} for episode in body["episode_ids"]]
            return httpx.Response(200, json={"names": names, "unknown": []})
        episodes = [{"episode_id": episode, "program": "adult", "status": "open", "opened_at": "2026-10-20T13:00:00Z"}
                    for episode in self.found]  # fmt: skip
        return httpx.Response(200, json={"patients": [{**NAMES, "episodes": episodes}], "more": False})


@pytest.fixture
def intake() -> FakeIntake:
    return FakeIntake()


@pytest.fixture
async def store(database: MemoryDatabase) -> CaseloadStore:
    store = CaseloadStore(database, 2, ZONE)  # type: ignore[arg-type]
    await store.create_indexes()
    await store.start()
    return store


@pytest.fixture
def kafka() -> ServiceBroker:
    return create_broker(SETTINGS)


@pytest.fixture
async def events(store: CaseloadStore, shelf: Any, kafka: ServiceBroker) -> AsyncIterator[Events]:
    async for delivered in running("caseload", kafka.broker, {HANDLER_CONTEXT: store, "event_shelf": shelf}):
        yield delivered


@pytest.fixture
async def http(
    database: MemoryDatabase, store: CaseloadStore, kafka: ServiceBroker, intake: FakeIntake
) -> AsyncIterator[httpx.AsyncClient]:
    directory = IntakeDirectory("http://intake.test", transport=httpx.MockTransport(intake.handle))
    state = {"caseload": Caseload(store, ZONE, 2), "directory": directory, "kafka": kafka, "stream_poll_seconds": 0.05}
    async with await client_of("caseload", APP, database, state) as client:
        yield client
    await directory.close()
