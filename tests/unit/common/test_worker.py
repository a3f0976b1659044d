"""A polling worker idle: its waits between empty passes grow to ``idle_seconds``; a wake-up or work starts again."""

from __future__ import annotations

from services.common.worker import PollingWorker


class Worker(PollingWorker):
    def __init__(self, idle_seconds: float | None) -> None:
        super().__init__()
        self.poll_seconds, self.idle_seconds = 1.0, idle_seconds


def waits(worker: PollingWorker, woken: list[bool]) -> list[float]:
    waited: float | None = None
    found = []
    for wake in woken:
        waited = worker.next_wait(waited, wake)
        found.append(waited)
    return found


def test_empty_passes_wait_twice_as_long_each_time_up_to_the_idle_wait() -> None:
    assert waits(Worker(5.0), [False] * 5) == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_a_wake_up_brings_the_poll_interval_back() -> None:
    assert waits(Worker(5.0), [False, False, False, True, False]) == [1.0, 2.0, 4.0, 1.0, 2.0]


def test_without_an_idle_wait_every_wait_is_the_poll_interval() -> None:
    assert waits(Worker(None), [False] * 3) == [1.0, 1.0, 1.0]
    assert waits(Worker(0.5), [False] * 2) == [1.0, 1.0]  # never shorter than the poll interval
