"""What the consumer keeps of an event it sets aside, and says while a batch fails: one log line at the first
attempt and at every tenth, naming the event's position, the dependency that is down or the error's class (never
its message); and how long it waits between attempts."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import types
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
from aiokafka import ConsumerRecord
from faststream.middlewares import AckPolicy
from pymongo.errors import AutoReconnect, DuplicateKeyError

from services.common import consumer
from services.common.consumer import HANDLER_CONTEXT, EventHandlers, EventRejected, EventShelf, Subscription
from services.common.dependencies import DependencyDown
from services.common.priority import URGENT_FIRST
from services.common.settings import ServiceSettings
from stepwise_contract import SafetyAlertRaised, SessionMissed, new_event, to_kafka

POSITION = ("iop.session.missed", 3, 41)
NOW = datetime(2026, 12, 1, 20, 38, tzinfo=UTC)


def logged(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "services.common.consumer"]


def test_batches_are_retried_after_a_doubling_delay_capped_at_10_seconds() -> None:
    delays = [consumer.retry_delay(attempt) for attempt in range(1, 10)]
    assert delays == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0, 10.0])
    assert all(isinstance(delay, float) for delay in delays)


@pytest.mark.parametrize(
    ("attempt", "said"),
    [(1, True), (2, False), (9, False), (10, True), (11, False), (19, False), (20, True)],
)
def test_a_dependency_down_is_reported_at_the_first_attempt_and_every_tenth(
    attempt: int, said: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="services.common.consumer")
    consumer._report(DependencyDown("intake", "connection refused"), POSITION, attempt, 1)
    line = f"iop.session.missed[3]@41 waits: intake: connection refused (attempt {attempt}); retrying until it is back"
    assert logged(caplog) == ([(logging.WARNING, line)] if said else [])


def test_mongodb_down_is_named_by_the_errors_class_with_the_other_episodes_of_the_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="services.common.consumer")
    consumer._report(AutoReconnect("mongo.internal:27017: connection refused, patient Alex"), POSITION, 1, 3)
    line = ("iop.session.missed[3]@41 waits (and 2 more episodes of the batch): MongoDB: AutoReconnect (attempt 1); "
            "retrying until it is back")  # fmt: skip
    assert logged(caplog) == [(logging.WARNING, line)]


def raised() -> Exception:
    try:
        deeper()
    except KeyError as error:
        return error
    raise AssertionError("deeper raises")


def deeper() -> None:
    quoted = "patient Alex Example"  # what an error's message may quote
    raise KeyError(quoted)


def test_an_unforeseen_error_is_named_by_its_class_with_where_it_was_raised_at_the_first_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="services.common.consumer")
    error = raised()
    consumer._report(error, POSITION, 1, 2)
    [(level, message)] = logged(caplog)
    first = ("iop.session.missed[3]@41 failed with KeyError (attempt 1) (and 1 more episodes of the batch); its "
             "partition waits, retrying (readiness lists it); raised at:\n")  # fmt: skip
    assert level == logging.ERROR and message.startswith(first)
    frames = message.removeprefix(first)
    assert frames.startswith('  File "') and frames.count('  File "') == 2
    assert ", in raised\n    deeper()\n  File " in frames and frames.endswith("raise KeyError(quoted)\n")
    assert "Alex" not in message
    consumer._report(error, POSITION, 10, 1)
    assert logged(caplog)[1:] == [(logging.ERROR, "iop.session.missed[3]@41 failed with KeyError (attempt 10); its "
                                                  "partition waits, retrying (readiness lists it)")]  # fmt: skip


def test_a_rejection_says_its_reason() -> None:
    assert str(EventRejected("no_care_plan")) == "no_care_plan"
    assert consumer.set_aside_reason(EventRejected("no_care_plan")) == "rejected: no_care_plan"


class Collection:
    """What the shelf stores, refusing a second document with the same _id as MongoDB does."""

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}

    async def insert_one(self, document: dict[str, Any]) -> None:
        if document["_id"] in self.documents:
            raise DuplicateKeyError("E11000 duplicate key")
        self.documents[document["_id"]] = document


def shelved_record(key: bytes | None, headers: list[tuple[str, bytes]]) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic="iop.session.missed", partition=3, offset=41, timestamp=0, timestamp_type=0, key=key,
                          value=b'{"bad": "\xff"}', checksum=None, serialized_key_size=-1, serialized_value_size=-1,
                          headers=headers)  # fmt: skip


async def test_an_event_set_aside_is_kept_whole_even_when_it_is_not_text_and_logged_by_its_position(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer, "utc_now", lambda: NOW)
    caplog.set_level(logging.DEBUG, logger="services.common.consumer")
    collection = Collection()
    shelf = EventShelf(collection)  # type: ignore[arg-type]
    record = shelved_record(None, [("ce_id", b"id-7"), ("ce_type", b"\xffiop")])
    await shelf.set_aside(record, "malformed: value is not JSON", 2)
    assert collection.documents == {"iop.session.missed:3:41": {
        "_id": "iop.session.missed:3:41", "topic": "iop.session.missed", "partition": 3, "offset": 41, "key": "",
        "headers": {"ce_id": "id-7", "ce_type": "\ufffdiop"}, "value": '{"bad": "\ufffd"}',
        "reason": "malformed: value is not JSON", "attempts": 2, "set_aside_at": NOW,
    }}  # fmt: skip
    await shelf.set_aside(record, "malformed: value is not JSON", 3)  # redelivered: kept once, as first set aside
    assert collection.documents["iop.session.missed:3:41"]["attempts"] == 2
    await shelf.set_aside(shelved_record(b"e\xff1", []), "rejected: no_care_plan", 1)
    tombstone = dataclasses.replace(shelved_record(b"e2", []), offset=42, value=None)
    await shelf.set_aside(tombstone, "malformed: value is not JSON", 1)
    assert collection.documents["iop.session.missed:3:42"]["value"] == ""
    assert logged(caplog)[:3] == [
        (logging.WARNING, "set aside iop.session.missed[3]@41 (ce_id=id-7): malformed: value is not JSON"),
        (logging.WARNING, "set aside iop.session.missed[3]@41 (ce_id=id-7): malformed: value is not JSON"),
        (logging.WARNING, "set aside iop.session.missed[3]@41 (ce_id=?): rejected: no_care_plan"),
    ]


async def test_a_keyed_record_set_aside_keeps_its_key() -> None:
    collection = Collection()
    await EventShelf(collection).set_aside(shelved_record(b"e\xff1", []), "rejected: no_care_plan", 1)  # type: ignore[arg-type]
    assert collection.documents["iop.session.missed:3:41"]["key"] == "e\ufffd1"


def test_each_lane_reads_batches_commits_after_applying_and_keeps_its_partitions_across_restarts() -> None:
    settings = ServiceSettings(_env_file=None, kafka_group_instance_id="host-1", kafka_max_batch=50,
                               kafka_batch_wait_ms=100)  # fmt: skip
    routine = consumer.subscriber_options(settings, "stepwise.notifications")
    assert {key: value for key, value in routine.items() if key != "decoder"} == {
        "group_id": "stepwise.notifications", "group_instance_id": "host-1.stepwise.notifications", "batch": True,
        "max_records": 50, "batch_timeout_ms": 100, "fetch_max_wait_ms": 2000, "consumer_timeout_ms": 1000,
        "ack_policy": AckPolicy.NACK_ON_ERROR,
        "auto_offset_reset": "earliest", "include_in_schema": False,
    }  # fmt: skip
    urgent = consumer.subscriber_options(settings, "stepwise.notifications.urgent", urgent=True)
    assert (urgent["max_records"], urgent["batch_timeout_ms"]) == (16, 50)  # small batches, looked for soon
    few = settings.model_copy(update={"kafka_max_batch": 8, "kafka_batch_wait_ms": 20, "kafka_group_instance_id": ""})
    urgent = consumer.subscriber_options(few, "g.urgent", urgent=True)
    assert (urgent["max_records"], urgent["batch_timeout_ms"], urgent["group_instance_id"]) == (8, 20, None)


def test_readiness_lists_each_partition_held_by_an_event_that_keeps_failing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumer, "wall_clock", lambda: NOW)
    retrying = consumer.RetryingEvents()
    retrying.failed(("iop.session.missed", 1, 7), KeyError("x"))
    retrying.failed(("iop.session.missed", 1, 7), ValueError("x"))
    retrying.failed(("iop.alert.raised", 0, 3), KeyError("x"))
    assert retrying.problems() == {
        "iop.alert.raised[0]": "retrying: offset 3 failed with KeyError (attempt 1, since 2026-12-01T20:38:00+00:00); "
        "the partition's later events wait",
        "iop.session.missed[1]": "retrying: offset 7 failed with ValueError (attempt 2, since "
        "2026-12-01T20:38:00+00:00); the partition's later events wait",
    }  # fmt: skip
    retrying.failed(("iop.session.missed", 1, 9), KeyError("x"))  # another event of the partition: counted afresh
    assert "offset 9 failed with KeyError (attempt 1," in retrying.problems()["iop.session.missed[1]"]
    retrying.applied([shelved_record(None, [])])  # iop.session.missed[3]: not held
    assert len(retrying.problems()) == 2
    retrying.applied([at("iop.session.missed", 1, 8)])  # before the one that holds it
    assert len(retrying.problems()) == 2
    retrying.applied([at("iop.session.missed", 1, 9)])  # the one that held it
    assert list(retrying.problems()) == ["iop.alert.raised[0]"]


def at(topic: str, partition: int, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic=topic, partition=partition, offset=offset, timestamp=0, timestamp_type=0, key=None,
                          value=b"", checksum=None, serialized_key_size=-1, serialized_value_size=-1,
                          headers=[])  # fmt: skip


class Router:
    """Records the subscribers ``subscribe`` declares: their topics, options and what they call."""

    declared: ClassVar[list[tuple[tuple[str, ...], dict[str, Any], Any]]] = []

    def subscriber(self, *topics: str, **options: Any) -> Any:
        def declare(apply: Any) -> Any:
            Router.declared.append((topics, options, apply))
            return apply

        return declare


async def test_each_lane_is_subscribed_in_its_group_and_its_urgent_batches_hold_routine_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(consumer, "KafkaRouter", Router)
    Router.declared = []
    held: list[bool] = []

    async def handle(_event: Any, _context: Any) -> None:
        routine = asyncio.create_task(URGENT_FIRST.routine_turn())
        await asyncio.sleep(0.05)
        held.append(not routine.done())
        routine.cancel()

    settings = ServiceSettings(_env_file=None, kafka_group_instance_id="")
    handlers: EventHandlers = {
        SessionMissed: Subscription(handle, ""),
        SafetyAlertRaised: Subscription(handle, "", urgent=True),
    }
    consumer.subscribe(settings, "stepwise.notifications", handlers)
    by_topic = {topics: (options, apply) for topics, options, apply in Router.declared}
    urgent, urgent_apply = by_topic[("iop.safety.alert_raised",)]
    routine, routine_apply = by_topic[("iop.session.missed",)]
    assert (urgent["group_id"], urgent["max_records"]) == ("stepwise.notifications.urgent", 16)
    assert (routine["group_id"], routine["max_records"]) == ("stepwise.notifications", 50)
    for apply, data in ((urgent_apply, alert_raised()), (routine_apply, session_missed_now())):
        wire = to_kafka(new_event(data, source="/test"))
        record = ConsumerRecord(topic=wire.topic, partition=0, offset=0, timestamp=0, timestamp_type=0, key=wire.key,
                                value=wire.value, checksum=None, serialized_key_size=-1, serialized_value_size=-1,
                                headers=list(wire.headers))  # fmt: skip
        message = types.SimpleNamespace(raw_message=(record,), consumer=None)
        await apply(message, {"event_shelf": None, HANDLER_CONTEXT: None})
    assert held == [True, False]  # only the urgent lane's batch holds routine work back


def alert_raised() -> SafetyAlertRaised:
    return SafetyAlertRaised(episode_id="e1", alert_id="a1", assessment_id="x", level="immediate",
                             reasons=["cssrs_high_risk"], raised_at=NOW)  # fmt: skip


def session_missed_now() -> SessionMissed:
    return SessionMissed(episode_id="e1", session_id="s001", starts_at=NOW, detected="reported", recorded_at=NOW,
                         consecutive_misses=1, total_misses=1)  # fmt: skip
