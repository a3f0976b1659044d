"""The authorizations service's store on a real server: an authorization found by its id inside the coverage
documents, the worklist's and the daily look's queries over ISO dates, the version-checked write."""

from __future__ import annotations

import uuid
from datetime import date

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from services.authorizations.changes import Desk, change_known, record_authorization
from services.authorizations.domain.authorizations import NewAuthorization
from services.authorizations.handlers import on_care_level_assigned
from services.authorizations.store import COVERAGE, CoverageStore
from services.common.outbox import no_relay
from stepwise_contract import CareLevelAssigned, new_event
from tests.service.authorizations.conftest import RULES
from tests.store.conftest import Document, noted_client
from tests.unit.contract.test_contract import make_data
from tools.dev.devstack import Backends

pytestmark = pytest.mark.second_server


def new(number: str, next_review_on: date) -> NewAuthorization:
    return NewAuthorization(payer="carelon", authorization_number=number, level="IOP", unit="day", units_authorized=10,
                            start_date=date(2020, 1, 6), end_date=date(2999, 1, 1), status="approved",
                            next_review_on=next_review_on)  # fmt: skip


async def test_authorizations_are_found_by_id_and_listed_by_due_date(database: AsyncDatabase[Document]) -> None:
    store = CoverageStore(database, wake_relay=no_relay)
    await store.create_indexes()
    desk = Desk(store, RULES)
    late = await record_authorization(desk, "ep-late", new("PA-1", date(2998, 6, 1)), "ur")
    soon = await record_authorization(desk, "ep-soon", new("PA-2", date(2998, 1, 5)), "ur")
    assert await store.episode_of(late.authorization_id) == "ep-late"
    assert await store.episode_of(soon.authorization_id) == "ep-soon"
    assert await store.episode_of("nope") is None
    assert [c.episode_id for c in await store.with_reviews(None)] == ["ep-soon", "ep-late"]
    assert [c.episode_id for c in await store.with_reviews(date(2998, 3, 1))] == ["ep-soon"]
    assert sorted(await store.due(date(3000, 1, 1))) == ["ep-late", "ep-soon"]  # looked at daily while running
    assert await store.due(date(2000, 1, 1)) == []
    stored = await store.get("ep-soon")
    assert stored is not None and stored.coverage.authorizations[0].authorization_number == "PA-2"
    await change_known(desk, "ep-soon", lambda coverage, _now: (coverage, None))  # nothing new: no write
    again = await store.get("ep-soon")
    assert again is not None and again.version == stored.version


async def test_an_episodes_first_care_level_costs_one_insert_and_a_redelivery_writes_nothing(
    running_backends: Backends,
) -> None:
    """Issue 31: the coverage of a new episode is inserted without a look first (a find and an insert before), and
    the same event again (redelivered, or taken by a second instance) changes nothing."""
    async with noted_client(running_backends.mongodb_url) as (client, commands):
        database = client[f"stepwise_store_{uuid.uuid4().hex[:12]}"]
        try:
            desk = Desk(CoverageStore(database, wake_relay=no_relay), RULES)
            data = make_data(CareLevelAssigned.event_type)
            assert isinstance(data, CareLevelAssigned)
            event = new_event(data, source="/stepwise/test")
            await on_care_level_assigned(event, desk)
            assert commands.names(COVERAGE) == ["insert"]
            stored = await desk.store.get(event.subject)
            assert stored is not None and stored.coverage.clinical_level is not None

            commands.seen.clear()
            await on_care_level_assigned(event, desk)  # redelivered: refused by the insert, found applied
            assert commands.names(COVERAGE) == ["insert", "find"]
            again = await desk.store.get(event.subject)
            assert again is not None and again.version == stored.version
        finally:
            await client.drop_database(database.name)
