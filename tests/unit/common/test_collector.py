"""The cycle collector once a service has started: start-up's objects frozen, young collections less often, cycles
made later still freed."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from services.common.collector import YOUNG_AFTER, settle


@pytest.fixture
def settled() -> Iterator[None]:
    before = gc.get_threshold()
    settle()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_what_lives_at_the_start_is_frozen_and_young_collections_come_less_often(settled: None) -> None:
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == YOUNG_AFTER > 700


def test_a_cycle_made_afterwards_is_still_freed(settled: None) -> None:
    first, second = Node(), Node()
    first.other, second.other = second, first
    gone = weakref.ref(first)
    del first, second

    gc.collect()

    assert gone() is None
