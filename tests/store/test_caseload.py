"""caseload's projection on a real server: what applying an episode's events asks of the store (one write per
event, an episode's events of one consumer batch in one write, a batch's writes in one command), and that instances
and lanes applying one episode's events at once lose none of them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pymongo.asynchronous.database import AsyncDatabase

from services.caseload.store import CaseloadStore, view_of
from services.common.bulk import EPISODE_RECORDS, GATHERING, EpisodeRecords, Gathering
from stepwise_contract import CloudEvent, new_event
from tests.store.conftest import CommandLog, Document
from tests.unit.contract.test_contract import EPISODE, make_data

ZONE = ZoneInfo("America/New_York")
FLOW = ("iop.assessment.completed", "iop.care_level.assigned", "iop.schedule.changed", "iop.session.missed")
"""An episode's events as the pipeline sends them, its assessment first."""


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
    assert commands.names("episodes_v") == ["update"] * 4  # one write each: an upsert, the first inserting
    commands.seen.clear()
    assert await store.apply(flow[1]) is False  # a redelivery
    assert commands.names("episodes_v") == []
    read_each_time = database["episodes_v_read_each_time"]
    for event in flow:  # by a store holding nothing: it reads the projection before each event
        await (await started(database)).apply(event, read_each_time)
    assert view_of(await stored(store)) == view_of(await read_each_time.find_one({"_id": EPISODE}) or {})


async def test_a_write_sends_what_changed_and_the_timelines_new_entries_not_the_timeline_again(
    noted: tuple[AsyncDatabase[Document], CommandLog],
) -> None:
    database, commands = noted
    store = await started(database)
    at = datetime.now(UTC)  # a second apart: the timeline's order is the order they come in
    flow = [
        new_event(make_data(kind), source="/stepwise/test", time=at + timedelta(seconds=n))
        for n, kind in enumerate(FLOW)
    ]
    for event in flow[:3]:
        await store.apply(event)
    commands.seen.clear()
    await store.apply(flow[3])  # the newest: its entry goes at the end
    [sent] = [command["updates"][0]["u"] for _, collection, command in commands.seen if collection.startswith("epis")]
    assert [entry["key"] for entry in sent["$addToSet"]["timeline"]["$each"]] == [flow[3].dedup_key]
    assert "timeline" not in sent["$set"] and "program" not in sent["$set"]  # the program has not changed
    older = new_event(make_data("iop.assessment.completed"), source="/stepwise/test", time=flow[0].time - timedelta(1))
    commands.seen.clear()
    await store.apply(older)  # its entry goes first: the timeline is set whole
    [sent] = [command["updates"][0]["u"] for _, collection, command in commands.seen if collection.startswith("epis")]
    assert "$addToSet" not in sent and sent["$set"]["timeline"][0]["key"] == older.dedup_key
    read_each_time = database["episodes_v_read_each_time"]
    for event in [*flow, older]:  # by a store holding nothing: it reads the projection before each event
        await (await started(database)).apply(event, read_each_time)
    assert (await stored(store))["timeline"] == (await read_each_time.find_one({"_id": EPISODE}) or {})["timeline"]
    assert view_of(await stored(store)) == view_of(await read_each_time.find_one({"_id": EPISODE}) or {})


async def test_an_episodes_events_of_one_batch_are_one_write_and_make_the_projection_one_by_one_makes(
    noted: tuple[AsyncDatabase[Document], CommandLog],
) -> None:
    database, commands = noted
    store = await started(database)
    flow = events()
    commands.seen.clear()
    episode = EpisodeRecords()
    token = EPISODE_RECORDS.set(episode)
    try:
        for event in flow:
            await store.project(event)  # collected: nothing is written yet
        assert commands.names("episodes_v") == []
    finally:
        EPISODE_RECORDS.reset(token)
    await episode.finish()
    assert commands.names("episodes_v") == ["update"]
    commands.seen.clear()
    assert await store.apply_all(flow[1:3]) is False  # redelivered together: nothing written
    assert commands.names("episodes_v") == []
    one_by_one = database["episodes_v_one_by_one"]
    for event in flow:
        await (await started(database)).apply(event, one_by_one)
    assert view_of(await stored(store)) == view_of(await one_by_one.find_one({"_id": EPISODE}) or {})
    assert (await stored(store))["version"] == 1


