"""The fault suite's own rules (tests/faults/suite.py): its kills replay from a seed, and it counts duplicates only once
they could have shown (a lease after the last welcome, nothing in flight), waiting on that, not a fixed time."""

from __future__ import annotations

import random

from tests.faults import suite as faults

SERVICES = ("intake", "care_plan", "notifications")


def test_a_seed_draws_the_same_kills_again() -> None:
    plans = {seed: faults.kill_plan(random.Random(seed), 6, SERVICES) for seed in range(20)}
    assert all(faults.kill_plan(random.Random(seed), 6, reversed(SERVICES)) == plan for seed, plan in plans.items())
    assert len({tuple(plan) for plan in plans.values()}) == len(plans)  # another seed, other kills
    for plan in plans.values():
        assert len(plan) == 6 and all(0.5 <= wait <= 2.5 and name in SERVICES for wait, name in plan)


def test_the_seed_is_an_option() -> None:
    assert faults.options(["--quick", "--seed", "1234"]).seed == 1234
    assert faults.options([]).seed is None  # a run draws one and prints it


class Looks:
    """A fake clock and what is in flight at each look; every look takes two seconds."""

    def __init__(self, in_flight: list[list[str]]) -> None:
        self.now = 100.0
        self.answers = in_flight
        self.looks: list[float] = []

    def clock(self) -> float:
        return self.now

    async def in_flight(self) -> list[str]:
        self.looks.append(self.now)
        self.now += 2.0
        return self.answers.pop(0) if self.answers else []


async def test_duplicates_are_counted_a_lease_after_the_last_welcome_once_nothing_is_in_flight() -> None:
    looks = Looks([["a welcome not recorded as sent"]] * 3)
    assert await faults.settled(looks.in_flight, 100.0, lease=10.0, clock=looks.clock, poll=0) == []
    assert looks.looks == [100.0, 102.0, 104.0, 106.0, 108.0]  # nothing in flight from 106 on, a lease at 110
    assert looks.now >= 100.0 + 10.0

    in_flight_longer = Looks([["events in care_plan's plans outbox"]] * 8)
    assert await faults.settled(in_flight_longer.in_flight, 100.0, lease=10.0, clock=in_flight_longer.clock,
                                poll=0) == []  # fmt: skip
    assert in_flight_longer.now == 118.0  # waited for the condition, well past the lease


async def test_what_is_still_in_flight_at_the_limit_is_reported() -> None:
    looks = Looks([["iop.care_level.assigned not all committed by stepwise.notifications"]] * 100)
    left = await faults.settled(looks.in_flight, 100.0, lease=10.0, limit=30.0, clock=looks.clock, poll=0)
    assert left == ["iop.care_level.assigned not all committed by stepwise.notifications"]
