"""Intake's HTTP API for staff worklists: the names behind episode ids, and a search by name or birth date.

Names and birth dates travel only in bodies (never in a URL: URLs reach access logs, proxies and traces); every
patient answered is audited with the person who asked (caseload forwards the staff member's own token)."""

from __future__ import annotations

from typing import Any

from fastapi import status

from services.common.domain_errors import ServiceRouter
from services.common.schemas import V1_ERRORS, beyond_schema

from .deps import Staff, Store
from .domain.patient import search_terms
from .schemas import (
    ERRORS,
    EpisodeName,
    FoundEpisode,
    FoundPatient,
    NamesIn,
    NamesOut,
    SearchIn,
    SearchOut,
)

router = ServiceRouter(prefix="/v1", tags=["intake"], responses=V1_ERRORS, error_table=ERRORS)


@router.post(
    "/patients/names",
    status_code=status.HTTP_200_OK,
    summary="Name and birth date of the patient of each episode (staff; audited per patient)",
)
async def episode_names(body: NamesIn, store: Store, by: Staff) -> NamesOut:
    found = await store.names_of_episodes(body.episode_ids, by)
    known = {entry["episode_id"] for entry in found}
    unknown = sorted(set(body.episode_ids) - known)
    return NamesOut(names=[EpisodeName.model_validate(entry) for entry in found], unknown=unknown)


@router.post(
    "/patients/search",
    status_code=status.HTTP_200_OK,
    summary="Find patients by the start of their name's words and/or birth date, with their episodes (staff; "
    "audited per patient found)",
    openapi_extra=beyond_schema(
        name_too_short="a word of `name` has at least 3 letters",
        nothing_to_search="`name` or `date_of_birth` is given",
    ),
)
async def search_patients(body: SearchIn, store: Store, by: Staff) -> SearchOut:
    terms = search_terms(body.name) if body.name is not None else None
    born = body.date_of_birth.isoformat() if body.date_of_birth else None
    found, more = await store.search_patients(terms, born, body.limit, by)
    patients = [_found(patient) for patient in found]
    return SearchOut(patients=patients, more=more)


def _found(patient: dict[str, Any]) -> FoundPatient:
    episodes = [
        FoundEpisode(episode_id=e["_id"], program=e["program"], status=e["status"], opened_at=e["opened_at"])
        for e in patient["episodes"]
    ]
    return FoundPatient(patient_id=patient["_id"], name=patient["name"], date_of_birth=patient["date_of_birth"],
                        episodes=episodes)  # fmt: skip
