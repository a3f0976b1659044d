"""intake's change path (changes.py) driven directly: who recorded what is kept with it, a consent change is
audited with its episode, a refusal says why."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.common.auth import Principal, Role
from services.common.outbox import no_relay
from services.common.utc import utc_now
from services.intake import changes
from services.intake.domain.episode import ConsentTerms
from services.intake.domain.model import EpisodeError, Recipient, RecordedDrugScreen
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
    assert isinstance(screen, RecordedDrugScreen)
    assert screen.recorded_by == "dr.lee"
    stored = await store.get(episode.episode_id)
    assert stored is not None and [s.recorded_by for s in stored.episode.drug_screens] == ["dr.lee"]


async def test_an_episode_for_an_unknown_patient_is_refused_saying_so(database: MemoryDatabase) -> None:
    store = IntakeStore(database, wake_relay=no_relay)  # type: ignore[arg-type]
    with pytest.raises(EpisodeError) as refused:
        await changes.open_episode(store, "nobody", "adult", "e1")
    assert (refused.value.code, str(refused.value)) == ("no_patient", "patient not found")


async def test_a_consent_change_is_audited_with_its_episode(database: MemoryDatabase) -> None:
    store = IntakeStore(database, wake_relay=no_relay)  # type: ignore[arg-type]
    details = {"name": "Alex Example", "date_of_birth": "1990-04-01"}
    patient_id = await changes.register_patient(store, CLINICIAN, details, "p1")
    episode = await changes.open_episode(store, patient_id, "adult", "e1")
    terms = ConsentTerms("family", Recipient(name="Sam", email="sam@example.org"), ["appointments"])
    consent = await changes.grant_consent(store, CLINICIAN, episode.episode_id, terms)
    await changes.revoke_consent(store, CLINICIAN, episode.episode_id, consent.consent_id)
    entries = await store.audit_entries(patient_id=patient_id, action=None, since=None, until=None, limit=10)
    consent_changes = [(e["action"], e["episode_id"]) for e in entries if e["action"].endswith("consent")]
    assert sorted(consent_changes) == [("grant_consent", "e1"), ("revoke_consent", "e1")]


async def test_a_second_registration_of_the_same_person_is_refused_unless_confirmed(database: MemoryDatabase) -> None:
    store = IntakeStore(database, wake_relay=no_relay)  # type: ignore[arg-type]
    details = {"name": "Alex Example", "date_of_birth": "1990-04-01"}
    first = await changes.register_patient(store, CLINICIAN, details, "p1")
    with pytest.raises(changes.PatientExists) as exists:
        await changes.register_patient(store, CLINICIAN, details, "p2")
    assert exists.value.patient_id == first
    assert await changes.register_patient(store, CLINICIAN, details, "p3", confirm_new=True) == "p3"
