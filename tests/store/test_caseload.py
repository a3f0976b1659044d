"""caseload's projection on a real server: what applying an episode's events asks of the store (one write per
event), and that instances and lanes applying one episode's events at once lose none of them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase

from services.caseload.store import CaseloadStore, view_of
from stepwise_contract import CloudEvent, new_event
from tests.store.conftest import Document
from tests.unit.contract.test_contract import EPISODE, make_data
from tools.dev.devstack import Backends

ZONE = ZoneInfo("America/New_York")
FLOW = ("iop.assessment.completed", "iop.care_level.assigned", "iop.schedule.changed", "iop.session.missed")
"""An episode's events as the pipeline sends them, its assessment first."""


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.seen: list[str] = []
        """The commands sent to the projection's collections."""
        self.meta: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        collection = event.command.get(event.command_name)
        if isinstance(collection, str) and collection.startswith("episodes_v"):
            self.seen.append(event.command_name)
        if collection == "meta":
            self.meta.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
async def noted(running_backends: Backends) -> AsyncIterator[tuple[AsyncDatabase[Document], Commands]]:
    commands = Commands()
    client: AsyncMongoClient[Document] = AsyncMongoClient(running_backends.mongodb_url, tz_aware=True,
                                                          event_listeners=[commands])  # fmt: skip
    name = f"stepwise_caseload_{uuid.uuid4().hex[:12]}"
    yield client[name], commands
    await client.drop_database(name)
    await client.close()


def events() -> list[CloudEvent[Any]]:
    return [new_event(make_data(event_type), source="/stepwise/test") for event_type in FLOW]


async def started(database: AsyncDatabase[Document]) -> CaseloadStore:
    store = CaseloadStore(database, 2, ZONE)
    await store.start()
    return store


async def stored(store: CaseloadStore) -> Document:
    found = await (await store.episodes()).find_one({"_id": EPISODE})
    assert found is not None
    return found


async def test_each_event_of_an_episode_costs_one_write_and_a_redelivery_none(
    noted: tuple[AsyncDatabase[Document], Commands],
) -> None:
    database, commands = noted
    store = await started(database)
    flow = events()
    commands.seen.clear()
    for event in flow:
        assert await store.apply(event) is True
    assert commands.seen == ["insert", "update", "update", "update"]
    commands.seen.clear()
    assert await store.apply(flow[1]) is False  # a redelivery
    assert commands.seen == []
    read_each_time = database["episodes_v_read_each_time"]
    for event in flow:  # by a store holding nothing: it reads the projection before each event
        await (await started(database)).apply(event, read_each_time)
    assert view_of(await stored(store)) == view_of(await read_each_time.find_one({"_id": EPISODE}) or {})


async def test_two_instances_applying_one_episodes_events_lose_none(
    noted: tuple[AsyncDatabase[Document], Commands],
) -> None:
    database, _ = noted
    one, other = await started(database), await started(database)
    flow = events()
    for n, event in enumerate(flow):  # each holds a projection the other changed since
        assert await (one if n % 2 == 0 else other).apply(event) is True
    again = new_event(make_data("iop.assessment.completed"), source="/stepwise/test")  # a reassessment
    assert await other.apply(again) is True  # opening, on an episode that exists: read, then written over
    assert await one.apply(flow[3]) is False  # applied by the other: known once read again
    found = await stored(one)
    assert found["version"] == len(flow) + 1
    assert sorted(entry["key"] for entry in found["timeline"]) == sorted(e.dedup_key for e in [*flow, again])


async def test_the_collection_in_use_is_read_once_for_the_events_waiting_on_it(
    noted: tuple[AsyncDatabase[Document], Commands],
) -> None:
    database, commands = noted
    store = await started(database)
    await store.episodes()
    store._read_at = 0.0  # as if META_KEPT_SECONDS had passed
    commands.meta.clear()
    flow = events()
    assert await asyncio.gather(*(store.apply(event) for event in flow[1:])) == [True] * 3
    assert commands.meta == ["find"]
