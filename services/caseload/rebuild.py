"""Rebuilding the projection from the topics: replay every ``iop.*`` topic from its start into a fresh collection,
catch up, swap it in, catch up once more, drop the old one. Safe while the service runs (what it applies
meanwhile is in the topics, applied again here once: events are recognised by source#id).

    make caseload-rebuild            # python -m services.caseload.rebuild

The service runs it at start when the stored projection was built by another ``PROJECTION_VERSION``. It needs the
whole history: the ``iop.*`` topics are kept without a time limit (docs/deployment.md, "Topics and retention").
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pymongo.asynchronous.database import AsyncDatabase

from services.common.kafka import client_options
from services.common.mongo import Document, connect
from services.common.utc import utc_now
from stepwise_contract import EVENT_TYPES, CloudEvent, MalformedEvent, from_kafka

from .domain.model import PROJECTION_VERSION, EpisodeView
from .domain.projection import apply
from .settings import CaseloadSettings
from .store import META_KEPT_SECONDS, PROJECTION, CaseloadStore, collection_name, index_episodes, insert_views

log = logging.getLogger(__name__)
Offsets = dict[TopicPartition, int]


@dataclass
class Rebuilt:
    events: int
    episodes: int
    seconds: float
    collection: str


async def _consumer(settings: CaseloadSettings) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False,
                                group_id=None, **client_options(settings))  # fmt: skip
    await consumer.start()
    return consumer


async def partitions(settings: CaseloadSettings) -> list[TopicPartition]:
    """Every partition of the ``iop.*`` topics that exist (asked of the brokers: a plain consumer knows only the
    topics it was assigned)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, **client_options(settings))
    await admin.start()
    try:
        topics = sorted(set(EVENT_TYPES) & set(await admin.list_topics()))
        described = await admin.describe_topics(topics) if topics else []
    finally:
        await admin.close()
    return [TopicPartition(topic["topic"], p["partition"]) for topic in described for p in topic["partitions"]]


async def end_offsets(consumer: AIOKafkaConsumer, every: list[TopicPartition]) -> Offsets:
    ends: Offsets = await consumer.end_offsets(every)
    return ends


async def events_between(consumer: AIOKafkaConsumer, start: Offsets, end: Offsets) -> AsyncIterator[CloudEvent[Any]]:
    """The events of every partition from ``start`` (0 where missing) up to ``end``; a malformed record is skipped
    (the live consumer set it aside already)."""
    wanted = {tp: stop for tp, stop in end.items() if stop > start.get(tp, 0)}
    if not wanted:
        return
    consumer.assign(list(wanted))
    for tp in wanted:
        consumer.seek(tp, start.get(tp, 0))
    while wanted:
        batches = await consumer.getmany(*wanted, timeout_ms=1000, max_records=5000)
        for tp, records in batches.items():
            for record in records:
                if record.offset >= wanted.get(tp, 0):
                    break
                try:
                    yield from_kafka(record.headers, record.value or b"", EVENT_TYPES[tp.topic])
                except (MalformedEvent, ValueError):
                    log.warning("rebuild skipped a malformed record %s[%d]@%d", tp.topic, tp.partition, record.offset)
        for tp in list(wanted):
            if await consumer.position(tp) >= wanted[tp]:
                del wanted[tp]


async def rebuild(settings: CaseloadSettings, database: AsyncDatabase[Document]) -> Rebuilt:
    began = time.monotonic()
    store = CaseloadStore(database, settings.caseload_missed_in_a_row, ZoneInfo(settings.clinic_timezone))
    name = collection_name(PROJECTION_VERSION, utc_now().strftime("%Y%m%dT%H%M%S%f"))
    fresh = database[name]
    every = await partitions(settings)
    consumer = await _consumer(settings)
    try:
        first = await end_offsets(consumer, every)
        views: dict[str, EpisodeView] = {}
        count = 0
        async for event in events_between(consumer, {}, first):
            count += 1
            updated = apply(views.get(event.subject), event, in_place=True)
            if updated is not None:
                views[event.subject] = updated
        replayed = time.monotonic()
        await insert_views(fresh, store, list(views.values()))
        log.info("replayed %d events in %.2f s, stored %d episodes in %.2f s", count, replayed - began, len(views),
                 time.monotonic() - replayed)  # fmt: skip
        await index_episodes(fresh)
        second = await end_offsets(consumer, every)
        count += await _catch_up(consumer, store, fresh, first, second)
        old = await store.projection()
        await database["meta"].update_one(
            {"_id": PROJECTION},
            {"$set": {"collection": name, "version": PROJECTION_VERSION, "built_at": utc_now(), "events": count}},
            upsert=True,
        )
        await asyncio.sleep(2 * META_KEPT_SECONDS)  # every instance writes to the new collection from now on
        count += await _catch_up(consumer, store, fresh, second, await end_offsets(consumer, every))
    finally:
        await consumer.stop()
    if old and old["collection"] != name:
        await database.drop_collection(old["collection"])
    return Rebuilt(count, len(views), time.monotonic() - began, name)


async def _catch_up(consumer: AIOKafkaConsumer, store: CaseloadStore, into: Any, start: Offsets, end: Offsets) -> int:
    count = 0
    async for event in events_between(consumer, start, end):
        count += 1
        await store.apply(event, into)
    return count


async def main() -> int:
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = CaseloadSettings()
    client = connect(settings.mongodb_url.get_secret_value(), tls_ca_file=settings.mongodb_tls_ca_file)
    try:
        done = await rebuild(settings, client[settings.caseload_db])
    finally:
        await client.close()
    print(f"rebuilt {done.episodes} episodes from {done.events} events in {done.seconds:.2f} s ({done.collection})")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
