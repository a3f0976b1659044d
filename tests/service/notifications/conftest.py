"""The notifications tier's fixtures: a fake intake, the assembled service (messaging and dispatcher), its
event broker and its HTTP client."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.common.consumer import HANDLER_CONTEXT
from services.common.dependencies import Dependencies
from services.common.kafka import ServiceBroker
from services.common.outbox import NoRelay
from services.notifications.app import assemble, create_broker
from services.notifications.changes import Messaging
from services.notifications.channels import IntakeContacts
from services.notifications.dispatcher import Dispatcher, Senders
from services.notifications.settings import NotificationsSettings
from tests.service.conftest import Events, running
from tests.service.conftest import api as client_of
from tests.service.fake_intake import FakeIntake
from tests.service.memory_mongo import MemoryDatabase
from tests.service.notifications.helpers import APP, POLICY, SETTINGS, TEMPLATES, FakeChannel


@pytest.fixture
def intake() -> FakeIntake:
    return FakeIntake()


@pytest.fixture
def wakes() -> list[str]:
    """Who was woken after a write: "dispatcher" (notifications to send) or "relay" (events to publish)."""
    return []


class Waking(NoRelay):
    """A relay that is not running (a write's events wait for a pass): it notes each write that woke it."""

    def __init__(self, wakes: list[str]) -> None:
        self.wakes = wakes

    def relay_now(self, collection: str, aggregate_id: str) -> None:
        self.wakes.append("relay")


@pytest.fixture
def dependencies() -> Dependencies:
    return Dependencies()


@pytest.fixture
def settings() -> NotificationsSettings:
    """The service's settings; a test may give its own by parametrizing ``settings``."""
    return SETTINGS


@pytest.fixture
async def parts(
    database: MemoryDatabase,
    intake: FakeIntake,
    wakes: list[str],
    dependencies: Dependencies,
    settings: NotificationsSettings,
) -> AsyncIterator[tuple[Messaging, Dispatcher]]:
    contacts = IntakeContacts(settings, dependencies, transport=httpx.MockTransport(intake.handle))
    assembled, dispatcher = await assemble(
        settings, POLICY, TEMPLATES, database,  # type: ignore[arg-type]
        Waking(wakes), dependencies, contacts=contacts,
    )  # fmt: skip
    yield dataclasses.replace(assembled, wake_dispatcher=lambda _urgent: wakes.append("dispatcher")), dispatcher
    await contacts.close()


@pytest.fixture
def messaging(parts: tuple[Messaging, Dispatcher]) -> Messaging:
    return parts[0]


@pytest.fixture
def dispatcher(parts: tuple[Messaging, Dispatcher]) -> Dispatcher:
    return parts[1]


@pytest.fixture
def kafka() -> ServiceBroker:
    return create_broker(SETTINGS)


@pytest.fixture
async def events(messaging: Messaging, shelf: Any, kafka: ServiceBroker) -> AsyncIterator[Events]:
    broker = kafka.broker
    async for running_events in running("notifications", broker, {HANDLER_CONTEXT: messaging, "event_shelf": shelf}):
        yield running_events


@pytest.fixture
async def http(
    database: MemoryDatabase, messaging: Messaging, kafka: ServiceBroker, dependencies: Dependencies
) -> AsyncIterator[httpx.AsyncClient]:
    state = {"messaging": messaging, "kafka": kafka, "dependencies": dependencies}
    async with await client_of("notifications", APP, database, state) as client:
        yield client


@pytest.fixture
def channels(dispatcher: Dispatcher) -> dict[str, FakeChannel]:
    fakes = {"email": FakeChannel(), "sms": FakeChannel(), "webhook": FakeChannel()}
    dispatcher._senders = Senders(fakes["email"], fakes["sms"], fakes["webhook"])  # type: ignore[arg-type]
    return fakes
