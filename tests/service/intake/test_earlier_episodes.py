"""Whether a patient had an episode before (issue 31): intake counts the episodes it opens for a patient, and the
welcome's audience says so, so that notifications looks a returning patient's alumni enrolments up and no one else's.
Said only where intake reads the patient anyway (their channels or contact), and never for a patient it did not
count (registered before it counted): notifications then looks up as before."""

from __future__ import annotations

import httpx

from tests.service.intake.helpers import NOTIFICATIONS, STAFF, register
from tests.service.memory_mongo import MemoryDatabase

WELCOME = {"patient_channels": "true", "patient_contact": "true"}


async def opened(http: httpx.AsyncClient, patient_id: str) -> str:
    response = await http.post(f"/v1/patients/{patient_id}/episodes", json={"program": "adult"}, headers=STAFF)
    assert response.status_code == 201, response.text
    return str(response.json()["episode_id"])


async def earlier(http: httpx.AsyncClient, episode_id: str, asked: dict[str, str]) -> object:
    response = await http.get(f"/v1/episodes/{episode_id}/audience", params=asked, headers=NOTIFICATIONS)
    assert response.status_code == 200, response.text
    return response.json().get("earlier_episodes", "not said")


async def test_the_audience_says_whether_the_patient_had_an_episode_before(
    http: httpx.AsyncClient, database: MemoryDatabase
) -> None:
    patient_id = await register(http)
    first = await opened(http, patient_id)
    assert await earlier(http, first, WELCOME) is False
    assert await earlier(http, first, {"patient_channels": "true"}) is False
    assert await earlier(http, first, {}) == "not said"  # the patient is not read: no read for it alone
    again = await opened(http, patient_id)
    assert await earlier(http, again, WELCOME) is True
    database.calls.clear()
    await earlier(http, again, WELCOME)
    assert [call for call in database.calls if call[1] == "patients"] == [("find", "patients")]  # one read, as before


async def test_a_patient_registered_before_episodes_were_counted_is_not_said_to_be_new(
    http: httpx.AsyncClient, database: MemoryDatabase
) -> None:
    patient_id = await register(http)
    await database["patients"].update_one(
        {"_id": patient_id}, {"$unset": {"episodes_opened": "", "counts_episodes": ""}}
    )
    episode_id = await opened(http, patient_id)  # their earlier episodes, if any, were never counted
    assert await earlier(http, episode_id, WELCOME) == "not said"
