"""The store tier: each service's store code against the MongoDB server the run started, a database per test.

The in-memory store of the middle tier accepts what MongoDB refuses and lacks what some servers lack; these
tests run the stores' own queries and updates on a real wire-protocol server instead. ``make test`` runs them on
nx-27017 with the whole suite and again on FerretDB on PostgreSQL (``STEPWISE_MONGODB_SERVER=ferretdb-pg``,
marker ``second_server``), so code that only one server accepts fails here.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase

from tools.dev.devstack import Backends

Document = dict[str, Any]


@pytest.fixture(scope="session")
async def mongo_client(running_backends: Backends) -> AsyncIterator[AsyncMongoClient[Document]]:
    client: AsyncMongoClient[Document] = AsyncMongoClient(running_backends.mongodb_url, tz_aware=True)
    yield client
    await client.close()


@pytest.fixture
async def database(mongo_client: AsyncMongoClient[Document]) -> AsyncIterator[AsyncDatabase[Document]]:
    name = f"stepwise_store_{uuid.uuid4().hex[:12]}"
    yield mongo_client[name]
    await mongo_client.drop_database(name)


@pytest.fixture(scope="session")
async def ferretdb(mongo_client: AsyncMongoClient[Document]) -> bool:
    """Whether the server is FerretDB (its buildInfo says so), for a test of what FerretDB lacks."""
    return "ferretdbVersion" in await mongo_client.admin.command("buildInfo")


def relayed_to(published: list[Document]) -> Any:
    """A relay's publish function that keeps what it is given, in order."""

    async def publish(record: Document) -> None:
        published.append(record)

    return publish


class CommandLog(monitoring.CommandListener):
    """Every command a client sends: its name, its collection and the command (without the session's fields)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, Document]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command = {key: value for key, value in event.command.items() if key not in ("lsid", "$db", "$clusterTime")}
        collection = command.get(event.command_name)
        self.seen.append((event.command_name, collection if isinstance(collection, str) else "", command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def names(self, collection_prefix: str) -> list[str]:
        """The names of the commands sent to collections whose name starts with ``collection_prefix``."""
        return [name for name, collection, _ in self.seen if collection.startswith(collection_prefix)]


@contextlib.asynccontextmanager
async def noted_client(url: str) -> AsyncIterator[tuple[AsyncMongoClient[Document], CommandLog]]:
    """A client whose commands are logged."""
    log = CommandLog()
    client: AsyncMongoClient[Document] = AsyncMongoClient(url, tz_aware=True, event_listeners=[log])
    try:
        yield client, log
    finally:
        await client.close()


@pytest.fixture
async def noted(running_backends: Backends) -> AsyncIterator[tuple[AsyncDatabase[Document], CommandLog]]:
    """A database of its own on a client whose commands are logged (what a store's path costs in round trips)."""
    async with noted_client(running_backends.mongodb_url) as (client, commands):
        name = f"stepwise_noted_{uuid.uuid4().hex[:12]}"
        yield client[name], commands
        await client.drop_database(name)
