"""``GET /v1/services``: what a subscriber that was away rebuilds the services delivered from."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import httpx

from services.care_plan.store import PLANS, CarePlanStore
from services.common.auth import Role
from tests.service.care_plan.helpers import (
    CLINICIAN,
    SETTINGS,
    active_plan,
    first_session_id,
    first_session_start,
    once_the_first_session_began,
)
from tests.service.conftest import Events, as_role, queued
from tests.service.memory_mongo import MemoryDatabase

INTEGRATION = as_role(Role.INTEGRATION)


async def test_a_subscriber_rebuilds_the_services_of_the_days_it_asks_each_at_its_latest_revision(
    http: httpx.AsyncClient, events: Events, store: CarePlanStore, database: MemoryDatabase
) -> None:
    members = sorted([await active_plan(events, store) for _ in range(3)])
    session_id = first_session_id()
    day = first_session_start().astimezone(ZoneInfo(SETTINGS.clinic_timezone)).date()
    sheet = {"attendance": [{"episode_id": member, "status": "attended"} for member in members[:2]]}
    with once_the_first_session_began():
        assert (await http.post(f"/v1/groups/iop-am/sessions/{session_id}/attendance", json=sheet,
                                headers=CLINICIAN)).status_code == 200  # fmt: skip
        corrected = await http.post(f"/v1/episodes/{members[0]}/sessions/{session_id}/attendance",
                                    json={"status": "missed"}, headers=CLINICIAN)  # fmt: skip
        assert corrected.status_code == 200, corrected.text
    published = {
        (data["episode_id"], data["service_id"]): data
        for topic, data in await queued(database[PLANS])
        if topic == "iop.service.delivered"
    }  # fmt: skip (the last revision of each wins)
    assert {key[0]: data["revision"] for key, data in published.items()} == {members[0]: 2, members[1]: 1}

    pages, after = [], None
    while True:
        query = {
            "since": day.isoformat(),
            "until": day.isoformat(),
            "limit": "1",
            **({"after": after} if after else {}),
        }
        answer = await http.get("/v1/services", params=query, headers=INTEGRATION)
        assert answer.status_code == 200, answer.text
        pages.append(answer.json()["services"])
        after = answer.json()["next_after"]
        if after is None:
            break
    assert [[line["episode_id"] for line in page] for page in pages] == [[members[0]], [members[1]], []]
    assert [line for page in pages for line in page] == [published[member, session_id] for member in members[:2]]
    assert pages[0][0]["status"] == "voided"

    later = {"since": (day + timedelta(days=1)).isoformat(), "until": (day + timedelta(days=92)).isoformat()}
    assert (await http.get("/v1/services", params=later, headers=INTEGRATION)).json() == {
        "services": [],
        "next_after": None,
    }


async def test_only_an_integration_reads_the_services_and_a_range_is_one_to_92_days(http: httpx.AsyncClient) -> None:
    day = first_session_start().date()
    one_day = {"since": day.isoformat(), "until": day.isoformat()}
    assert (await http.get("/v1/services", params=one_day, headers=CLINICIAN)).status_code == 403
    for since, until in ((day, day - timedelta(days=1)), (day, day + timedelta(days=92))):
        refused = await http.get("/v1/services", params={"since": since.isoformat(), "until": until.isoformat()},
                                 headers=INTEGRATION)  # fmt: skip
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"][0]["loc"] == ["query", "until"]
        assert refused.json()["detail"][0]["type"] == "service_range"
    missing = await http.get("/v1/services", params={"since": day.isoformat()}, headers=INTEGRATION)
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["query", "until"]
