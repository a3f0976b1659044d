"""The shared change path (services/common/change_path.py): load, decide, one version-checked write; decided again
when another writer won, no write for a decision that changes nothing or an event applied before."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from services.common.change_path import ATTEMPTS, CONFLICT, Conflict, New, Record, change, retry
from services.common.outbox import ConcurrentChange
from stepwise_contract import EventData

NOW = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Stored:
    count: int
    version: int
    applied: frozenset[str] = frozenset()


@dataclass
class Counter:
    """A record in memory: its writes, and writes that lose to another writer first (``losing``)."""

    stored: Stored | None = field(default_factory=lambda: Stored(count=0, version=1))
    losing: int = 0
    writes: list[tuple[int, tuple[Any, ...], str | None]] = field(default_factory=list)
    loads: int = 0

    async def load(self) -> Stored | None:
        self.loads += 1
        return self.stored

    async def save(self, stored: Stored, count: int, events: Sequence[EventData], applied: str | None) -> bool:
        if self.losing:  # another writer wins: the record moved on
            self.losing -= 1
            assert self.stored is not None
            self.stored = Stored(self.stored.count + 10, self.stored.version + 1, self.stored.applied)
            return False
        assert self.stored is not None and stored.version == self.stored.version
        keys = stored.applied | ({applied} if applied else set())
        self.stored = Stored(count, stored.version + 1, frozenset(keys))
        self.writes.append((count, tuple(events), applied))
        return True

    def record(self) -> Record[Stored, int]:
        return Record(load=self.load, state=lambda stored: stored.count, save=self.save,
                      applied=lambda stored: stored.applied)  # fmt: skip


@dataclass
class Adding:
    """A decision: add ``amount`` (with ``events``), answering what the count was; each (count, now) it saw."""

    amount: int
    events: Sequence[Any] = ()
    seen: list[tuple[int, datetime]] = field(default_factory=list)

    def __call__(self, count: int, now: datetime) -> tuple[int, Sequence[Any], str]:
        self.seen.append((count, now))
        return count + self.amount, self.events, f"was {count}"


def add(amount: int, events: Sequence[Any] = ()) -> Adding:
    return Adding(amount, events)


def nobody() -> str:
    raise LookupError("no record")


async def test_the_decisions_result_is_answered_and_its_change_written_once() -> None:
    counter = Counter()
    decide = add(2, ["an event"])
    assert await change(counter.record(), decide, nobody, clock=lambda: NOW) == "was 0"
    assert counter.writes == [(2, ("an event",), None)]
    assert decide.seen == [(0, NOW)]


async def test_a_write_that_lost_to_another_writer_decides_again_on_the_record_as_it_is_now() -> None:
    counter = Counter(losing=2)
    decide = add(1)
    assert await change(counter.record(), decide, nobody, clock=lambda: NOW) == "was 20"
    assert [count for count, _ in decide.seen] == [0, 10, 20]
    assert counter.writes == [(21, (), None)] and counter.loads == 3


async def test_a_change_that_keeps_losing_is_given_up() -> None:
    counter = Counter(losing=ATTEMPTS)
    with pytest.raises(ConcurrentChange, match="the record kept changing; try again") as gave_up:
        await change(counter.record(), add(1), nobody)
    assert str(gave_up.value) == "the record kept changing; try again"  # the 409's detail, as it stands
    assert counter.loads == ATTEMPTS and counter.writes == []


async def test_a_decision_that_changes_nothing_writes_nothing() -> None:
    counter = Counter()
    assert await change(counter.record(), add(0), nobody) == "was 0"
    assert counter.writes == [] and counter.stored == Stored(0, 1)


async def test_a_decision_with_events_is_written_even_if_the_record_stays_the_same() -> None:
    counter = Counter()
    await change(counter.record(), add(0, ["an event"]), nobody)
    assert counter.writes == [(0, ("an event",), None)]


async def test_an_event_applied_before_is_not_decided_again_nor_written() -> None:
    counter = Counter(stored=Stored(count=5, version=3, applied=frozenset({"/intake#e1"})))
    decide = add(1)
    assert await change(counter.record(), decide, nobody, applied="/intake#e1") is None
    assert counter.writes == [] and decide.seen == []


async def test_an_event_applied_is_written_with_its_key_even_when_it_changes_nothing() -> None:
    counter = Counter()
    assert await change(counter.record(), add(0), nobody, applied="/intake#e2") == "was 0"
    assert counter.writes == [(0, (), "/intake#e2")]
    assert await change(counter.record(), add(0), nobody, applied="/intake#e2") is None  # a redelivery
    assert len(counter.writes) == 1


async def test_no_record_is_answered_by_absent_and_nothing_is_decided() -> None:
    counter = Counter(stored=None)
    decide = add(1)
    assert await change(counter.record(), decide, lambda: "none") == "none"
    with pytest.raises(LookupError):
        await change(counter.record(), decide, nobody)
    assert decide.seen == [] and counter.writes == []


async def test_a_refusal_of_the_decision_is_raised_and_nothing_is_written() -> None:
    counter = Counter()

    def refuse(count: int, now: datetime) -> tuple[int, Sequence[EventData], str]:
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        await change(counter.record(), refuse, nobody)
    assert counter.writes == []


async def test_retry_answers_the_first_attempt_that_did_not_lose_even_a_none() -> None:
    outcomes: list[str | Conflict | None] = [CONFLICT, None, "later"]

    async def attempt() -> str | Conflict | None:
        return outcomes.pop(0)

    assert await retry(attempt) is None and outcomes == ["later"]


@dataclass
class Making(Counter):
    """A record its first change makes: inserts refused while one is stored."""

    inserts: int = 0

    async def create(self, count: int, events: Sequence[EventData], applied: str | None) -> bool:
        self.inserts += 1
        if self.stored is not None:
            return False
        self.stored = Stored(count, 1, frozenset({applied} if applied else set()))
        self.writes.append((count, tuple(events), applied))
        return True

    def record(self) -> Record[Stored, int]:
        return Record(load=self.load, state=lambda stored: stored.count, save=self.save,
                      applied=lambda stored: stored.applied, new=New(lambda: 0, self.create))  # fmt: skip


async def test_a_likely_new_record_is_inserted_with_no_load_first_and_one_that_exists_is_loaded() -> None:
    """Issue 31: one round trip for the change that usually makes the record; a redelivery is still found."""
    made = Making(stored=None)
    assert await change(made.record(), add(2), nobody, applied="/cp#e1", likely_new=True) == "was 0"
    assert (made.loads, made.inserts, made.writes) == (0, 1, [(2, (), "/cp#e1")])
    assert await change(made.record(), add(2), nobody, applied="/cp#e1", likely_new=True) is None  # redelivered
    assert (made.loads, made.inserts, len(made.writes)) == (1, 2, 1)
    assert await change(made.record(), add(3), nobody, applied="/cp#e2", likely_new=True) == "was 2"  # it exists
    assert made.writes[-1] == (5, (), "/cp#e2") and made.stored == Stored(5, 2, frozenset({"/cp#e1", "/cp#e2"}))
