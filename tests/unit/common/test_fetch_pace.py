"""A lane's fetch wait: short from its first batch on, long again once it has been idle; and the place in
aiokafka's fetcher where the wait is kept, which an upgrade of aiokafka must not move unnoticed."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import pytest
from aiokafka.client import AIOKafkaClient
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.consumer.subscription_state import SubscriptionState

from services.common.fetch_pace import FETCH_WAIT, FetchPace


@dataclass
class FakeFetcher:
    _fetch_max_wait_ms: int = 2_000


@dataclass
class FakeConsumer:
    _fetcher: FakeFetcher


async def waited_for(fetcher: FakeFetcher, wanted: int) -> bool:
    for _ in range(200):
        if getattr(fetcher, FETCH_WAIT) == wanted:
            return True
        await asyncio.sleep(0.01)
    return False


async def test_a_batch_shortens_the_wait_until_the_lane_is_idle_again() -> None:
    fetcher = FakeFetcher()
    pace = FetchPace(busy_ms=100, idle_ms=2_000, idle_after_s=0.05)

    pace.batch_arrived(FakeConsumer(fetcher))

    assert fetcher._fetch_max_wait_ms == 100
    assert await waited_for(fetcher, 2_000)


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


async def test_aiokafka_keeps_the_fetch_wait_where_the_pace_sets_it() -> None:
    fetcher = Fetcher(AIOKafkaClient(bootstrap_servers="127.0.0.1:9"), SubscriptionState(), fetch_max_wait_ms=1_234)
    try:
        assert getattr(fetcher, FETCH_WAIT) == 1_234
    finally:
        await fetcher.close()
