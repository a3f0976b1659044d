"""The outbox relay: a write's events go out at once, in order; events queued while it publishes go too. A pass
takes a batch of the aggregates with events waiting, 16 at a time, each leased to the relay that publishes it; a
stopped relay starts nothing."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError

from services.common.mongo import Document
from services.common.outbox import EPOCH, OutboxRelay, ensure_outbox_index, insert_aggregate, update_aggregate
from services.common.utc import utc_now, wall_clock
from stepwise_contract import SafetyAlertRaised, SessionMissed, new_event
from tests.service.memory_mongo import MemoryCollection, MemoryDatabase


def missed(episode_id: str, total: int) -> Any:
    now = utc_now()
    data = SessionMissed(episode_id=episode_id, session_id="s001", starts_at=now, detected="reported",
                         recorded_at=now, consecutive_misses=total, total_misses=total)  # fmt: skip
    return new_event(data, source="/test")


async def test_a_write_is_relayed_at_once_and_what_comes_meanwhile_follows_in_order() -> None:
    database = MemoryDatabase()
    collection = database["plans"]
    published: list[int] = []
    first_out, both_out = asyncio.Event(), asyncio.Event()

    async def publish(stored: Document) -> None:
        published.append(json.loads(stored["value"])["total_misses"])
        if len(published) == 1:  # while the first goes out, the plan changes again
            assert await update_aggregate(collection, "e1", 1, {"n": 2}, [missed("e1", 2)])  # type: ignore[arg-type]
            relay.relay_now("plans", "e1")  # the relay is at work on it: it goes on with this one when done
            first_out.set()
        if len(published) == 2:
            both_out.set()

    relay = OutboxRelay([collection], publish, poll_seconds=3600)  # type: ignore[list-item]
    running = asyncio.create_task(relay.run())
    await asyncio.sleep(0)  # the relay runs: writes are handed over, not left to a pass
    assert await insert_aggregate(collection, {"_id": "e1", "n": 1}, [missed("e1", 1)])  # type: ignore[arg-type]
    relay.relay_now("plans", "e1")
    await asyncio.wait_for(first_out.wait(), 5)
    await asyncio.wait_for(both_out.wait(), 5)
    await until(lambda: pending(collection, "e1") == 0)  # removed with the removals of its moment
    running.cancel()
    assert published == [1, 2]  # both, in order, with no pass (the poll is an hour away)
    stored = await collection.find_one({"_id": "e1"})
    assert stored is not None and stored["outbox"] == [] and stored["outbox_pending"] == 0


class Published:
    """What the relay handed to Kafka: ``total_misses`` of each event, in order."""

    def __init__(self) -> None:
        self.totals: list[int] = []

    async def __call__(self, stored: Document) -> None:
        self.totals.append(json.loads(stored["value"])["total_misses"])


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Wait for ``condition`` (what the relay's tasks do, in this event loop), failing after ``seconds``."""
    began = time.monotonic()
    while True:
        if condition():
            return
        assert time.monotonic() - began < seconds, "timed out"
        await asyncio.sleep(0.01)


async def add(collection: MemoryCollection, aggregate_id: str, *totals: int) -> None:
    assert await insert_aggregate(collection, {"_id": aggregate_id}, [missed(aggregate_id, t) for t in totals])  # type: ignore[arg-type]


async def test_the_outbox_index_is_the_one_a_pass_looks_up() -> None:
    plans = MemoryDatabase()["plans"]
    await ensure_outbox_index(plans)  # type: ignore[arg-type]
    keys = [index["key"] for index in plans.sync.index_information().values()]
    assert [("outbox_pending", 1), ("outbox_lease_until", 1)] in keys


async def test_a_pass_takes_a_batch_of_100_aggregates_with_events_waiting() -> None:
    plans = MemoryDatabase()["plans"]
    assert await insert_aggregate(plans, {"_id": "e000"})  # type: ignore[arg-type]  # nothing waits in this one
    for n in range(1, 102):
        await add(plans, f"e{n:03}", n)
    publish = Published()
    relay = OutboxRelay([plans], publish)  # type: ignore[list-item]
    assert await relay.work_once() == 100
    assert await relay.work_once() == 1
    assert await relay.work_once() == 0
    assert publish.totals == list(range(1, 102))


