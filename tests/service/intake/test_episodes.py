"""An episode's end in intake in-process: a graduation or discharge closes it once; an end of an episode intake
never opened is set aside."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.common.consumer import HANDLER_CONTEXT
from services.common.kafka import ServiceBroker
from services.intake.store import EPISODES, IntakeStore
from stepwise_contract import CareLevel, EpisodeDischarged, EpisodeGraduated, new_event
from tests.service.conftest import Events, queued, running, set_aside
from tests.service.intake.helpers import ADMIN, CLINICIAN, FAMILY, IOP_DIMENSIONS, STAFF, grant, new_episode
from tests.service.memory_mongo import MemoryDatabase


@pytest.fixture
async def events(store: IntakeStore, shelf: Any, kafka: ServiceBroker) -> AsyncIterator[Events]:
    async for running_events in running("intake", kafka.broker, {HANDLER_CONTEXT: store, "event_shelf": shelf}):
        yield running_events


def ended(data: EpisodeGraduated | EpisodeDischarged) -> Any:
    return new_event(data, source="/stepwise/care-plan")


async def test_a_graduation_or_a_discharge_closes_the_episode_once(
    http: httpx.AsyncClient, events: Events, store: IntakeStore, database: MemoryDatabase
) -> None:
    _, graduating = await new_episode(http)
    _, leaving = await new_episode(http, name="Other Example")
    at = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    graduation = ended(EpisodeGraduated(episode_id=graduating, graduated_at=at, level=CareLevel.IOP, by="clinician"))
    await events.deliver(graduation)
    await events.deliver(graduation)  # a redelivery changes nothing
    await events.deliver(ended(EpisodeDischarged(episode_id=leaving, discharged_at=at + timedelta(days=1),
                                                 level=CareLevel.IOP, reason_code="non_attendance")))  # fmt: skip
    for episode_id, how in ((graduating, "graduated"), (leaving, "discharged")):
        stored = await store.get(episode_id)
        assert stored is not None and (stored.episode.status, stored.episode.ended) == ("closed", how)
    closed = await store.get(graduating)
    assert closed is not None and closed.episode.closed_at == at and closed.version == 2  # closed once
    assert await queued(database[EPISODES]) == [] and await set_aside(database) == []


async def test_a_closed_episode_refuses_a_new_assessment_saying_why_and_still_takes_a_revocation(
    http: httpx.AsyncClient, events: Events
) -> None:
    _, episode_id = await new_episode(http)
    consent = await grant(http, episode_id, FAMILY)
    at = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    await events.deliver(ended(EpisodeGraduated(episode_id=episode_id, graduated_at=at, level=CareLevel.IOP,
                                                by="completion")))  # fmt: skip
    refused = await http.post(f"/v1/episodes/{episode_id}/assessments", json={"dimensions": IOP_DIMENSIONS},
                              headers=STAFF)  # fmt: skip
    assert refused.status_code == 409
    assert refused.json()["detail"] == "episode is closed (graduated on 2026-12-01): record it in a new episode"
    revoked = await http.post(f"/v1/episodes/{episode_id}/consents/{consent['consent_id']}/revoke", headers=STAFF)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"  # a patient may withdraw any time
    assert (await http.get(f"/v1/episodes/{episode_id}/assessments", headers=CLINICIAN)).status_code == 200


async def test_the_end_of_an_episode_intake_never_opened_is_set_aside_and_can_be_replayed(
    http: httpx.AsyncClient, events: Events
) -> None:
    at = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    await events.deliver(ended(EpisodeGraduated(episode_id="unknown", graduated_at=at, level=CareLevel.IOP,
                                                by="clinician")))  # fmt: skip
    [shelved] = (await http.get("/v1/set-aside-events", headers=ADMIN)).json()
    assert shelved["reason"] == "rejected: episode not found" and "value" not in shelved
    assert (await http.get("/v1/set-aside-events", headers=CLINICIAN)).status_code == 403
    again = await http.post(f"/v1/set-aside-events/{shelved['id']}/replay", headers=ADMIN)
    assert again.status_code == 200 and again.json()["replays"][-1]["outcome"] == "set_aside_again"
    assert (await http.post("/v1/set-aside-events/nope/replay", headers=ADMIN)).status_code == 404
    by_topic = await http.post("/v1/set-aside-events/replay", params={"topic": "iop.episode.graduated"}, headers=ADMIN)
    assert by_topic.status_code == 200 and [e["replays"][-1]["outcome"] for e in by_topic.json()] == ["set_aside_again"]
    assert (await http.post("/v1/set-aside-events/replay", headers=CLINICIAN)).status_code == 403
