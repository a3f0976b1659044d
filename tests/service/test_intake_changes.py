"""intake's change path (changes.py) driven directly: who recorded what is kept with it."""

from __future__ import annotations

from datetime import timedelta

from services.common.auth import Principal, Role
from services.common.outbox import no_relay
from services.common.utc import utc_now
from services.intake import changes
from services.intake.store import IntakeStore
from stepwise_contract import ScreenResult
from tests.service.memory_mongo import MemoryDatabase

CLINICIAN = Principal(Role.CLINICIAN, "tok-1", subject="sub-1", username="dr.lee")


async def test_a_drug_screen_keeps_who_recorded_it(database: MemoryDatabase) -> None:
    store = IntakeStore(database, wake_relay=no_relay)  # type: ignore[arg-type]
    details = {"name": "Alex Example", "date_of_birth": "1990-04-01"}
    patient_id = await changes.register_patient(store, CLINICIAN, details, "p1")
    episode = await changes.open_episode(store, patient_id, "adult", "e1")
    results = [ScreenResult(substance="fentanyl", result="negative")]
    screen = await changes.record_drug_screen(store, CLINICIAN, episode.episode_id, utc_now() - timedelta(hours=1),
                                              results)  # fmt: skip
    assert screen.recorded_by == "dr.lee"
    stored = await store.get(episode.episode_id)
    assert stored is not None and [s.recorded_by for s in stored.episode.drug_screens] == ["dr.lee"]