async def test_a_pass_relays_every_collection_and_counts_what_went_out() -> None:
    database = MemoryDatabase()
    await add(database["plans"], "e1", 1, 2)
    await add(database["alerts"], "a1", 3)
    publish = Published()
    assert await OutboxRelay([database["plans"], database["alerts"]], publish).work_once() == 3  # type: ignore[list-item]
    assert publish.totals == [1, 2, 3]


class Acknowledged:
    """A producer that takes records at once and acknowledges them when the test says: ``totals`` in the order handed
    over, ``acks`` the futures of their acknowledgements."""

    def __init__(self) -> None:
        self.totals: list[int] = []
        self.acks: list[asyncio.Future[None]] = []

    async def __call__(self, stored: Document) -> asyncio.Future[None]:
        self.totals.append(json.loads(stored["value"])["total_misses"])
        self.acks.append(asyncio.get_running_loop().create_future())
        return self.acks[-1]


async def test_an_aggregates_events_are_handed_over_together_and_removed_once_acknowledged() -> None:
    plans = MemoryDatabase()["plans"]
    await add(plans, "e1", 1, 2, 3)
    producer = Acknowledged()
    relaying = asyncio.create_task(OutboxRelay([plans], producer, removal_linger=0).work_once())  # type: ignore[list-item]

    await until(lambda: len(producer.acks) == 3)  # all three before any acknowledgement: one request, not three

    assert producer.totals == [1, 2, 3] and pending(plans, "e1") == 3
    for ack in producer.acks:
        ack.set_result(None)
    assert await relaying == 3
    assert pending(plans, "e1") == 0


async def test_what_follows_a_refused_event_stays_in_the_outbox() -> None:
    plans = MemoryDatabase()["plans"]
    await add(plans, "e1", 1, 2, 3)
    producer = Acknowledged()
    relaying = asyncio.create_task(OutboxRelay([plans], producer, removal_linger=0).work_once())  # type: ignore[list-item]
    await until(lambda: len(producer.acks) == 3)

    producer.acks[0].set_result(None)
    producer.acks[1].set_exception(KafkaConnectionError())
    producer.acks[2].set_result(None)  # it went out too: it goes again, and its consumers ignore the repeat
    with pytest.raises(KafkaConnectionError):
        await relaying  # the pass says so; the next one publishes the rest

    stored = plans.sync.find_one({"_id": "e1"})
    assert stored is not None
    assert [json.loads(json.loads(record)["value"])["total_misses"] for record in stored["outbox"]] == [2, 3]


async def test_a_pass_relays_16_aggregates_at_once() -> None:
    plans = MemoryDatabase()["plans"]
    for n in range(1, 21):
        await add(plans, f"e{n}", n)
    in_flight, most = 0, 0

    async def publish(_stored: Document) -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0)  # the others may start meanwhile
        in_flight -= 1

    assert await OutboxRelay([plans], publish).work_once() == 20  # type: ignore[list-item]
    assert most == 16


async def test_an_aggregate_being_relayed_is_leased_to_the_relay_that_claimed_it() -> None:
    plans = MemoryDatabase()["plans"]
    await add(plans, "e1", 1, 2)
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(_stored: Document) -> None:
        started.set()
        await release.wait()

    passing = asyncio.create_task(OutboxRelay([plans], slow, lease_seconds=30).work_once())  # type: ignore[list-item]
    await started.wait()
    leased = (await plans.find_one({"_id": "e1"}))["outbox_lease_until"]  # type: ignore[index]
    assert wall_clock() + timedelta(seconds=29) < leased <= wall_clock() + timedelta(seconds=30)
    other = Published()  # another instance's pass meanwhile
    assert await OutboxRelay([plans], other).work_once() == 0  # type: ignore[list-item]
    assert other.totals == []
    release.set()
    assert await passing == 2


