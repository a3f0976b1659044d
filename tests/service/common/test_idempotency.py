"""``Idempotency-Key``: scoped by who calls and what they call, kept 24 hours (services/common/idempotency.py).

The keys over the in-memory store with the TTL index production creates (it expires keys by the tier's clock)
and without it (a server without TTL indexes: the key's age is checked when it is used again), and through
intake's API with two callers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from pydantic import BaseModel

from services.common import idempotency
from services.common.auth import Authenticator, Role
from services.common.dependencies import Dependencies
from services.common.idempotency import (
    IDEMPOTENCY_KEYS,
    IdempotencyKeys,
    KeyReused,
    kept_record_id,
    request_key,
    with_key,
)
from services.common.outbox import no_relay
from services.intake import api
from services.intake.domain.measures import load_measures_policy
from services.intake.domain.placement import load_placement_policy
from services.intake.settings import IntakeSettings
from services.intake.store import IntakeStore
from tests.service.conftest import TIER_CLOCK, Clock, service_app
from tests.service.memory_mongo import MemoryDatabase

APP = service_app("intake", [api.router], consumes=False)
PATIENT = {"name": "Alex Example", "date_of_birth": "1990-04-01", "email": "alex@example.org", "phone": "+12025550100"}


class Body(BaseModel):
    name: str


@pytest.fixture(params=["ttl index", "no ttl index"])
async def keys(request: pytest.FixtureRequest, database: MemoryDatabase) -> IdempotencyKeys:
    keys = IdempotencyKeys(database)  # type: ignore[arg-type]
    if request.param == "ttl index":
        await keys.create_indexes()
    return keys


async def test_a_key_is_scoped_by_caller_and_request(keys: IdempotencyKeys) -> None:
    body = Body(name="a")
    first = await keys.record_id("k1", "token-a register_patient", body)
    assert await keys.record_id("k1", "token-a register_patient", body) == first  # a retry: the same record
    assert await keys.record_id("k1", "token-b register_patient", body) != first  # another caller's key
    assert await keys.record_id("k1", "token-a open_episode p1", body) != first  # another request
    assert await keys.record_id("k1", "token-c grant_consent e1", Body(name="b"))  # another body elsewhere: no reuse
    with pytest.raises(KeyReused):
        await keys.record_id("k1", "token-a register_patient", Body(name="b"))


async def test_a_key_is_kept_24_hours(keys: IdempotencyKeys, clock: Clock) -> None:
    body = Body(name="a")
    first = await keys.record_id("k1", "token-a register_patient", body)
    clock.advance(timedelta(hours=23, minutes=59))
    assert await keys.record_id("k1", "token-a register_patient", body) == first
    clock.advance(timedelta(minutes=1, seconds=1))  # 24 hours after it was first used: a new request
    second = await keys.record_id("k1", "token-a register_patient", body)
    assert second != first
    clock.advance(timedelta(hours=23))
    assert await keys.record_id("k1", "token-a register_patient", body) == second  # the new one is kept in turn


@pytest.fixture
async def intake(database: MemoryDatabase) -> AsyncIterator[httpx.AsyncClient]:
    """intake's app with two intake staff tokens: two callers."""
    APP.state.authenticator = Authenticator({"staff-a": Role.INTAKE_STAFF, "staff-b": Role.INTAKE_STAFF})
    APP.state.dependencies = Dependencies()
    APP.state.store = store = IntakeStore(database, wake_relay=no_relay)  # type: ignore[arg-type]
    await store.create_indexes()
    APP.state.placement_policy = load_placement_policy()
    APP.state.measures_policy = load_measures_policy()
    APP.state.outcomes_settings = IntakeSettings(_env_file=None).outcomes
    APP.state.link_settings = IntakeSettings(_env_file=None).links
    APP.state.idempotency_keys = keys = IdempotencyKeys(database)  # type: ignore[arg-type]
    await keys.create_indexes()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=APP), base_url="http://intake.test") as client:
        yield client


