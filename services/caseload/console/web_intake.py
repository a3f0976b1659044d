"""The Intake pages under ``/console/intake`` (HTTP only; what they show is ``intake.py``'s): register a patient,
open an episode, preview an assessment (intake's recommendation before anything is recorded), record it at that
level or at another with a reason, see intake's answer. Each step is a form POST to intake with the
person's token, then a redirect to the next step by pseudonymous ids alone; a refusal or an unreachable intake
shows the form again as typed, with intake's words next to the fields."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import RedirectResponse, Response

from ..deps import CaseloadDep, Directory
from . import intake
from .clients import Answer, Services
from .pages import HEADERS
from .web import FORM_READ, CheckedForm, ServicesDep, SignedIn

router = APIRouter(prefix="/console", include_in_schema=False)
Id = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,100}$")]
"""An id in a path, passed on into intake's paths: one segment of an id's characters, nothing else."""


def _next(location: str) -> Response:
    return RedirectResponse(location, status_code=303, headers=HEADERS)


@router.get("/intake")
async def register_page(session: SignedIn, caseload: CaseloadDep) -> Response:
    return await intake.register(session, caseload)


@router.post("/intake/patients", openapi_extra=FORM_READ)
async def register(session: SignedIn, form: CheckedForm, caseload: CaseloadDep, services: ServicesDep) -> Response:
    body = intake.patient_body(form)
    answer = await services.post("intake", "/v1/patients", session.authorization, body, intake.idempotent(form))
    if answer.ok:
        return _next(f"/console/intake/patients/{answer.body['patient_id']}/episode")
    return await intake.register(session, caseload, form, answer)


@router.get("/intake/patients/{patient_id}/episode")
async def episode_page(patient_id: Id, session: SignedIn, caseload: CaseloadDep, services: ServicesDep) -> Response:
    patient = await services.get("intake", f"/v1/patients/{patient_id}", session.authorization)
    return await intake.episode_form(session, caseload, patient, patient_id)


@router.post("/intake/patients/{patient_id}/episodes", openapi_extra=FORM_READ)
async def open_episode(
    patient_id: Id, session: SignedIn, form: CheckedForm, caseload: CaseloadDep, services: ServicesDep
) -> Response:
    path = f"/v1/patients/{patient_id}/episodes"
    answer = await services.post("intake", path, session.authorization, intake.episode_body(form),
                                 intake.idempotent(form))  # fmt: skip
    if answer.ok:
        return _next(f"/console/intake/episodes/{answer.body['episode_id']}/assessment")
    patient = await services.get("intake", f"/v1/patients/{patient_id}", session.authorization)
    return await intake.episode_form(session, caseload, patient, patient_id, form, answer)


@router.get("/intake/episodes/{episode_id}/assessment")
async def assessment_page(episode_id: Id, session: SignedIn, caseload: CaseloadDep, directory: Directory) -> Response:
    person = await intake.name_of(episode_id, session, directory)
    return await intake.assessment_form(session, caseload, episode_id, person)


@router.post("/intake/episodes/{episode_id}/assessments/preview", openapi_extra=FORM_READ)
async def preview_assessment(
    episode_id: Id,
    session: SignedIn,
    form: CheckedForm,
    caseload: CaseloadDep,
    directory: Directory,
    services: ServicesDep,
) -> Response:
    """intake's recommendation for the answers, nothing recorded: the same answers with the choice to record."""
    preview = await _preview(episode_id, session.authorization, form, services)
    person = await intake.name_of(episode_id, session, directory)
    return await intake.assessment_form(session, caseload, episode_id, person, form,
                                        None if preview.ok else preview, preview)  # fmt: skip


@router.post("/intake/episodes/{episode_id}/assessments", openapi_extra=FORM_READ)
async def record_assessment(
    episode_id: Id,
    session: SignedIn,
    form: CheckedForm,
    caseload: CaseloadDep,
    directory: Directory,
    services: ServicesDep,
) -> Response:
    """Record the answers previewed (at the recommended level, or a clinician's placement); answers changed since
    their preview are previewed again instead. A refusal shows the preview again with intake's words."""
    if not intake.previewed(form):
        return await preview_assessment(episode_id, session, form, caseload, directory, services)
    path = f"/v1/episodes/{episode_id}/assessments"
    answer = await services.post("intake", path, session.authorization, intake.assessment_body(form),
                                 intake.idempotent(form))  # fmt: skip
    if answer.ok:
        return _next(f"/console/intake/episodes/{episode_id}/assessments/{answer.body['assessment_id']}")
    preview = None if answer.down else await _preview(episode_id, session.authorization, form, services)
    person = await intake.name_of(episode_id, session, directory)
    return await intake.assessment_form(session, caseload, episode_id, person, form, answer, preview)


async def _preview(episode_id: str, authorization: str, form: dict[str, str], services: Services) -> Answer:
    path = f"/v1/episodes/{episode_id}/assessments/preview"
    return await services.post("intake", path, authorization, intake.answers_body(form))


@router.get("/intake/episodes/{episode_id}/assessments/{assessment_id}")
async def recommendation(
    episode_id: Id,
    assessment_id: Id,
    session: SignedIn,
    caseload: CaseloadDep,
    directory: Directory,
    services: ServicesDep,
) -> Response:
    history = await services.get("intake", f"/v1/episodes/{episode_id}/assessments", session.authorization)
    person = await intake.name_of(episode_id, session, directory)
    return await intake.result(session, caseload, episode_id, assessment_id, history, person)