class ClaimedMeanwhile:
    """A collection whose aggregates another instance claims between a pass's look-up and its claim."""

    def __init__(self, collection: MemoryCollection) -> None:
        self.collection = collection
        self.name = collection.name

    def find(self, *args: Any, **kwargs: Any) -> AsyncIterator[Document]:
        found = list(self.collection.sync.find(*args, **kwargs))
        self.collection.sync.update_many({}, {"$set": {"outbox_lease_until": wall_clock() + timedelta(minutes=1)}})

        async def documents() -> AsyncIterator[Document]:
            for document in found:
                yield document

        return documents()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.collection, name)


async def test_an_aggregate_claimed_by_another_instance_after_the_look_up_is_left_to_it() -> None:
    plans = MemoryDatabase()["plans"]
    await add(plans, "e1", 1)
    publish = Published()
    assert await OutboxRelay([ClaimedMeanwhile(plans)], publish).work_once() == 0  # type: ignore[list-item]
    assert publish.totals == []


async def test_when_a_pass_fails_what_other_aggregates_published_is_recorded_first() -> None:
    """A publish that raises fails the pass only once the pass's other aggregates are done: what they published
    is removed from their outboxes, not sent again by the next pass."""
    plans = MemoryDatabase()["plans"]
    await add(plans, "e1", 1)
    await add(plans, "e2", 2)

    async def publish(stored: Document) -> None:
        if stored["key"] == "e1":
            raise KafkaConnectionError("the broker went away")
        await asyncio.sleep(0.2)  # e2 is slower than e1's failure

    with pytest.raises(KafkaConnectionError):
        await OutboxRelay([plans], publish).work_once()  # type: ignore[list-item]
    assert (await plans.find_one({"_id": "e2"}))["outbox_pending"] == 0  # type: ignore[index]
    assert (await plans.find_one({"_id": "e1"}))["outbox_pending"] == 1  # type: ignore[index]


class Running:
    """A relay running as in a service (the poll an hour away: only ``relay_now`` and wake-ups make it work),
    counting its passes and the errors its tasks left to the event loop."""

    def __init__(self, relay: OutboxRelay) -> None:
        self.relay = relay
        self.passes = 0
        self.loop_errors: list[dict[str, Any]] = []
        counted = relay.work_once

        async def work_once() -> int:
            self.passes += 1
            return await counted()

        relay.work_once = work_once  # type: ignore[method-assign]

    async def __aenter__(self) -> Running:
        loop = asyncio.get_running_loop()
        self._handler = loop.get_exception_handler()
        loop.set_exception_handler(lambda _loop, context: self.loop_errors.append(context))
        self.task = asyncio.create_task(self.relay.run())
        await until(lambda: self.passes >= 1)  # its first pass
        return self

    async def __aexit__(self, *_: object) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task
        asyncio.get_running_loop().set_exception_handler(self._handler)


async def test_relay_now_publishes_a_write_at_once_without_a_pass_and_again_for_the_next() -> None:
    plans = MemoryDatabase()["plans"]
    publish = Published()
    async with Running(OutboxRelay([plans], publish, poll_seconds=3600)) as running:  # type: ignore[list-item]
        await add(plans, "e1", 1)
        running.relay.relay_now("plans", "e1")
        await until(lambda: publish.totals == [1])
        assert await update_aggregate(plans, "e1", 1, {"n": 2}, [missed("e1", 2)])  # type: ignore[arg-type]
        running.relay.relay_now("plans", "e1")  # the same aggregate, once its first relay is done
        await until(lambda: publish.totals == [1, 2])
        assert running.passes == 1
    assert running.loop_errors == []


async def test_relay_now_publishes_16_aggregates_at_once() -> None:
    plans = MemoryDatabase()["plans"]
    in_flight, most, done = 0, 0, 0

    async def publish(_stored: Document) -> None:
        nonlocal in_flight, most, done
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        done += 1

    async with Running(OutboxRelay([plans], publish, poll_seconds=3600)) as running:  # type: ignore[list-item]
        for n in range(1, 21):
            await add(plans, f"e{n}", n)
            running.relay.relay_now("plans", f"e{n}")
        await until(lambda: done == 20)
    assert most == 16


