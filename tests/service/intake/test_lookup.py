"""Names for staff worklists and the patient search, in-process: bounded, by body only, audited per patient."""

from __future__ import annotations

import httpx

from services.intake import migrations
from services.intake.domain.patient import name_prefixes
from tests.service.intake.helpers import ADMIN, CLINICIAN, NOTIFICATIONS, STAFF, new_episode, register
from tests.service.memory_mongo import MemoryDatabase


async def test_names_of_episodes_for_staff_each_patient_audited(
    http: httpx.AsyncClient, database: MemoryDatabase
) -> None:
    patient_id, episode_id = await new_episode(http)
    answer = await http.post("/v1/patients/names", json={"episode_ids": [episode_id, "unknown-episode"]},
                             headers=CLINICIAN)  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"names": [{"episode_id": episode_id, "patient_id": patient_id, "name": "Alex Example",
                                        "date_of_birth": "1990-04-01"}], "unknown": ["unknown-episode"]}  # fmt: skip
    [entry] = await database["audit_log"].find({"action": "read_names"}).to_list()
    assert entry["patient_id"] == patient_id and entry["role"] == "clinician" and entry["episode_ids"] == [episode_id]
    assert (
        await http.post("/v1/patients/names", json={"episode_ids": [episode_id]}, headers=NOTIFICATIONS)
    ).status_code == 403
    too_many = await http.post("/v1/patients/names", json={"episode_ids": ["e"] * 201}, headers=STAFF)
    assert too_many.status_code == 422 and too_many.json()["detail"][0]["loc"] == ["body", "episode_ids"]


async def test_search_by_word_prefixes_and_birth_date(http: httpx.AsyncClient, database: MemoryDatabase) -> None:
    patient_id, episode_id = await new_episode(http, name="Zoë Ann-Marie Quintana")
    await register(http, name="Zoe Smith", date_of_birth="1985-02-02", phone="+12025550111")
    found = await http.post("/v1/patients/search", json={"name": "zoe QUIN"}, headers=STAFF)
    assert found.status_code == 200, found.text
    [patient] = found.json()["patients"]
    assert patient["patient_id"] == patient_id and [e["episode_id"] for e in patient["episodes"]] == [episode_id]
    assert found.json()["more"] is False
    both = await http.post("/v1/patients/search", json={"name": "zoe", "limit": 1}, headers=CLINICIAN)
    assert len(both.json()["patients"]) == 1 and both.json()["more"] is True
    born = await http.post("/v1/patients/search", json={"date_of_birth": "1990-04-01"}, headers=STAFF)
    assert [p["patient_id"] for p in born.json()["patients"]] == [patient_id]
    audited = await database["audit_log"].find({"action": "search_patient", "patient_id": patient_id}).to_list()
    assert len(audited) == 2  # the search limited to one answered the other Zoe only: only she was audited


async def test_a_search_needs_three_letters_or_a_birth_date(http: httpx.AsyncClient) -> None:
    short = await http.post("/v1/patients/search", json={"name": "Zo"}, headers=STAFF)
    assert short.status_code == 422 and short.json()["detail"][0]["loc"] == ["body", "name"]
    assert "Zo" not in short.text.replace("Zo\u00eb", "")
    nothing = await http.post("/v1/patients/search", json={}, headers=STAFF)
    assert nothing.status_code == 422
    assert (await http.post("/v1/patients/search", json={"name": "zoe"}, headers=ADMIN)).status_code == 403


def test_name_prefixes_fold_case_accents_and_hyphens() -> None:
    assert name_prefixes("Zoë Ann-Marie") == ["ann", "mar", "mari", "marie", "zoe"]


async def test_the_migration_gives_earlier_patients_their_prefixes(
    http: httpx.AsyncClient, database: MemoryDatabase
) -> None:
    patient_id = await register(http)
    await database["patients"].update_one({"_id": patient_id}, {"$unset": {"name_prefixes": ""}})
    outcome = await migrations.name_prefixes_of_patients(database, "US")  # type: ignore[arg-type]
    assert outcome.changed == {"patients": 1}
    stored = await database["patients"].find_one({"_id": patient_id})
    assert stored is not None and "exa" in stored["name_prefixes"]
    again = await migrations.name_prefixes_of_patients(database, "US")  # type: ignore[arg-type]
    assert again.changed == {}


async def test_names_and_search_are_their_own_resources_not_patient_ids(http: httpx.AsyncClient) -> None:
    """A concrete path is matched before a templated one (OpenAPI's rule): ``GET /v1/patients/names`` is a method
    the path does not take (405, Allow: POST), not a read of a patient whose id is "names"."""
    for path in ("/v1/patients/names", "/v1/patients/search"):
        for method in ("GET", "PATCH", "DELETE"):
            refused = await http.request(method, path, headers=CLINICIAN)
            assert refused.status_code == 405 and refused.headers["allow"] == "POST", (method, path)
