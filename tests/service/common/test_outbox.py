"""The outbox's promises, each with a test that fails when it breaks: an aggregate's events go out in the order
they were queued; a publish that fails leaves the rest queued for the next pass, nothing lost and nothing sent
twice; of two writers on one aggregate one wins and the other loads again and decides again."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from pymongo.errors import BulkWriteError, WriteError

from services.common.auth import Principal, Role
from services.common.change_path import CONFLICT, Conflict, retry
from services.common.kafka import relay_publish
from services.common.mongo import Document
from services.common.outbox import (
    EPOCH,
    ConcurrentChange,
    OutboxRelay,
    insert_aggregate,
    inserted_new_aggregates,
    new_aggregate,
    no_relay,
    stored_record,
    update_aggregate,
)
from services.common.store_errors import RecordTooLarge
from services.common.utc import utc_now, wall_clock
from services.intake import changes
from services.intake.domain.episode import AssessmentRequest, ConsentTerms
from services.intake.domain.instruments import CssrsAnswers, score_cssrs, score_phq9
from services.intake.domain.measures import load_measures_policy
from services.intake.domain.model import Recipient
from services.intake.domain.placement import load_placement_policy
from services.intake.store import EPISODES, IntakeStore
from stepwise_contract import DimensionRatings, SessionMissed, new_event, to_kafka
from tests.service.memory_mongo import MemoryCollection, MemoryDatabase

STAFF = Principal(Role.INTAKE_STAFF, "staff-token-id")
IOP = DimensionRatings(withdrawal=1, biomedical=0, emotional=2, readiness=2, relapse=2, environment=1)


def missed(episode_id: str, total: int) -> Any:
    """An event told apart from its neighbours by ``total``."""
    now = utc_now()
    data = SessionMissed(episode_id=episode_id, session_id="s001", starts_at=now, detected="reported",
                         recorded_at=now, consecutive_misses=total, total_misses=total)  # fmt: skip
    return new_event(data, source="/test")


class Publisher:
    """What the relay hands to Kafka, in the order it does; the calls numbered in ``failing`` raise (a broker gone)."""

    def __init__(self, failing: frozenset[int] = frozenset()) -> None:
        self.calls: list[Document] = []
        self.failing = failing

    async def __call__(self, record: Document) -> None:
        self.calls.append(record)
        if len(self.calls) in self.failing:
            raise KafkaConnectionError("the broker went away")

    def published(self) -> list[int]:
        """``total_misses`` of each event that went out (a failed call did not)."""
        return [json.loads(r["value"])["total_misses"] for n, r in enumerate(self.calls, 1) if n not in self.failing]


async def stored(collection: MemoryCollection, aggregate_id: str) -> Document:
    document = await collection.find_one({"_id": aggregate_id})
    assert document is not None
    return document


def totals(document: Document) -> list[int]:
    return [json.loads(json.loads(record)["value"])["total_misses"] for record in document["outbox"]]


async def test_an_aggregates_events_go_out_in_the_order_they_were_queued() -> None:
    plans = MemoryDatabase()["plans"]
    assert await insert_aggregate(plans, {"_id": "e1"}, [missed("e1", n) for n in (1, 2, 3)])  # type: ignore[arg-type]
    assert await update_aggregate(plans, "e1", 1, {"n": 2}, [missed("e1", n) for n in (4, 5)])  # type: ignore[arg-type]
    publish = Publisher()
    relay = OutboxRelay([plans], publish)  # type: ignore[list-item]
    assert await relay.work_once() == 5
    assert publish.published() == [1, 2, 3, 4, 5]  # one claim, five events: in the order they were queued
    assert (await stored(plans, "e1"))["outbox"] == []


async def test_a_safety_alert_goes_out_before_the_assessment_it_comes_from(database: MemoryDatabase) -> None:
    """intake's assessment with an alert queues two events for two topics; the relay publishes them in order."""
    store = IntakeStore(database, wake_relay=no_relay)  # type: ignore[arg-type]
    patient_id = await changes.register_patient(
        store, STAFF, {"name": "Alex Example", "date_of_birth": "1990-04-01"}, "p1"
    )
    episode = await changes.open_episode(store, patient_id, "adult", "e1")
    high_risk = score_cssrs(CssrsAnswers(q1=True, q2=True, q3=True, q4=True, q5=False, q6=False))
    request = AssessmentRequest(IOP, [score_phq9([1, 1, 1, 1, 1, 1, 1, 1, 1]), high_risk])
    await changes.record_assessment(store, load_placement_policy(), load_measures_policy(), episode.episode_id, request)
    publish = Publisher()
    assert await OutboxRelay([database[EPISODES]], publish).work_once() == 3  # type: ignore[list-item]
    assert [record["topic"] for record in publish.calls][:2] == ["iop.safety.alert_raised", "iop.assessment.completed"]
    assert [record["topic"] for record in publish.calls][2:] == ["iop.measure.recorded"]