async def test_a_write_queued_while_its_aggregate_is_relayed_goes_out_with_that_relay() -> None:
    """relay_now finds the aggregate being relayed here: that relay goes on with the new event, so it does not
    wait for the next pass (an hour away) behind the lease its own relay holds."""
    plans = MemoryDatabase()["plans"]
    publish = Published()

    async def writes_meanwhile(stored: Document) -> None:
        await publish(stored)
        if publish.totals == [1]:
            assert await update_aggregate(plans, "e1", 1, {"n": 2}, [missed("e1", 2)])  # type: ignore[arg-type]
            running.relay.relay_now("plans", "e1")
            for _ in range(5):
                await asyncio.sleep(0)  # whatever relay_now started runs meanwhile

    async with Running(OutboxRelay([plans], writes_meanwhile, poll_seconds=3600)) as running:  # type: ignore[list-item]
        await add(plans, "e1", 1)
        running.relay.relay_now("plans", "e1")
        await until(lambda: publish.totals == [1, 2], seconds=2)
    assert running.passes == 1


async def test_relay_now_that_fails_is_logged_and_leaves_the_events_to_the_next_pass(
    caplog: pytest.LogCaptureFixture,
) -> None:
    plans = MemoryDatabase()["plans"]
    calls = 0

    async def broker_gone(_stored: Document) -> None:
        nonlocal calls
        calls += 1
        raise KafkaConnectionError("the broker went away")

    caplog.set_level(logging.DEBUG, logger="services.common.outbox")
    async with Running(OutboxRelay([plans], broker_gone, poll_seconds=3600)) as running:  # type: ignore[list-item]
        await add(plans, "e1", 1)
        running.relay.relay_now("plans", "e1")
        await until(lambda: any(r.name == "services.common.outbox" for r in caplog.records))
    assert [r.getMessage() for r in caplog.records if r.name == "services.common.outbox"] == [
        "relaying e1 now failed (KafkaConnectionError); the next pass will"
    ]
    left = await plans.find_one({"_id": "e1"})
    assert left is not None and (left["outbox_pending"], left["outbox_lease_until"], calls) == (1, EPOCH, 1)
    assert running.loop_errors == []


async def test_stopping_the_relay_cancels_what_relay_now_started_once_its_drain_time_is_out() -> None:
    plans = MemoryDatabase()["plans"]
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def blocked(_stored: Document) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    relay = OutboxRelay([plans], blocked, poll_seconds=3600, drain_seconds=0.05)  # type: ignore[list-item]
    async with Running(relay) as running:
        await add(plans, "e1", 1)
        running.relay.relay_now("plans", "e1")
        await started.wait()
    await asyncio.wait_for(cancelled.wait(), 1)
    assert pending(plans, "e1") == 1  # for the next pass, of this instance or another


async def test_a_relay_that_stops_awaits_the_acknowledgement_of_what_a_write_handed_over_and_removes_it() -> None:
    """Stopped between handing a write's events to the producer and their acknowledgement: it waits for it (within
    its drain time) and removes them, so that they do not go out again once the lease ends."""
    plans = MemoryDatabase()["plans"]
    producer = Acknowledged()
    relay = OutboxRelay([plans], producer, poll_seconds=3600, removal_linger=3600)  # type: ignore[list-item]
    running = Running(relay)
    await running.__aenter__()
    assert await insert_aggregate(plans, {"_id": "e1"}, [missed("e1", 1), missed("e1", 2)], relay=relay)  # type: ignore[arg-type]
    await until(lambda: len(producer.acks) == 2)
    stopping = asyncio.create_task(running.__aexit__())
    await asyncio.sleep(0.05)  # the stop has begun, the acknowledgements still to come
    assert not stopping.done() and pending(plans, "e1") == 2
    for ack in producer.acks:
        ack.set_result(None)
    await stopping
    assert producer.totals == [1, 2] and pending(plans, "e1") == 0


async def test_a_relay_that_is_not_running_starts_nothing_on_relay_now() -> None:
    plans = MemoryDatabase()["plans"]
    await add(plans, "e1", 1)
    relay = OutboxRelay([plans], Published(), poll_seconds=3600)  # type: ignore[list-item]
    before = asyncio.all_tasks()
    relay.relay_now("plans", "e1")  # not yet running
    assert asyncio.all_tasks() == before
    async with Running(relay):
        pass
    before = asyncio.all_tasks()
    relay.relay_now("plans", "e1")  # stopped
    assert asyncio.all_tasks() == before


