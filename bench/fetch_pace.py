"""Busy partitions among idle ones: how long its records wait, with a fixed fetch wait and with ``FetchPace``.

    python -m bench.fetch_pace [--rounds 3] [--rate 100] [--work 0.12]

One consumer reads 12 topics of 3 partitions (a lane's topics: most idle), as a lane does (``getmany`` of at most
50 records, commit after each batch, ``--work`` seconds of applying per batch); one producer writes ``--rate``
records/s to one topic (its 3 partitions). Reported: each record's lag from its production to its batch, p50 / p95 /
max, for a fixed 2 s wait (``KAFKA_FETCH_MAX_WAIT_MS``' default), a fixed 500 ms wait (aiokafka's default), and the
2 s wait paced to 100 ms while batches come; the variants take turns, ``--rounds`` times each, on one broker.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.common.fetch_pace import FetchPace
from tools.dev.devstack import backends

TOPICS = [f"bench.fetch-pace.t{index}" for index in range(12)]
VARIANTS: dict[str, tuple[int, bool]] = {"fixed 2000 ms": (2_000, False), "fixed 500 ms": (500, False),
                                         "paced 2000/100 ms": (2_000, True)}  # fmt: skip


async def lags(servers: str, wait_ms: int, paced: bool, rate: float, seconds: float, work_s: float) -> list[float]:
    group = f"bench-{uuid.uuid4()}"
    consumer = AIOKafkaConsumer(*TOPICS, bootstrap_servers=servers, group_id=group, fetch_max_wait_ms=wait_ms,
                                auto_offset_reset="latest", enable_auto_commit=False)  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=servers, linger_ms=0)
    pace = FetchPace(busy_ms=100, idle_ms=wait_ms)
    await consumer.start()
    await producer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        for partition in consumer.assignment():
            await consumer.position(partition)  # the end of each partition: what this variant produces comes after
        wanted = int(rate * seconds)
        found: list[float] = []

        async def apply_batches() -> None:
            while len(found) < wanted:
                batch = await consumer.getmany(timeout_ms=100, max_records=50)
                if not batch:
                    continue
                if paced:
                    pace.batch_arrived(consumer)
                now = time.time()
                found.extend(now - float(record.value or b"0") for records in batch.values() for record in records)
                await asyncio.sleep(work_s)  # applying the batch: the store's round trips
                await consumer.commit()

        applying = asyncio.create_task(apply_batches())
        for index in range(wanted):
            await producer.send(TOPICS[0], key=b"episode-%d" % (index % 3), value=str(time.time()).encode())
            await asyncio.sleep(1 / rate)
        await asyncio.wait_for(applying, 120)
        return found
    finally:
        await producer.stop()
        await consumer.stop()


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(arguments: argparse.Namespace, say: Callable[[str], None] = print) -> None:
    with backends() as backend:
        servers = backend.kafka_bootstrap_servers
        admin = AIOKafkaAdminClient(bootstrap_servers=servers)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 3, 1) for topic in TOPICS])
        finally:
            await admin.close()
        found: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for _ in range(arguments.rounds):
            for name, (wait_ms, paced) in VARIANTS.items():
                found[name] += await lags(servers, wait_ms, paced, arguments.rate, arguments.seconds, arguments.work)
        say(f"three busy partitions of 36, {arguments.rate:g} records/s, {arguments.work:g} s per batch, "
            f"{arguments.rounds} rounds of {arguments.seconds:g} s: lag from production to batch (s)")  # fmt: skip
        say(f"  {'fetch wait':20}{'p50':>8}{'p95':>8}{'max':>8}")
        for name, values in found.items():
            say(f"  {name:20}{quantile(values, 0.5):8.3f}{quantile(values, 0.95):8.3f}{max(values):8.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=100, help="records/s to the busy topic")
    parser.add_argument("--seconds", type=float, default=8, help="how long each variant produces, per round")
    parser.add_argument("--work", type=float, default=0.12, help="seconds of applying per batch")
    asyncio.run(main(parser.parse_args()))
