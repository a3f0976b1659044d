"""A lane's fetch wait: short from its first batch on, long again once it has been idle; the place in aiokafka's
fetcher where the wait is kept, which an upgrade of aiokafka must not move unnoticed; and a lane's wait for its records
(until they come, in place of FastStream's batch wait then sleep)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import pytest
from aiokafka.client import AIOKafkaClient
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.consumer.subscription_state import SubscriptionState

from services.common.consumer import EventHandlers, Subscription, subscribe
from services.common.fetch_pace import FETCH_MIN_BYTES, FETCH_WAIT, NEXT_BATCH, FetchPace, batch_bytes
from services.common.settings import ServiceSettings
from stepwise_contract import AssessmentCompleted, SafetyAlertRaised


@dataclass
class FakeFetcher:
    _fetch_max_wait_ms: int = 2_000
    _fetch_min_bytes: int = 1


@dataclass
class FakeConsumer:
    _fetcher: FakeFetcher


async def waited_for(fetcher: FakeFetcher, wanted: int) -> bool:
    for _ in range(200):
        if getattr(fetcher, FETCH_WAIT) == wanted and getattr(fetcher, FETCH_MIN_BYTES) == 1:
            return True
        await asyncio.sleep(0.01)
    return False


async def test_a_batch_shortens_the_wait_until_the_lane_is_idle_again() -> None:
    fetcher = FakeFetcher()
    pace = FetchPace(busy_ms=100, idle_ms=2_000, idle_after_s=0.05, busy_min_bytes=batch_bytes(50))

    pace.batch_arrived(FakeConsumer(fetcher))

    assert (fetcher._fetch_max_wait_ms, fetcher._fetch_min_bytes) == (100, batch_bytes(50))
    assert await waited_for(fetcher, 2_000)  # idle again: the first record is answered as it arrives


async def test_each_batch_puts_off_the_return_to_the_long_wait() -> None:
    fetcher = FakeFetcher()
    pace = FetchPace(busy_ms=100, idle_ms=2_000, idle_after_s=3_600)
    pace.batch_arrived(FakeConsumer(fetcher))
    fetcher._fetch_max_wait_ms = 7  # anything the first batch's timer could have set

    pace.batch_arrived(FakeConsumer(fetcher))

    assert fetcher._fetch_max_wait_ms == 100


def test_the_short_wait_is_never_longer_than_the_long_one() -> None:
    assert FetchPace(busy_ms=500, idle_ms=200).busy_ms == 200


async def test_a_client_without_the_wait_keeps_the_configured_one_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pace = FetchPace(busy_ms=100, idle_ms=2_000)

    with caplog.at_level(logging.WARNING, logger="services.common.fetch_pace"):
        pace.batch_arrived(object())
        pace.batch_arrived(object())

    assert [r.getMessage() for r in caplog.records if "KAFKA_FETCH_MAX_WAIT_MS" in r.getMessage()] != []
    assert len(caplog.records) == 1


async def test_aiokafka_keeps_the_fetch_wait_and_size_where_the_pace_sets_them() -> None:
    client = AIOKafkaClient(bootstrap_servers="127.0.0.1:9")
    fetcher = Fetcher(client, SubscriptionState(), fetch_max_wait_ms=1_234, fetch_min_bytes=567)
    try:
        assert (getattr(fetcher, FETCH_WAIT), getattr(fetcher, FETCH_MIN_BYTES)) == (1_234, 567)
    finally:
        await fetcher.close()


@dataclass
class FakeLaneConsumer:
    batches: dict[str, list[str]]
    asked: list[tuple[int, int]]

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[str, list[str]]:
        self.asked.append((timeout_ms, max_records))
        return self.batches


class FakeSubscriber:
    async def get_msg(self, consumer: object) -> tuple[object, ...]:
        raise AssertionError("FastStream's own wait (the batch wait, then as long asleep when nothing came)")


async def test_a_lane_waits_for_its_records_up_to_the_idle_wait_and_takes_every_partitions() -> None:
    subscriber, consumer = FakeSubscriber(), FakeLaneConsumer({"a-0": ["1", "2"], "b-1": ["3"]}, [])

    FetchPace(busy_ms=50, idle_ms=2_000).wait_for_records(subscriber, max_records=16)

    assert await subscriber.get_msg(consumer) == ("1", "2", "3")
    assert consumer.asked == [(2_000, 16)]


async def test_a_lane_that_waited_in_vain_hands_over_nothing() -> None:
    subscriber = FakeSubscriber()
    FetchPace(busy_ms=50, idle_ms=2_000).wait_for_records(subscriber, max_records=16)

    assert await subscriber.get_msg(FakeLaneConsumer({}, [])) == ()


async def unused(event: object, context: object) -> None:
    raise AssertionError("not called: the lanes are only built")


def test_every_lane_faststream_runs_waits_for_its_records() -> None:
    settings = ServiceSettings(kafka_bootstrap_servers="127.0.0.1:9")
    handlers: EventHandlers = {
        SafetyAlertRaised: Subscription(unused, "alerts", urgent=True),
        AssessmentCompleted: Subscription(unused, "assessments"),
    }

    router = subscribe(settings, "stepwise.test", handlers)

    assert len(router.subscribers) == 2
    waits = [getattr(subscriber, NEXT_BATCH).__qualname__ for subscriber in router.subscribers]
    assert all(wait.startswith("FetchPace.") for wait in waits)


def test_a_subscriber_without_the_call_keeps_its_own_wait_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="services.common.fetch_pace"):
        FetchPace(busy_ms=50, idle_ms=2_000).wait_for_records(object(), max_records=16)

    assert "was FastStream upgraded?" in caplog.text


async def test_an_urgent_lane_asks_for_one_byte_busy_or_idle() -> None:
    fetcher = FakeFetcher()

    FetchPace(busy_ms=50, idle_ms=2_000).batch_arrived(FakeConsumer(fetcher))

    assert (fetcher._fetch_max_wait_ms, fetcher._fetch_min_bytes) == (50, 1)