async def test_a_running_relay_publishes_what_another_instance_queued_at_its_next_poll() -> None:
    plans = MemoryDatabase()["plans"]
    publish = Published()
    async with Running(OutboxRelay([plans], publish, poll_seconds=0.05)) as running:  # type: ignore[list-item]
        await add(plans, "e1", 1)  # written elsewhere: no relay_now here
        await until(lambda: publish.totals == [1])
        assert running.passes >= 2


# A write that queues events claims them for the relay of its process: the relay publishes them without claiming,
# and removes them with the removals of every aggregate relayed at the same moment.


def pending(collection: MemoryCollection, aggregate_id: str) -> int:
    stored = collection.sync.find_one({"_id": aggregate_id})
    assert stored is not None
    return int(stored["outbox_pending"])


async def test_a_change_with_events_costs_its_write_and_one_removal_no_claim() -> None:
    database = MemoryDatabase()
    plans = database["plans"]
    publish = Published()
    async with Running(OutboxRelay([plans], publish, poll_seconds=3600)) as running:  # type: ignore[list-item]
        database.calls.clear()
        assert await insert_aggregate(plans, {"_id": "e1"}, [missed("e1", 1)], relay=running.relay)  # type: ignore[arg-type]
        await until(lambda: publish.totals == [1] and len(database.calls) == 2)
        assert await update_aggregate(plans, "e1", 1, {"n": 2}, [missed("e1", 2)], relay=running.relay)  # type: ignore[arg-type]
        await until(lambda: publish.totals == [1, 2] and len(database.calls) == 4)
    # The second write's outbox was empty: it holds that write's event alone, claimed without reading it back.
    assert database.calls == [("insert", "plans"), ("update", "plans"), ("update", "plans"), ("update", "plans")]
    stored = await plans.find_one({"_id": "e1"})
    assert stored is not None and (stored["outbox"], stored["outbox_pending"], stored["outbox_lease_until"]) == (
        [], 0, EPOCH)  # fmt: skip


async def test_a_write_over_events_still_pending_reads_them_back_and_all_go_out_in_order() -> None:
    database = MemoryDatabase()
    plans = database["plans"]
    publish = Published()
    async with Running(OutboxRelay([plans], publish, poll_seconds=3600)) as running:  # type: ignore[list-item]
        await until(lambda: running.passes >= 1)  # the next pass is an hour away
        assert await insert_aggregate(plans, {"_id": "e1"}, [missed("e1", 1)])  # type: ignore[arg-type]  # unclaimed
        database.calls.clear()
        assert await update_aggregate(plans, "e1", 1, {"n": 2}, [missed("e1", 2)], relay=running.relay)  # type: ignore[arg-type]
        await until(lambda: publish.totals == [1, 2] and pending(plans, "e1") == 0)
    assert database.calls[:2] == [("update", "plans"), ("findAndModify", "plans")]  # not empty: claimed, read back


async def test_the_removals_of_aggregates_relayed_at_once_go_in_one_round_trip() -> None:
    database = MemoryDatabase()
    plans = database["plans"]
    publish = Published()
    async with Running(OutboxRelay([plans], publish, poll_seconds=3600)) as running:  # type: ignore[list-item]
        database.calls.clear()
        writes = [insert_aggregate(plans, {"_id": f"e{n}"}, [missed(f"e{n}", n)], relay=running.relay)  # type: ignore[arg-type]
                  for n in range(1, 11)]  # fmt: skip
        assert all(await asyncio.gather(*writes))
        await until(lambda: len(publish.totals) == 10 and all(pending(plans, f"e{n}") == 0 for n in range(1, 11)))
    removals = [call for call in database.calls if call[0] != "insert"]
    assert removals == [("update", "plans")]  # ten aggregates' events removed in one bulk write


