"""Consuming in lanes: a batch is applied episode by episode, concurrently, each episode's records in order;
a bad record is set aside alone; any other failure stops that episode and fails the batch (it comes again).
And the gate that lets urgent work go first."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from prometheus_client import REGISTRY
from pymongo.errors import DocumentTooLarge, WriteError

from services.common import consumer, priority
from services.common.bulk import EPISODE_RECORDS
from services.common.consumer import (
    HANDLER_CONTEXT,
    EventBatch,
    EventHandlers,
    EventRejected,
    Subscription,
    lane_group,
    lanes,
)
from services.common.dependencies import DependencyDown
from services.common.priority import UrgentFirst
from services.common.store_errors import RecordTooLarge
from stepwise_contract import SafetyAlertRaised, SessionMissed, new_event, to_kafka


@dataclass
class Shelf:
    shelved: list[tuple[int, str]] = field(default_factory=list)

    async def set_aside(self, record: ConsumerRecord[bytes, bytes], reason: str, _attempts: int) -> None:
        self.shelved.append((record.offset, reason))


@dataclass
class Context:
    values: dict[str, Any]

    def get(self, name: str) -> Any:
        return self.values[name]


@dataclass
class Message:
    raw_message: tuple[ConsumerRecord[bytes, bytes], ...]


def record(offset: int, episode_id: str, value: bytes | None = None) -> ConsumerRecord[bytes, bytes]:
    wire = to_kafka(new_event(session_missed(episode_id), source="/test"))
    return ConsumerRecord(topic=wire.topic, partition=0, offset=offset, timestamp=0, timestamp_type=0,
                          key=episode_id.encode(), value=value if value is not None else wire.value, checksum=None,
                          serialized_key_size=-1, serialized_value_size=-1, headers=list(wire.headers))  # fmt: skip


def session_missed(episode_id: str) -> SessionMissed:
    now = datetime.now(UTC)
    return SessionMissed(episode_id=episode_id, session_id="s001", starts_at=now - timedelta(hours=4),
                         detected="reported", recorded_at=now, consecutive_misses=1, total_misses=1)  # fmt: skip


@pytest.fixture(autouse=True)
def no_retry_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumer, "retry_delay", lambda _attempt: 0.0)


async def test_episodes_go_concurrently_each_in_order_and_a_failure_stops_only_its_episode() -> None:
    applied: list[tuple[str, int]] = []
    running: set[str] = set()
    overlapped = False

    async def handle(event: Any, seen: list[tuple[str, int]]) -> None:
        nonlocal overlapped
        running.add(event.subject)
        overlapped = overlapped or len(running) > 1
        await asyncio.sleep(0)
        if event.data.total_misses == 1 and event.subject == "b":
            running.discard(event.subject)
            raise ConnectionError("the store is down")
        seen.append((event.subject, event.data.total_misses))
        running.discard(event.subject)

    def missed(offset: int, episode_id: str, total: int) -> ConsumerRecord[bytes, bytes]:
        data = session_missed(episode_id).model_copy(update={"total_misses": total})
        wire = to_kafka(new_event(data, source="/test"))
        return ConsumerRecord(topic=wire.topic, partition=0, offset=offset, timestamp=0, timestamp_type=0,
                              key=episode_id.encode(), value=wire.value, checksum=None, serialized_key_size=-1,
                              serialized_value_size=-1, headers=list(wire.headers))  # fmt: skip

    batch = EventBatch({SessionMissed: Subscription(handle, "")})
    records = (missed(0, "a", 1), missed(1, "b", 1), missed(2, "a", 2), missed(3, "b", 2))
    context = Context({"event_shelf": Shelf(), HANDLER_CONTEXT: applied})
    with pytest.raises(ConnectionError):  # the batch fails: NACK_ON_ERROR rewinds it, and it comes again
        await batch(Message(records), context)  # type: ignore[arg-type]
    assert applied == [("a", 1), ("a", 2)]  # a's records in order; b's second waits for its first
    assert overlapped  # the two episodes ran at the same time


async def test_a_bad_record_is_set_aside_alone_and_the_batch_goes_on() -> None:
    applied: list[str] = []

    async def handle(event: Any, seen: list[str]) -> None:
        if event.subject == "rejected":
            raise EventRejected("unknown_session")
        seen.append(event.subject)

    shelf = Shelf()
    batch = EventBatch({SessionMissed: Subscription(handle, "")})
    records = (record(0, "a", b"not json"), record(1, "a"), record(2, "rejected"), record(3, "b"))
    await batch(Message(records), Context({"event_shelf": shelf, HANDLER_CONTEXT: applied}))  # type: ignore[arg-type]
    assert applied == ["a", "b"]
    assert [offset for offset, _ in shelf.shelved] == [0, 2]
    assert shelf.shelved[0][1].startswith("malformed") and shelf.shelved[1][1] == "rejected: unknown_session"


async def test_an_unforeseen_error_holds_its_partition_in_sight_until_the_event_is_applied(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not an outage (readiness names a dependency that is down) but a bug or an answer no one expected: listed from
    its first attempt, logged with topic, partition and error class, never the error's message (it may quote the
    event), and no longer listed once the event is applied."""
    failures = [KeyError("Testpatient Zq-b4f1"), KeyError("Testpatient Zq-b4f1")]

    async def handle(_event: Any, _context: Any) -> None:
        if failures:
            raise failures.pop(0)

    batch = EventBatch({SessionMissed: Subscription(handle, "")})
    context = Context({"event_shelf": Shelf(), HANDLER_CONTEXT: None})
    for attempt in (1, 2):
        with caplog.at_level(logging.INFO), pytest.raises(KeyError):
            await batch(Message((record(7, "a"), record(8, "a"))), context)  # type: ignore[arg-type]
        [(held, problem)] = batch.retrying.problems().items()
        assert held == "iop.session.missed[0]"
        assert problem.startswith(f"retrying: offset 7 failed with KeyError (attempt {attempt}, since ")
    [logged] = [entry for entry in caplog.records if entry.levelno == logging.ERROR]
    assert "iop.session.missed[0]@7 failed with KeyError (attempt 1)" in logged.getMessage()
    assert "Zq-b4f1" not in caplog.text and logged.exc_info is None
    await batch(Message((record(7, "a"), record(8, "a"))), context)  # type: ignore[arg-type]
    assert batch.retrying.problems() == {}


