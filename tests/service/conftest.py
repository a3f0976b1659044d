"""The middle tier: each service's handlers and endpoints, in-process, in seconds.

Events go through FastStream's ``TestKafkaBroker`` (the real subscribers, middleware and decoding, no
broker), requests through the service's real FastAPI app over httpx's ASGI transport, and every store is
an in-memory MongoDB that is new for each test. What crosses a process boundary (Kafka, MongoDB, SMTP,
the other services) is the process suite's business (tests/integration).

Every endpoint must be seen answering a success and an error, and every handler applying an event;
``test_coverage.py`` checks that at the end of the tier.

The tier's clock is fixed: every test starts at ``TIER_CLOCK`` (the services' ``utc_now`` and the in-memory
store's TTL monitor both), so what a test sees does not depend on the time of day or the date it runs at.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import fast_depends.utils
import httpx
import mongomock
import pytest
from fastapi import FastAPI
from faststream.kafka import KafkaBroker, TestKafkaBroker

from services.common import consumer
from services.common.auth import Authenticator, Role
from services.common.consumer import EventShelf
from services.common.dependencies import Dependencies
from services.common.edge import AuthFailures
from services.common.service import SET_ASIDE_COLLECTION, http_app
from services.common.utc import set_clock_offset, utc_now
from stepwise_contract import CloudEvent, to_kafka
from tests.service.memory_mongo import MemoryCollection, MemoryDatabase

TOKENS = {role: f"{role.value}-token" for role in Role}


def as_role(role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


@dataclass
class Seen:
    """What the tier exercised: statuses per (service, method, route), events applied per (service, topic)."""

    answers: dict[tuple[str, str, str], set[int]] = field(default_factory=dict)
    applied: dict[tuple[str, str], int] = field(default_factory=dict)
    deselected: bool = False


SEEN = Seen()


def pytest_deselected(items: list[pytest.Item]) -> None:
    if any("tests/service/" in item.nodeid for item in items):
        SEEN.deselected = True


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The coverage check runs after everything it checks."""
    items.sort(key=lambda item: item.nodeid.startswith("tests/service/test_coverage.py"))


def operations(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, route) the app serves, as its OpenAPI document lists them."""
    return [(method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops]


def _route(app: FastAPI, method: str, path: str) -> str:
    for known_method, route in operations(app):
        pattern = re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(route))
        if known_method == method and re.fullmatch(pattern, path):
            return route
    return path


TIER_CLOCK = datetime.fromisoformat(os.environ.get("STEPWISE_TEST_CLOCK", "2026-12-01T15:38:00-05:00")).astimezone(UTC)
"""Where the clock stands when each test starts: a Tuesday afternoon in New York, outside the default quiet hours
(21:00-08:00). ``STEPWISE_TEST_CLOCK`` (ISO 8601 with its offset) runs the tier from another moment."""


class Clock:
    """The services' clock (``utc_now``) in a test: it starts at ``TIER_CLOCK`` and runs on from there."""

    def at(self, moment: datetime) -> None:
        set_clock_offset((moment - datetime.now(UTC)).total_seconds())

    def advance(self, by: timedelta) -> None:
        self.at(utc_now() + by)


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    fixed = Clock()
    fixed.at(TIER_CLOCK)
    # The in-memory store removes what a TTL index expires by its own clock: the same one (naive UTC, as mongomock's).
    monkeypatch.setattr(mongomock, "utcnow", lambda: utc_now().replace(tzinfo=None))
    yield fixed
    set_clock_offset(0)


@pytest.fixture(autouse=True)
def no_retry_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """An event that fails is tried again at once here: the tier delivers it again itself."""
    monkeypatch.setattr(consumer, "retry_delay", lambda _attempt: 0.0)


@pytest.fixture(autouse=True)
def events_applied_in_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch's message and context are looked up in the event loop (``consumer.InTheLoop``): fast_depends hands
    anything it calls plainly to a worker thread, and no event's way may do that."""

    async def refused(function: Any, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"fast_depends ran {function!r} in a worker thread")

    monkeypatch.setattr(fast_depends.utils, "run_in_threadpool", refused)


@pytest.fixture
def database() -> MemoryDatabase:
    return MemoryDatabase()


async def api(service: str, app: FastAPI, database: MemoryDatabase, state: dict[str, Any]) -> httpx.AsyncClient:
    """A client of ``app`` with ``state`` set as the service's start-up would; every answer is recorded."""
    app.state.authenticator = Authenticator({token: role for role, token in TOKENS.items()})
    app.state.auth_failures = AuthFailures(app.state.auth_failures.per_minute)  # each test counts afresh
    app.state.event_shelf = EventShelf(database[SET_ASIDE_COLLECTION])  # type: ignore[arg-type]
    app.state.readiness_checks = {"mongodb": _reachable, "kafka": _reachable}
    app.state.dependencies = Dependencies()
    for name, value in state.items():
        setattr(app.state, name, value)

    async def record(response: httpx.Response) -> None:
        key = (service, response.request.method, _route(app, response.request.method, response.request.url.path))
        SEEN.answers.setdefault(key, set()).add(response.status_code)

    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://test", event_hooks={"response": [record]})


async def _reachable() -> bool:
    return True


def service_app(service: str, routers: Iterable[Any], *, consumes: bool) -> FastAPI:
    return http_app(f"Stepwise {service}", "", list(routers), consumes=consumes)


class Events:
    """Delivers events to a service's subscribers through TestKafkaBroker, as Kafka would (binary mode)."""

    def __init__(self, service: str, broker: KafkaBroker) -> None:
        self.service = service
        self.broker = broker

    async def deliver(self, event: CloudEvent[Any], partition: int | None = None) -> None:
        """``partition``: TestKafkaBroker gives every record offset 0, so records the test must tell apart by
        position (set-aside events) go to different partitions."""
        record = to_kafka(event)
        headers = {name: value.decode() for name, value in record.headers}
        await self.broker.publish(
            record.value, topic=record.topic, key=record.key, headers=headers, partition=partition
        )
        key = (self.service, record.topic)
        SEEN.applied[key] = SEEN.applied.get(key, 0) + 1

    async def deliver_missing_data(self, topic: str) -> None:
        """A well-formed CloudEvent whose data lacks the event's required fields."""
        headers = {"ce_specversion": "1.0", "ce_id": str(uuid.uuid4()), "ce_source": "/test", "ce_type": topic,
                   "ce_subject": "episode", "content-type": "application/json"}  # fmt: skip
        value = b'{"episode_id": "episode", "schema_version": 1}'
        await self.broker.publish(value, topic=topic, key=b"episode", headers=headers)


@pytest.fixture
async def shelf(database: MemoryDatabase) -> EventShelf:
    return EventShelf(database[SET_ASIDE_COLLECTION])  # type: ignore[arg-type]


async def running(service: str, broker: KafkaBroker, context: dict[str, Any]) -> AsyncIterator[Events]:
    for name, value in context.items():
        broker.context.set_global(name, value)
    async with TestKafkaBroker(broker, connect_only=False):
        yield Events(service, broker)


async def set_aside(database: MemoryDatabase) -> list[dict[str, Any]]:
    return [document async for document in database[SET_ASIDE_COLLECTION].find({})]


async def queued(collection: MemoryCollection) -> list[tuple[str, dict[str, Any]]]:
    """The events waiting in the outboxes of ``collection`` for the relay: (topic, data), in order."""
    found = []
    async for document in collection.find({"outbox_pending": {"$gt": 0}}):
        for stored in document["outbox"]:
            record = json.loads(stored)
            found.append((record["topic"], json.loads(record["value"])))
    return found
