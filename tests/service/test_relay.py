"""The outbox relay: a write's events go out at once, in order; events queued while it publishes go too."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from services.common.mongo import Document
from services.common.outbox import OutboxRelay, insert_aggregate, update_aggregate
from services.common.utc import utc_now
from stepwise_contract import SessionMissed, new_event
from tests.service.memory_mongo import MemoryDatabase


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
    running.cancel()
    assert published == [1, 2]  # both, in order, with no pass (the poll is an hour away)
    stored = await collection.find_one({"_id": "e1"})
    assert stored is not None and stored["outbox"] == [] and stored["outbox_pending"] == 0