async def test_a_write_claiming_an_outbox_being_relayed_here_publishes_only_what_is_new() -> None:
    """The second write takes the claim from the first's relay (its removal then changes nothing): the relay goes on
    with the new claim, publishes the new event alone and removes both."""
    plans = MemoryDatabase()["plans"]
    publish = Published()

    async def writes_meanwhile(stored: Document) -> None:
        await publish(stored)
        if publish.totals == [1]:
            assert await update_aggregate(plans, "e1", 1, {"n": 2}, [missed("e1", 2)], relay=running.relay)  # type: ignore[arg-type]

    async with Running(OutboxRelay([plans], writes_meanwhile, poll_seconds=3600)) as running:  # type: ignore[list-item]
        assert await insert_aggregate(plans, {"_id": "e1"}, [missed("e1", 1)], relay=running.relay)  # type: ignore[arg-type]
        await until(lambda: pending(plans, "e1") == 0)
    assert publish.totals == [1, 2]  # in order, none twice
    stored = await plans.find_one({"_id": "e1"})
    assert stored is not None and (stored["outbox"], stored["outbox_claim"]) == ([], "")


async def test_a_relay_whose_claim_was_taken_removes_nothing_and_the_new_holder_removes_all() -> None:
    """Another instance's write took the claim while this relay published: the outbox stays for the new holder (the
    event goes out again: consumers drop the repeat), and its count is never taken down twice."""
    plans = MemoryDatabase()["plans"]
    publish = Published()

    async def claim_taken(stored: Document) -> None:
        await publish(stored)
        plans.sync.update_one({"_id": "e1"}, {"$set": {"outbox_claim": "elsewhere"}})

    relay = OutboxRelay([plans], claim_taken)  # type: ignore[list-item]
    await add(plans, "e1", 1, 2)
    assert await relay.work_once() == 2
    stored = await plans.find_one({"_id": "e1"})
    assert stored is not None and (stored["outbox_pending"], len(stored["outbox"])) == (2, 2)
    plans.sync.update_one({"_id": "e1"}, {"$set": {"outbox_lease_until": EPOCH}})  # the other holder's lease ended
    assert await OutboxRelay([plans], publish).work_once() == 2  # type: ignore[list-item]
    stored = await plans.find_one({"_id": "e1"})
    assert stored is not None and (stored["outbox_pending"], stored["outbox"]) == (0, [])
    assert publish.totals == [1, 2, 1, 2]


async def test_a_write_while_the_relay_is_not_running_claims_nothing_and_leaves_the_events_to_a_pass() -> None:
    plans = MemoryDatabase()["plans"]
    relay = OutboxRelay([plans], Published(), poll_seconds=3600)  # type: ignore[list-item]
    assert relay.claim("e1") is None
    assert await insert_aggregate(plans, {"_id": "e1"}, [missed("e1", 1)], relay=relay)  # type: ignore[arg-type]
    stored = await plans.find_one({"_id": "e1"})
    assert stored is not None and stored["outbox_lease_until"] == EPOCH and "outbox_claim" not in stored


async def test_removals_wait_for_others_to_go_with_them_until_enough_have_come() -> None:
    database = MemoryDatabase()
    plans = database["plans"]
    publish = Published()
    relay = OutboxRelay([plans], publish, poll_seconds=3600, removal_linger=3600, removals_at_once=5)  # type: ignore[list-item]
    async with Running(relay):
        database.calls.clear()
        for n in range(1, 6):  # one after another: each published while the next is written
            assert await insert_aggregate(plans, {"_id": f"e{n}"}, [missed(f"e{n}", n)], relay=relay)  # type: ignore[arg-type]
            await until(lambda n=n: len(publish.totals) == n)  # type: ignore[misc]
        await until(lambda: all(pending(plans, f"e{n}") == 0 for n in range(1, 6)))
    assert [call for call in database.calls if call[0] != "insert"] == [("update", "plans")]