async def test_a_publish_that_fails_midway_leaves_the_rest_queued_for_the_next_pass() -> None:
    plans = MemoryDatabase()["plans"]
    assert await insert_aggregate(plans, {"_id": "e1"}, [missed("e1", n) for n in (1, 2, 3, 4)])  # type: ignore[arg-type]
    publish = Publisher(failing=frozenset({3}))  # the third call: event 3 fails, once
    relay = OutboxRelay([plans], publish)  # type: ignore[list-item]
    with pytest.raises(KafkaConnectionError):  # the pass reports it
        await relay.work_once()
    assert publish.published() == [1, 2]
    left = await stored(plans, "e1")
    assert (totals(left), left["outbox_pending"]) == ([3, 4], 2)  # what did not go out waits, in order
    assert left["outbox_lease_until"] == EPOCH < wall_clock()  # and the next pass may take it at once
    assert await relay.work_once() == 2
    assert publish.published() == [1, 2, 3, 4]  # each once: the two that went out are not sent again
    done = await stored(plans, "e1")
    assert (done["outbox"], done["outbox_pending"]) == ([], 0)


async def test_of_two_interleaved_writers_one_wins_and_the_other_decides_again() -> None:
    plans = MemoryDatabase()["plans"]
    assert await insert_aggregate(plans, {"_id": "e1", "notes": []})  # type: ignore[arg-type]
    first, second = await stored(plans, "e1"), await stored(plans, "e1")  # both load version 1
    assert await update_aggregate(plans, "e1", first["version"], {"notes": ["a"]}, [missed("e1", 1)])  # type: ignore[arg-type]
    lost = await update_aggregate(plans, "e1", second["version"], {"notes": ["b"]}, [missed("e1", 2)])  # type: ignore[arg-type]
    assert not lost  # the version it loaded is gone: nothing written
    after = await stored(plans, "e1")
    assert (after["notes"], after["version"], totals(after)) == (["a"], 2, [1])
    again = after["notes"] + ["b"]  # it loads again and decides on what the first wrote
    assert await update_aggregate(plans, "e1", after["version"], {"notes": again}, [missed("e1", 2)])  # type: ignore[arg-type]
    final = await stored(plans, "e1")
    assert (final["notes"], final["version"], totals(final)) == (["a", "b"], 3, [1, 2])


async def test_two_consents_granted_at_once_on_one_episode_are_both_kept(database: MemoryDatabase) -> None:
    """Both requests load the episode before either writes (as two instances may): the change path's version check
    makes the second load again and decide again, instead of writing over the first's consent."""
    store = IntakeStore(database, wake_relay=no_relay)  # type: ignore[arg-type]
    patient_id = await changes.register_patient(
        store, STAFF, {"name": "Alex Example", "date_of_birth": "1990-04-01"}, "p1"
    )
    episode_id = (await changes.open_episode(store, patient_id, "adult", "e1")).episode_id
    both_loaded = asyncio.Barrier(2)
    real_save = store.save
    saves = 0

    async def save(*args: Any) -> bool:
        nonlocal saves
        saves += 1
        if saves <= 2:  # the first write of each waits until the other has loaded and decided too
            await both_loaded.wait()
        return await real_save(*args)

    store.save = save  # type: ignore[method-assign,assignment]
    terms = [ConsentTerms("family", Recipient(name=name, email=f"{name}@example.org"), ["appointments"])
             for name in ("sam", "kim")]  # fmt: skip
    granted = await asyncio.gather(*(changes.grant_consent(store, STAFF, episode_id, t) for t in terms))
    assert saves == 3  # one of the two first writes lost, and was decided again
    kept = await store.get(episode_id)
    assert kept is not None
    assert sorted(c.consent_id for c in kept.episode.consents) == sorted(c.consent_id for c in granted)
    assert kept.version == 3
    outbox = (await stored(database[EPISODES], episode_id))["outbox"]
    assert sorted(json.loads(json.loads(r)["value"])["consent_id"] for r in outbox) == sorted(
        c.consent_id for c in granted
    )