def caller(token: str, key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Idempotency-Key": key}


async def test_two_callers_with_one_key_create_two_records(intake: httpx.AsyncClient) -> None:
    first = await intake.post("/v1/patients", json=PATIENT, headers=caller("staff-a", "k1"))
    again = await intake.post("/v1/patients", json=PATIENT, headers=caller("staff-a", "k1"))
    # staff-b registers the same person again, on purpose (confirm_new): the key is theirs, not staff-a's
    other = await intake.post("/v1/patients", json=PATIENT | {"confirm_new": True}, headers=caller("staff-b", "k1"))
    assert (first.status_code, again.status_code, other.status_code) == (201, 201, 201)
    assert again.json()["patient_id"] == first.json()["patient_id"] != other.json()["patient_id"]


async def test_one_key_on_two_requests_creates_what_each_asks_for(intake: httpx.AsyncClient) -> None:
    store: IntakeStore = APP.state.store
    two = [PATIENT | {"name": f"Alex Example {n}"} for n in (1, 2)]
    patients = [(await intake.post("/v1/patients", json=body, headers=caller("staff-a", f"p{n}"))).json()["patient_id"]
                for n, body in enumerate(two)]  # fmt: skip
    opened = [await intake.post(f"/v1/patients/{patient_id}/episodes", json={"program": "adult"},
                                headers=caller("staff-a", "k1")) for patient_id in patients]  # fmt: skip
    assert [response.status_code for response in opened] == [201, 201]
    episodes = [await store.get(response.json()["episode_id"]) for response in opened]
    assert [e.episode.patient_id for e in episodes if e] == patients  # each patient's own episode
    consent = {"recipient_kind": "alumni_group", "scopes": ["alumni_program"]}
    episode_id = opened[0].json()["episode_id"]
    granted = await intake.post(f"/v1/episodes/{episode_id}/consents", json=consent, headers=caller("staff-a", "k1"))
    assert granted.status_code == 201, granted.text  # the key of another request with another body: no reuse


async def test_the_keys_index_lets_the_server_expire_them_after_24_hours(database: MemoryDatabase) -> None:
    await IdempotencyKeys(database).create_indexes()  # type: ignore[arg-type]
    indexes = database[IDEMPOTENCY_KEYS].sync.index_information().values()
    assert [(index["key"], index.get("expireAfterSeconds")) for index in indexes if index["key"] != [("_id", 1)]] == [
        ([("at", 1)], 24 * 60 * 60)
    ]


async def test_a_key_exactly_24_hours_old_is_still_kept(
    database: MemoryDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the server has no TTL index, the key's age decides: kept for 24 hours, new a moment after."""
    keys, body = IdempotencyKeys(database), Body(name="a")  # type: ignore[arg-type]
    first_use = TIER_CLOCK.replace(microsecond=0)
    monkeypatch.setattr(idempotency, "utc_now", lambda: first_use)
    first = await keys.record_id("k1", "token-a register_patient", body)
    monkeypatch.setattr(idempotency, "utc_now", lambda: first_use + timedelta(hours=24))
    assert await keys.record_id("k1", "token-a register_patient", body) == first
    monkeypatch.setattr(idempotency, "utc_now", lambda: first_use + timedelta(hours=24, milliseconds=1))
    assert await keys.record_id("k1", "token-a register_patient", body) != first


class Answers(BaseModel):
    answers: dict[str, int]


async def test_the_same_body_with_its_keys_in_another_order_is_the_same_request(keys: IdempotencyKeys) -> None:
    first = await keys.record_id("k1", "token-a record_assessment e1", Answers(answers={"q1": 1, "q2": 3}))
    assert await keys.record_id("k1", "token-a record_assessment e1", Answers(answers={"q2": 3, "q1": 1})) == first


async def test_a_key_reused_with_another_body_is_refused_naming_the_header(intake: httpx.AsyncClient) -> None:
    assert (await intake.post("/v1/patients", json=PATIENT, headers=caller("staff-a", "k1"))).status_code == 201
    other = PATIENT | {"name": "Sam Example"}
    refused = await intake.post("/v1/patients", json=other, headers=caller("staff-a", "k1"))
    assert refused.status_code == 422
    assert refused.json()["detail"] == [{
        "loc": ["header", "Idempotency-Key"], "type": "key_reused",
        "msg": "this Idempotency-Key came with another body: use a new key for a new request",
    }]  # fmt: skip


async def test_a_retry_finds_its_own_key_among_others(keys: IdempotencyKeys) -> None:
    body = Body(name="a")
    other = await keys.record_id("k1", "token-a register_patient", body)
    first = await keys.record_id("k2", "token-a register_patient", body)
    assert await keys.record_id("k2", "token-a register_patient", body) == first != other


def test_a_key_kept_in_its_record_is_honoured_24_hours_and_then_left_out() -> None:
    scope = "token-a record_assessment e1"
    request, other = request_key("k1", scope, Body(name="a")), request_key("k2", scope, Body(name="a"))
    assert request is not None and other is not None and request_key(None, scope, Body(name="a")) is None
    kept = with_key({}, request, "r1", TIER_CLOCK)
    assert kept_record_id(kept, request, TIER_CLOCK + timedelta(hours=24)) == "r1"
    assert kept_record_id(kept, request, TIER_CLOCK + timedelta(hours=24, milliseconds=1)) is None  # a new request
    with pytest.raises(KeyReused):
        kept_record_id(kept, request_key("k1", scope, Body(name="b")) or request, TIER_CLOCK)
    assert with_key(kept, request, "r2", TIER_CLOCK) == kept  # its first use is kept
    later = with_key(kept, other, "r3", TIER_CLOCK + timedelta(hours=25))
    assert list(later) == [other.key_id]  # the expired key is not kept on
