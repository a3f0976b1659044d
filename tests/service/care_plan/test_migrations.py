"""Issue 26's migration: care_plan's stored payer authorizations, exported from its database and imported by the
authorizations service into its own (each service reads only its own database), nothing lost, nothing twice."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

from services.authorizations.changes import Desk
from services.authorizations.migrations import import_care_plan
from services.authorizations.store import COVERAGE, CoverageStore
from services.care_plan.domain.model import Authorization
from services.care_plan.migrations import exported_authorizations, write_private
from services.care_plan.store import PLANS, CarePlanStore
from services.common.outbox import no_relay
from tests.service.authorizations.conftest import RULES
from tests.service.care_plan.helpers import active_plan
from tests.service.conftest import Events, queued
from tests.service.memory_mongo import MemoryDatabase


async def test_care_plans_authorizations_move_to_the_authorizations_service(
    events: Events, store: CarePlanStore, database: MemoryDatabase, tmp_path: Path
) -> None:
    episode_id, other = await active_plan(events, store), await active_plan(events, store)
    kept = Authorization(level="IOP", authorized_through=date(2027, 1, 31), reference="PA-118")
    await database[PLANS].update_one({"_id": episode_id}, {"$set": {"authorization": kept.model_dump(mode="json")}})

    lines = await exported_authorizations(database)  # type: ignore[arg-type]
    assert len(lines) == 1 and episode_id in lines[0] and other not in lines[0]
    out = tmp_path / "authorizations.jsonl"
    write_private(out, lines)
    assert os.stat(out).st_mode & 0o777 == 0o600
    stored = await store.get(episode_id)
    assert stored is not None and stored.plan.authorization == kept  # nothing removed from care_plan

    ur_database = MemoryDatabase()
    desk = Desk(CoverageStore(ur_database, wake_relay=no_relay), RULES)  # type: ignore[arg-type]
    parsed = [json.loads(line) for line in lines]
    assert await import_care_plan(desk, parsed, "carelon") == {"recorded": 1, "already there": 0}
    assert await import_care_plan(desk, parsed, "carelon") == {"recorded": 0, "already there": 1}
    coverage = await desk.store.get(episode_id)
    assert coverage is not None
    [moved] = coverage.coverage.authorizations
    assert (moved.payer, moved.authorization_number, moved.level, moved.end_date, moved.units_authorized) == (
        "carelon", "PA-118", "IOP", date(2027, 1, 31), None)  # fmt: skip
    assert moved.history[0].change == "migrated" and moved.start_date <= moved.end_date
    published = [data for topic, data in await queued(ur_database[COVERAGE]) if topic == "iop.authorization.changed"]
    assert len(published) == 1 and "PA-118" not in str(published)