async def test_an_outage_is_not_listed_as_an_event_held_by_an_error() -> None:
    """A dependency that is down is readiness' own business (it names the dependency, and fails)."""

    async def handle(_event: Any, _context: Any) -> None:
        raise DependencyDown("intake", "unreachable (ConnectError)")

    batch = EventBatch({SessionMissed: Subscription(handle, "")})
    with pytest.raises(DependencyDown):
        await batch(Message((record(0, "a"),)), Context({"event_shelf": Shelf(), HANDLER_CONTEXT: None}))  # type: ignore[arg-type]
    assert batch.retrying.problems() == {}


def test_lanes_split_the_handlers_and_each_has_its_group() -> None:
    async def handle(_event: Any, _context: Any) -> None:
        return None

    handlers: EventHandlers = {
        SessionMissed: Subscription(handle, ""),
        SafetyAlertRaised: Subscription(handle, "", urgent=True),
    }
    assert {urgent: list(lane) for urgent, lane in lanes(handlers).items()} == {
        True: [SafetyAlertRaised],
        False: [SessionMissed],
    }
    assert lanes({SessionMissed: handlers[SessionMissed]}).keys() == {False}
    assert (lane_group("stepwise.notifications", True), lane_group("stepwise.notifications", False)) == (
        "stepwise.notifications.urgent", "stepwise.notifications"
    )  # fmt: skip


async def test_routine_work_waits_while_urgent_work_runs() -> None:
    gate = UrgentFirst()
    order: list[str] = []

    async def routine() -> None:
        await gate.routine_turn()
        order.append("routine")

    with gate.urgent():
        waiting = asyncio.create_task(routine())
        await asyncio.sleep(0.01)
        order.append("urgent done")
    await waiting
    assert order == ["urgent done", "routine"]
    await gate.routine_turn()  # nothing urgent: at once


