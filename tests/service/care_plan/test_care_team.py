"""The care team in-process: assigning the primary clinician publishes iop.care_team.changed (a subject, no name)."""

from __future__ import annotations

import httpx

from services.care_plan.store import PLANS, CarePlanStore
from services.common.auth import Role
from tests.service.care_plan.helpers import ADMIN, CLINICIAN, active_plan
from tests.service.conftest import Events, as_role, queued
from tests.service.memory_mongo import MemoryDatabase

TEAM = {"primary_clinician": "sub-7f3a", "display_name": "Dr. Rivera"}


async def test_assigning_the_primary_clinician(
    http: httpx.AsyncClient, events: Events, store: CarePlanStore, database: MemoryDatabase
) -> None:
    episode_id = await active_plan(events, store)
    path = f"/v1/episodes/{episode_id}/care-team"
    assigned = await http.put(path, json=TEAM, headers=CLINICIAN)
    assert assigned.status_code == 200, assigned.text
    assert assigned.json()["care_team"]["primary_clinician"] == "sub-7f3a"
    renamed = await http.put(path, json=TEAM | {"display_name": "Dr. A. Rivera"}, headers=ADMIN)
    assert renamed.status_code == 200 and renamed.json()["care_team"]["display_name"] == "Dr. A. Rivera"
    published = [data for topic, data in await queued(database[PLANS]) if topic == "iop.care_team.changed"]
    assert published == [{"schema_version": 1, "episode_id": episode_id, "primary_clinician": "sub-7f3a",
                          "changed_at": published[0]["changed_at"]}]  # fmt: skip
    assert "Rivera" not in str(published)


async def test_the_care_team_refusals(http: httpx.AsyncClient, events: Events, store: CarePlanStore) -> None:
    episode_id = await active_plan(events, store)
    assert (await http.put("/v1/episodes/nobody/care-team", json=TEAM, headers=CLINICIAN)).status_code == 404
    intake_staff = await http.put(f"/v1/episodes/{episode_id}/care-team", json=TEAM, headers=as_role(Role.INTAKE_STAFF))
    assert intake_staff.status_code == 403
    empty = await http.put(f"/v1/episodes/{episode_id}/care-team", json={"primary_clinician": ""}, headers=CLINICIAN)
    assert empty.status_code == 422
