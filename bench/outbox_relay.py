"""What the outbox guarantee costs: state change + event, N times, two ways, in one run.

- baseline: write the state document, then publish the event directly (no guarantee: a crash between
  the two loses the event);
- outbox:   write the state document with its event in one atomic update, then let OutboxRelay publish
  (what the services do).

Both use the same MongoDB, the same idempotent acks=all producer and the same event. Backends are
picked like `make test` (docs/development.md, "Backends"). Run: `python -m bench.outbox_relay`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from faststream.kafka import KafkaBroker
from pymongo import AsyncMongoClient

from services.common.kafka import ensure_topics
from services.common.outbox import OutboxRelay, insert_aggregate, stored_record
from services.common.settings import ServiceSettings
from stepwise_contract import SessionMissed, new_event
from tools.dev.devstack import backends

TOPIC = SessionMissed.event_type


def sample_event(episode_id: str) -> SessionMissed:
    now = datetime.now(UTC)
    return SessionMissed(episode_id=episode_id, session_id="s001", starts_at=now, detected="reported",
                         recorded_at=now, consecutive_misses=1, total_misses=1)  # fmt: skip


async def timed(label: str, n: int, run: Callable[[], Awaitable[list[float]]]) -> dict[str, float]:
    started = time.perf_counter()
    latencies = await run()
    elapsed = time.perf_counter() - started
    return {
        "label": label,  # type: ignore[dict-item]
        "events_per_s": n / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": statistics.quantiles(latencies, n=20)[18] * 1000,
    }


async def main(n: int) -> None:
    with backends() as started:
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(started.mongodb_url, tz_aware=True)
        database = client[f"bench_{uuid.uuid4().hex[:8]}"]
        # As the services do: the topic is created, never auto-created (Apache Kafka here has that off).
        await ensure_topics(ServiceSettings(kafka_bootstrap_servers=started.kafka_bootstrap_servers), [TOPIC])
        broker = KafkaBroker(started.kafka_bootstrap_servers, acks="all", enable_idempotence=True)
        publisher = broker.publisher(TOPIC)
        await broker.start()

        async def publish(record: dict[str, object]) -> None:
            await publisher.publish(
                str(record["value"]).encode(),
                key=str(record["key"]).encode(),
                headers={str(k): str(v) for k, v in record["headers"]},  # type: ignore[attr-defined]
            )

        async def baseline() -> list[float]:
            latencies = []
            for _ in range(n):
                began = time.perf_counter()
                episode_id = str(uuid.uuid4())
                await database["baseline"].insert_one({"_id": episode_id, "missed": 1})
                event = new_event(sample_event(episode_id), source="/bench")
                await publish(json.loads(stored_record(event)))  # the relay's own publish path
                latencies.append(time.perf_counter() - began)
            return latencies

        relay = OutboxRelay([database["outbox"]], publish, poll_seconds=0.05, lease_seconds=5)

        async def outbox() -> list[float]:
            latencies = []
            for _ in range(n):
                began = time.perf_counter()
                episode_id = str(uuid.uuid4())
                event = new_event(sample_event(episode_id), source="/bench")
                await insert_aggregate(database["outbox"], {"_id": episode_id, "missed": 1}, [event])
                while await relay.work_once():  # publish what is pending, as the running relay would
                    pass
                latencies.append(time.perf_counter() - began)
            return latencies

        await database["outbox"].create_index([("outbox_pending", 1), ("outbox_lease_until", 1)])
        results = [await timed("baseline (write, then publish)", n, baseline),
                   await timed("outbox (atomic write + relay)", n, outbox)]  # fmt: skip
        await broker.stop()
        await client.drop_database(database.name)
        await client.close()

    print(f"\n{n} state changes, each with one event, one at a time ({started.kind} backends)\n")
    print(f"{'':34}{'events/s':>10}{'p50 ms':>10}{'p95 ms':>10}")
    for row in results:
        print(f"{row['label']:34}{row['events_per_s']:>10.0f}{row['p50_ms']:>10.2f}{row['p95_ms']:>10.2f}")
    print(f"\noutbox / baseline throughput: {results[1]['events_per_s'] / results[0]['events_per_s']:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=1000, help="state changes per variant")
    asyncio.run(main(parser.parse_args().n))