async def test_a_write_while_the_last_events_wait_for_their_removal_goes_out_at_once_and_nothing_twice() -> None:
    """The removal of what went out lingers (an hour here); a write meanwhile claims the outbox, which still holds
    those events: its own goes out at once, theirs not again, and the new claim's removal takes both."""
    database = MemoryDatabase()
    plans = database["plans"]
    publish = Published()
    relay = OutboxRelay([plans], publish, poll_seconds=3600, removal_linger=3600)  # type: ignore[list-item]
    async with Running(relay):
        assert await insert_aggregate(plans, {"_id": "e1"}, [missed("e1", 1)], relay=relay)  # type: ignore[arg-type]
        await until(lambda: publish.totals == [1])
        assert await update_aggregate(plans, "e1", 1, {"n": 2}, [missed("e1", 2)], relay=relay)  # type: ignore[arg-type]
        await until(lambda: len(publish.totals) == 2)
        assert pending(plans, "e1") == 2  # nothing removed yet: both removals linger
    assert publish.totals == [1, 2]
    stored = await plans.find_one({"_id": "e1"})
    assert stored is not None and (stored["outbox"], stored["outbox_pending"]) == ([], 0)


async def test_a_writes_safety_alert_is_published_without_waiting_behind_routine_events() -> None:
    """Every slot is taken by a routine publish that hangs (a broker slow to answer): a safety alert handed over
    meanwhile goes out all the same."""
    plans = MemoryDatabase()["plans"]
    topics: list[str] = []
    release = asyncio.Event()

    async def publish(stored: Document) -> None:
        topics.append(stored["topic"])
        if stored["topic"] == "iop.session.missed":
            await release.wait()

    now = utc_now()
    alert = new_event(SafetyAlertRaised(episode_id="e2", alert_id="a1", assessment_id="x", level="immediate",
                                        reasons=["cssrs_high_risk"], raised_at=now), source="/test")  # fmt: skip
    relay = OutboxRelay([plans], publish, poll_seconds=3600, concurrency=1)  # type: ignore[list-item]
    async with Running(relay):
        assert await insert_aggregate(plans, {"_id": "e1"}, [missed("e1", 1)], relay=relay)  # type: ignore[arg-type]
        await until(lambda: topics == ["iop.session.missed"])
        assert await insert_aggregate(plans, {"_id": "e2"}, [alert], relay=relay)  # type: ignore[arg-type]
        await until(lambda: "iop.safety.alert_raised" in topics)
        release.set()
        await until(lambda: pending(plans, "e1") == 0 and pending(plans, "e2") == 0)


async def test_a_write_leaves_an_outbox_another_instance_holds_to_it_and_publishes_nothing_twice() -> None:
    """Another instance holds the outbox (its lease runs): a write here queues its event without claiming, so that
    the holder's event is not published by both; the write's event goes out with the next pass after the lease."""
    database = MemoryDatabase()
    plans = database["plans"]
    publish = Published()
    async with Running(OutboxRelay([plans], publish, poll_seconds=3600)) as running:  # type: ignore[list-item]
        await add(plans, "e1", 1)
        held = {"outbox_claim": "elsewhere", "outbox_lease_until": wall_clock() + timedelta(seconds=30)}
        plans.sync.update_one({"_id": "e1"}, {"$set": held})
        assert await update_aggregate(plans, "e1", 1, {"n": 2}, [missed("e1", 2)], relay=running.relay)  # type: ignore[arg-type]
        for _ in range(5):
            await asyncio.sleep(0)  # whatever the write started runs meanwhile
        stored = await plans.find_one({"_id": "e1"})
        assert stored is not None and (stored["outbox_claim"], stored["outbox_pending"], stored["version"]) == (
            "elsewhere", 2, 2)  # fmt: skip
        assert publish.totals == []  # the holder publishes its event; the write's waits behind it


async def test_a_relay_that_stops_removes_what_it_published_first() -> None:
    """Stopped while its removals wait for others to join them: they go at once (else what went out would go out
    again once its lease ended)."""
    plans = MemoryDatabase()["plans"]
    publish = Published()
    relay = OutboxRelay([plans], publish, poll_seconds=3600, removal_linger=3600)  # type: ignore[list-item]
    async with Running(relay):
        assert await insert_aggregate(plans, {"_id": "e1"}, [missed("e1", 1)], relay=relay)  # type: ignore[arg-type]
        await until(lambda: publish.totals == [1])
    assert pending(plans, "e1") == 0