async def test_an_aggregate_remembers_the_latest_500_events_it_applied() -> None:
    plans = MemoryDatabase()["plans"]
    assert await insert_aggregate(plans, {"_id": "e1"}, applied="/src#0")  # type: ignore[arg-type]
    plans.sync.update_one({"_id": "e1"}, {"$set": {"applied_events": [f"/src#{n}" for n in range(500)]}})
    assert await update_aggregate(plans, "e1", 1, {"n": 1}, applied="/src#500")  # type: ignore[arg-type]
    kept = (await stored(plans, "e1"))["applied_events"]
    assert kept == [f"/src#{n}" for n in range(1, 501)]  # the oldest is forgotten, never the one just applied


async def test_an_aggregate_created_without_an_event_applied_remembers_none() -> None:
    plans = MemoryDatabase()["care_plans"]
    assert await insert_aggregate(plans, {"_id": "e1"})  # type: ignore[arg-type]
    assert (await stored(plans, "e1"))["applied_events"] == []
    assert new_aggregate({"_id": "e2"}, applied="/src#1")["applied_events"] == ["/src#1"]


async def test_a_new_aggregate_past_the_document_limit_is_refused_naming_its_record() -> None:
    plans = MemoryDatabase()["care_plans"]
    with pytest.raises(RecordTooLarge) as refused:
        await insert_aggregate(plans, {"_id": "e1", "notes": "x" * (17 * 1024 * 1024)})  # type: ignore[arg-type]
    assert refused.value.record == "care plan"
    assert await plans.find_one({"_id": "e1"}) is None


async def test_new_aggregates_are_inserted_past_those_that_exist() -> None:
    plans = MemoryDatabase()["plans"]
    assert await inserted_new_aggregates(plans, []) == []  # type: ignore[arg-type]
    assert await insert_aggregate(plans, {"_id": "a", "n": 0})  # type: ignore[arg-type]
    added = await inserted_new_aggregates(plans, [{"_id": "a", "n": 1}, {"_id": "b"}, {"_id": "c"}])  # type: ignore[arg-type]
    assert [document["_id"] for document in added] == ["b", "c"]
    assert [(d["_id"], d.get("n")) for d in plans.sync.find({}, sort=[("_id", 1)])] == [
        ("a", 0),
        ("b", None),
        ("c", None),
    ]


class Refusing:
    """A collection whose bulk insert fails as PyMongo reports it: ``codes`` the write errors, ``inserted`` the rest."""

    name = "plans"
    full_name = "db.plans"

    def __init__(self, codes: list[int], inserted: int) -> None:
        self.details = {"writeErrors": [{"index": n, "code": code} for n, code in enumerate(codes)],
                        "nInserted": inserted, "writeConcernErrors": []}  # fmt: skip

    async def bulk_write(self, *_: Any, **__: Any) -> None:
        raise BulkWriteError(self.details)


async def test_a_write_error_other_than_an_existing_id_is_raised() -> None:
    added = await inserted_new_aggregates(Refusing([11000, 11000], 1), [{"_id": "a"}, {"_id": "b"}, {"_id": "c"}])  # type: ignore[arg-type]
    assert [document["_id"] for document in added] == ["c"]
    with pytest.raises(WriteError) as refused:  # the write's own error, as a lone insert would raise it
        await inserted_new_aggregates(Refusing([11000, 121], 1), [{"_id": "a"}, {"_id": "b"}, {"_id": "c"}])  # type: ignore[arg-type]
    assert refused.value.code == 121


async def test_a_change_that_keeps_losing_is_given_up_after_five_attempts() -> None:
    attempts = 0

    async def always_lost() -> Conflict:
        nonlocal attempts
        attempts += 1
        return CONFLICT

    with pytest.raises(ConcurrentChange) as gave_up:
        await retry(always_lost)
    assert (attempts, str(gave_up.value)) == (5, "the record kept changing; try again")


class KafkaPublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes, dict[str, Any]]] = []

    async def publish(self, value: bytes, *, key: bytes, headers: dict[str, Any], no_confirm: bool) -> object:
        assert no_confirm  # handed over; the relay awaits the acknowledgement
        self.sent.append((value, key, headers))
        return asyncio.get_running_loop().create_future()


async def test_a_queued_event_goes_to_kafka_as_it_was_encoded() -> None:
    """What the outbox keeps is what the relay sends: the record's value, key and CloudEvents headers."""
    event = missed("e1", 3)
    wire = to_kafka(event)
    publisher = KafkaPublisher()
    acknowledgement = await relay_publish({wire.topic: publisher})(json.loads(stored_record(event)))  # type: ignore[dict-item]
    assert not acknowledgement.done()
    assert publisher.sent == [(wire.value, b"e1", {name: value.decode() for name, value in wire.headers})]