async def test_events_collected_together_each_go_to_their_own_episode(
    noted: tuple[AsyncDatabase[Document], CommandLog],
) -> None:
    """A record keyed other than by its episode comes with another episode's records: it is applied to its own."""
    database, _ = noted
    store = await started(database)
    mine, other = of_episode("iop.assessment.completed", "ep-mine"), of_episode("iop.assessment.completed", "ep-other")
    assert await store.apply_all([mine, other]) is True
    for event in (mine, other):
        found = await (await store.episodes()).find_one({"_id": event.subject})
        assert found is not None and [entry["key"] for entry in found["timeline"]] == [event.dedup_key]


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


def of_episode(event_type: str, episode_id: str) -> CloudEvent[Any]:
    return new_event(make_data(event_type, episode_id=episode_id), source="/stepwise/test")


async def in_one_batch(store: CaseloadStore, flow: list[CloudEvent[Any]]) -> list[bool]:
    """Apply ``flow`` as a consumer batch does its episodes: concurrently, each a lane of the batch."""
    gathering = Gathering(len(flow))

    async def lane(event: CloudEvent[Any]) -> bool:
        try:
            return await store.apply(event)
        finally:
            gathering.finished()

    token = GATHERING.set(gathering)
    try:
        return await asyncio.gather(*(lane(event) for event in flow))
    finally:
        GATHERING.reset(token)


async def test_a_batchs_writes_are_one_command_and_a_lost_race_reads_only_its_episode(
    noted: tuple[AsyncDatabase[Document], CommandLog],
) -> None:
    database, commands = noted
    one, other = await started(database), await started(database)
    episodes = [f"ep-batch-{n}" for n in range(4)]
    commands.seen.clear()
    opened = [of_episode("iop.assessment.completed", episode) for episode in episodes]
    assert await in_one_batch(one, opened) == [True] * 4
    assert commands.names("episodes_v") == ["update"]  # four new episodes: one command
    assert await other.apply(of_episode("iop.schedule.changed", episodes[2])) is True  # one's copy is stale now
    commands.seen.clear()
    assigned = [of_episode("iop.care_level.assigned", episode) for episode in episodes]
    assert await in_one_batch(one, assigned) == [True] * 4
    assert commands.names("episodes_v") == ["update", "find", "update"]  # the lost one read again, alone
    assert commands.seen[1][2]["filter"] == {"_id": episodes[2]}
    commands.seen.clear()
    assert await in_one_batch(one, assigned) == [False] * 4  # redelivered: nothing written
    assert commands.names("episodes_v") == []
    for episode in episodes:
        found = await (await one.episodes()).find_one({"_id": episode})
        assert found is not None
        keys = {entry["key"] for entry in found["timeline"]}
        assert {event.dedup_key for event in [*opened, *assigned] if event.subject == episode} <= keys
        assert found["version"] == (3 if episode == episodes[2] else 2)


async def test_an_event_type_that_came_first_for_new_episodes_is_written_at_once_next_time(
    noted: tuple[AsyncDatabase[Document], CommandLog],
) -> None:
    database, commands = noted
    store, other = await started(database), await started(database)
    commands.seen.clear()
    assert await store.apply(of_episode("iop.care_level.assigned", "ep-first-1")) is True
    assert commands.names("episodes_v") == ["find", "update"]  # not known to come first: read, found nothing
    commands.seen.clear()
    assert await store.apply(of_episode("iop.care_level.assigned", "ep-first-2")) is True
    assert commands.names("episodes_v") == ["update"]  # it came first: written at once
    assessed = of_episode("iop.assessment.completed", "ep-first-3")
    assert await other.apply(assessed) is True
    commands.seen.clear()
    assigned = of_episode("iop.care_level.assigned", "ep-first-3")
    assert await store.apply(assigned) is True  # stored by another instance: the guess fails alone, then a read
    assert commands.names("episodes_v") == ["update", "find", "update"]
    found = await (await store.episodes()).find_one({"_id": "ep-first-3"})
    assert found is not None and found["version"] == 2
    assert {entry["key"] for entry in found["timeline"]} >= {assessed.dedup_key, assigned.dedup_key}
