"""caseload's projection on a real server: what applying an episode's events asks of the store (one write per
event), and that instances and lanes applying one episode's events at once lose none of them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.caseload.store import CaseloadStore, view_of
from stepwise_contract import CloudEvent, new_event
from tests.store.conftest import CommandLog, Document, noted_client
from tests.unit.contract.test_contract import EPISODE, make_data
from tools.dev.devstack import Backends

ZONE = ZoneInfo("America/New_York")
FLOW = ("iop.assessment.completed", "iop.care_level.assigned", "iop.schedule.changed", "iop.session.missed")
"""An episode's events as the pipeline sends them, its assessment first."""


@pytest.fixture
async def noted(running_backends: Backends) -> AsyncIterator[tuple[AsyncDatabase[Document], CommandLog]]:
    async with noted_client(running_backends.mongodb_url) as (client, commands):
        name = f"stepwise_caseload_{uuid.uuid4().hex[:12]}"
        yield client[name], commands
        await client.drop_database(name)


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
    noted: tuple[AsyncDatabase[Document], CommandLog],
) -> None:
    database, commands = noted
    store = await started(database)
    flow = events()
    commands.seen.clear()
    for event in flow:
        assert await store.apply(event) is True
    assert commands.names("episodes_v") == ["insert", "update", "update", "update"]
    commands.seen.clear()
    assert await store.apply(flow[1]) is False  # a redelivery
    assert commands.names("episodes_v") == []
    read_each_time = database["episodes_v_read_each_time"]
    for event in flow:  # by a store holding nothing: it reads the projection before each event
        await (await started(database)).apply(event, read_each_time)
    assert view_of(await stored(store)) == view_of(await read_each_time.find_one({"_id": EPISODE}) or {})


async def test_two_instances_applying_one_episodes_events_lose_none(
    noted: tuple[AsyncDatabase[Document], CommandLog],
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
    noted: tuple[AsyncDatabase[Document], CommandLog],
) -> None:
    database, commands = noted
    store = await started(database)
    await store.episodes()
    store._read_at = 0.0  # as if META_KEPT_SECONDS had passed
    commands.seen.clear()
    flow = events()
    assert await asyncio.gather(*(store.apply(event) for event in flow[1:])) == [True] * 3
    assert commands.names("meta") == ["find"]