async def test_a_stuck_urgent_unit_pauses_routine_work_only_so_long(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(priority, "LONGEST_PAUSE", 0.01)
    gate = UrgentFirst()
    with gate.urgent():
        await asyncio.wait_for(gate.routine_turn(), 1)  # returns after LONGEST_PAUSE, though urgent work runs


async def test_an_urgent_batch_holds_routine_work_back_while_it_runs() -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def urgent_handle(_event: Any, _context: Any) -> None:
        started.set()
        await release.wait()

    urgent = EventBatch({SessionMissed: Subscription(urgent_handle, "", urgent=True)}, urgent=True)
    context = Context({"event_shelf": Shelf(), HANDLER_CONTEXT: None})
    running = asyncio.create_task(urgent(Message((record(0, "a"),)), context))  # type: ignore[arg-type]
    await started.wait()
    routine = asyncio.create_task(priority.URGENT_FIRST.routine_turn())
    await asyncio.sleep(0.1)  # far less than the longest pause (2 s)
    assert not routine.done()  # routine work waits for the urgent batch
    release.set()
    await running
    await asyncio.wait_for(routine, 1)


async def test_each_retry_of_a_batch_waits_by_its_attempt_counted_afresh_once_the_event_went_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[int] = []

    def retry_delay(attempt: int) -> float:
        waits.append(attempt)
        return 0.0

    monkeypatch.setattr(consumer, "retry_delay", retry_delay)
    failing = [True, True, False, True]

    async def handle(_event: Any, _context: Any) -> None:
        if failing.pop(0):
            raise ConnectionError("the store is down")

    batch = EventBatch({SessionMissed: Subscription(handle, "")})
    context = Context({"event_shelf": Shelf(), HANDLER_CONTEXT: None})
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await batch(Message((record(7, "a"),)), context)  # type: ignore[arg-type]
    await batch(Message((record(7, "a"),)), context)  # type: ignore[arg-type]  # applied
    with pytest.raises(ConnectionError):  # the same position failing later (a replay, say) starts again at 1
        await batch(Message((record(7, "a"),)), context)  # type: ignore[arg-type]
    assert waits == [1, 2, 1]


async def test_a_routine_batch_waits_while_urgent_work_runs() -> None:
    applied: list[str] = []

    async def handle(event: Any, seen: list[str]) -> None:
        seen.append(event.subject)

    batch = EventBatch({SessionMissed: Subscription(handle, "")})
    context = Context({"event_shelf": Shelf(), HANDLER_CONTEXT: applied})
    with priority.URGENT_FIRST.urgent():
        routine = asyncio.create_task(batch(Message((record(0, "a"),)), context))  # type: ignore[arg-type]
        await asyncio.sleep(0.1)  # far less than the longest pause (2 s)
        assert applied == []
    await asyncio.wait_for(routine, 1)
    assert applied == ["a"]


@dataclass
class CountingShelf:
    shelved: list[tuple[int, str, int]] = field(default_factory=list)

    async def set_aside(self, record: ConsumerRecord[bytes, bytes], reason: str, attempts: int) -> None:
        self.shelved.append((record.offset, reason, attempts))


async def test_an_event_set_aside_says_on_which_attempt_and_a_record_without_a_value_is_malformed() -> None:
    outcomes: list[Exception] = [ConnectionError("the store is down"), EventRejected("unknown_session")]

    async def handle(event: Any, _context: Any) -> None:
        if event.subject == "a":
            raise outcomes.pop(0)

    shelf = CountingShelf()
    batch = EventBatch({SessionMissed: Subscription(handle, "")})
    context = Context({"event_shelf": shelf, HANDLER_CONTEXT: None})
    with pytest.raises(ConnectionError):
        await batch(Message((record(4, "a"),)), context)  # type: ignore[arg-type]
    await batch(Message((record(4, "a"),)), context)  # type: ignore[arg-type]  # its second attempt: rejected
    tombstone = dataclasses.replace(record(5, "b"), value=None)
    await batch(Message((tombstone,)), context)  # type: ignore[arg-type]
    assert shelf.shelved == [
        (4, "rejected: unknown_session", 2),
        (5, "malformed: (root): Invalid JSON: EOF while parsing a value at line 1 column 0", 1),
    ]


async def test_an_event_that_would_take_its_record_past_the_size_limit_is_set_aside_on_its_attempt() -> None:
    """Permanent for that record: set aside with the record it names (or the limit alone), the partition goes on."""
    outcomes: dict[str, list[Exception]] = {
        "a": [ConnectionError("the store is down"), DocumentTooLarge("BSON document too large (17000000 bytes)")],
        "b": [WriteError("Resulting document after update is larger than 16777216", 17419)],
        "c": [RecordTooLarge("care plan")],
    }

    async def handle(event: Any, _context: Any) -> None:
        raise outcomes[event.subject].pop(0)

    shelf = CountingShelf()
    batch = EventBatch({SessionMissed: Subscription(handle, "")})
    context = Context({"event_shelf": shelf, HANDLER_CONTEXT: None})
    with pytest.raises(ConnectionError):
        await batch(Message((record(4, "a"),)), context)  # type: ignore[arg-type]
    await batch(Message((record(4, "a"),)), context)  # type: ignore[arg-type]  # its second attempt
    await batch(Message((record(5, "b"), record(6, "c"))), context)  # type: ignore[arg-type]
    assert shelf.shelved == [
        (4, "rejected: the record is at its size limit", 2),
        (5, "rejected: the record is at its size limit", 1),
        (6, "rejected: the record is at its size limit: the care plan record cannot grow past the store's 16 MB "
            "document limit; nothing was changed", 1),
    ]  # fmt: skip


def collecting(stored: list[tuple[str, list[int]]], fail: list[Exception]) -> Any:
    """A handler that leaves its effect to the end of its episode's records (a read side): each episode's events
    stored together, as ``store`` saw them, once; ``fail`` holds what the next stores raise."""

    async def store(events: list[Any]) -> None:
        if fail:
            raise fail.pop(0)
        stored.append((events[0].subject, [event.data.total_misses for event in events]))

    async def handle(event: Any, _context: Any) -> None:
        episode = EPISODE_RECORDS.get()
        if episode is None:
            await store([event])
        else:
            episode.collect(store, event)

    return handle


def missed(offset: int, episode_id: str, total: int) -> ConsumerRecord[bytes, bytes]:
    data = session_missed(episode_id).model_copy(update={"total_misses": total})
    return dataclasses.replace(record(offset, episode_id), value=to_kafka(new_event(data, source="/test")).value)


def applied_count() -> float:
    """``stepwise_events_applied`` of the session-missed topic so far."""
    return REGISTRY.get_sample_value("stepwise_events_applied_total", {"topic": SessionMissed.event_type}) or 0.0


async def test_what_handlers_collect_is_stored_once_per_episode_before_the_batch_ends() -> None:
    stored: list[tuple[str, list[int]]] = []
    batch = EventBatch({SessionMissed: Subscription(collecting(stored, []), "")})
    records = (missed(0, "a", 1), missed(1, "b", 1), missed(2, "a", 2), missed(3, "a", 3))
    before = applied_count()
    await batch(Message(records), Context({"event_shelf": Shelf(), HANDLER_CONTEXT: None}))  # type: ignore[arg-type]
    assert sorted(stored) == [("a", [1, 2, 3]), ("b", [1])]
    assert applied_count() - before == 4


async def test_a_failure_to_store_what_was_collected_fails_the_batch_at_the_episodes_first_record() -> None:
    stored: list[tuple[str, list[int]]] = []
    retrying = consumer.RetryingEvents()
    batch = EventBatch({SessionMissed: Subscription(collecting(stored, [ValueError("unforeseen")]), "")},
                       retrying=retrying)  # fmt: skip
    records = (missed(7, "a", 1), missed(8, "a", 2))
    context = Context({"event_shelf": Shelf(), HANDLER_CONTEXT: None})
    before = applied_count()
    with pytest.raises(ValueError):  # nothing of the episode is stored: the batch comes again
        await batch(Message(records), context)  # type: ignore[arg-type]
    assert stored == []
    assert applied_count() == before  # nothing counted as applied that was not stored
    assert [held.split(" failed")[0] for held in retrying.problems().values()] == ["retrying: offset 7"]
    await batch(Message(records), context)  # type: ignore[arg-type]
    assert stored == [("a", [1, 2])]


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (DocumentTooLarge("BSON document too large (17000000 bytes)"), "rejected: the record is at its size limit"),
        (EventRejected("unknown_session"), "rejected: unknown_session"),
    ],
    ids=["too large to store at once", "an event found wrong when stored"],
)
async def test_what_cannot_be_stored_together_is_applied_one_by_one_and_only_the_event_at_fault_set_aside(
    fault: Exception, reason: str
) -> None:
    """The episode's collected write fails for one event (too large, or rejected by the read side's rules, which
    apply the events when they are stored): the records are applied again one at a time, the others' effects stored
    each alone, and only that event set aside."""
    stored: list[tuple[str, list[int]]] = []
    handle = collecting(stored, [fault])

    async def second_at_fault(event: Any, context: Any) -> None:
        if EPISODE_RECORDS.get() is None and event.data.total_misses == 2:
            raise fault
        await handle(event, context)

    shelf = CountingShelf()
    batch = EventBatch({SessionMissed: Subscription(second_at_fault, "")})
    records = (missed(4, "a", 1), missed(5, "a", 2), missed(6, "a", 3))
    before = applied_count()
    await batch(Message(records), Context({"event_shelf": shelf, HANDLER_CONTEXT: None}))  # type: ignore[arg-type]
    assert stored == [("a", [1]), ("a", [3])]
    assert shelf.shelved == [(5, reason, 1)]
    assert applied_count() - before == 2  # each counted once, as its effect was stored; the one set aside not
