"""A store refusing one record's write in care_plan: never a 500, and never a partition held."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from pymongo.errors import DocumentTooLarge, WriteError

from services.care_plan.store import PLANS, CarePlanStore
from services.common.utc import utc_now
from stepwise_contract import AttendanceReported, new_event
from tests.service.care_plan.helpers import CLINICIAN, active_plan, first_session_id, once_the_first_session_began
from tests.service.conftest import Events, set_aside
from tests.service.memory_mongo import MemoryDatabase


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (DocumentTooLarge("BSON document too large"), (409, "the record is at its size limit: the care plan record")),
        (WriteError("Resulting document after update is larger than 16777216", 17419), (409, "size limit")),
        (WriteError("Document failed validation", 121), (409, "the store refused the change (code 121)")),
        (WriteError("Not writable primary", 10107), (503, "the store could not take the change now (code 10107)")),
    ],
    ids=["document_too_large", "update_result_too_large", "another_write_error", "a_transient_write_error"],
)
async def test_a_store_refusing_a_care_plan_write_is_answered_naming_the_cause(
    http: httpx.AsyncClient,
    events: Events,
    store: CarePlanStore,
    database: MemoryDatabase,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    expected: tuple[int, str],
) -> None:
    episode_id = await active_plan(events, store)

    async def refuse(*_: Any, **__: Any) -> None:
        raise error

    monkeypatch.setattr(database[PLANS], "update_one", refuse)
    body = {"kind": "individual", "starts_at": (utc_now() + timedelta(days=2)).isoformat()}
    answer = await http.post(f"/v1/episodes/{episode_id}/appointments", json=body, headers=CLINICIAN)
    assert answer.status_code == expected[0] and expected[1] in answer.json()["detail"], answer.text
    assert "nothing was changed" in answer.json()["detail"]
    assert (answer.headers.get("Retry-After") == "5") == (expected[0] == 503)


async def test_an_event_that_would_take_a_plan_past_its_size_limit_is_set_aside(
    events: Events, store: CarePlanStore, database: MemoryDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    episode_id = await active_plan(events, store)

    async def too_large(*_: Any, **__: Any) -> None:
        raise WriteError("Resulting document after update is larger than 16777216", 17419)

    monkeypatch.setattr(database[PLANS], "update_one", too_large)
    report = AttendanceReported(episode_id=episode_id, session_id=first_session_id(), status="attended",
                                reported_at=utc_now())  # fmt: skip
    with once_the_first_session_began():
        await events.deliver(new_event(report, source="/ehr"))  # applied once: set aside, not retried
    [shelved] = await set_aside(database)
    assert shelved["topic"] == "iop.attendance.reported"
    assert shelved["reason"] == ("rejected: the record is at its size limit: the care plan record cannot grow past "
                                 "the store's 16 MB document limit; nothing was changed")  # fmt: skip


async def test_an_appointment_past_the_booking_horizon_is_a_409_naming_the_bound(
    http: httpx.AsyncClient, events: Events, store: CarePlanStore
) -> None:
    episode_id = await active_plan(events, store)
    far = utc_now() + timedelta(days=400)
    body = {"kind": "individual", "starts_at": far.isoformat()}
    refused = await http.post(f"/v1/episodes/{episode_id}/appointments", json=body, headers=CLINICIAN)
    assert refused.status_code == 409 and "at most 366 days ahead" in refused.json()["detail"], refused.text
    stored = await store.get(episode_id)
    assert stored is not None and stored.plan.appointments == []
