"""A patient's page in the console (HTTP only; what it shows is ``patient.py``'s): ``/console/episodes/<episode id>``
(a pseudonymous id; the name only in the body), the treatment plan's form, signing and reviews at care_plan with
the person's own token."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..deps import CaseloadDep, Directory
from . import patient, plan_form
from .pages import HEADERS, Line
from .web import FORM_READ, CheckedForm, ServicesDep, SignedIn

router = APIRouter(prefix="/console", include_in_schema=False)

EpisodeId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
"""An episode's id: never a name; only characters that stay in a path of the services' URLs."""
Done = Annotated[Literal["saved", "signed", "reviewed"] | None, Query()]


def _plan(episode_id: str) -> str:
    return f"/v1/episodes/{episode_id}/treatment-plan"


def _done(episode_id: str, done: str) -> Response:
    return RedirectResponse(f"/console/episodes/{episode_id}?done={done}#treatment-plan", status_code=303,
                            headers=HEADERS)  # fmt: skip


@router.get("/episodes/{episode_id}", response_class=HTMLResponse)
async def patient_page(
    episode_id: EpisodeId,
    session: SignedIn,
    caseload: CaseloadDep,
    directory: Directory,
    services: ServicesDep,
    done: Done = None,
) -> Response:
    return await patient.patient(session, caseload, directory, services, episode_id, done)


@router.get("/episodes/{episode_id}/treatment-plan", response_class=HTMLResponse)
async def plan_form_page(
    episode_id: EpisodeId, session: SignedIn, caseload: CaseloadDep, directory: Directory, services: ServicesDep
) -> Response:
    return await patient.plan_edit(session, caseload, directory, services, episode_id)


@router.post("/episodes/{episode_id}/treatment-plan", openapi_extra=FORM_READ, response_class=HTMLResponse)
async def put_plan(
    episode_id: EpisodeId,
    session: SignedIn,
    form: CheckedForm,
    caseload: CaseloadDep,
    directory: Directory,
    services: ServicesDep,
) -> Response:
    """A row added or removed (the form again, as typed), or the plan put at care_plan as a new version."""
    rows = plan_form.from_form(form)
    action, _, place = form.get("do", "save").partition(":")
    if action in ("add", "remove"):
        rows = plan_form.added(rows, place) if action == "add" else plan_form.removed(rows, place)
        return await patient.plan_edit(session, caseload, directory, services, episode_id, rows)
    rows = plan_form.without_blank_interventions(rows)
    answer = await services.put("care_plan", _plan(episode_id), session.authorization, plan_form.body(rows))
    if answer.ok:
        return _done(episode_id, "saved")
    errors = patient.put_errors(answer)
    return await patient.plan_edit(session, caseload, directory, services, episode_id, rows, errors)


@router.post("/episodes/{episode_id}/treatment-plan/sign", openapi_extra=FORM_READ, response_class=HTMLResponse)
async def sign_plan(
    episode_id: EpisodeId,
    session: SignedIn,
    form: CheckedForm,
    caseload: CaseloadDep,
    directory: Directory,
    services: ServicesDep,
) -> Response:
    """Sign the version the page showed (care_plan refuses when a newer one was put since)."""
    version = form.get("version", "")
    body = {"version": int(version) if version.isdigit() else version}
    answer = await services.post("care_plan", f"{_plan(episode_id)}/sign", session.authorization, body)
    if answer.ok:
        return _done(episode_id, "signed")
    lines = {"sign": Line(error=answer.error)}
    return await patient.patient(session, caseload, directory, services, episode_id, lines=lines)


@router.post("/episodes/{episode_id}/treatment-plan/review", openapi_extra=FORM_READ, response_class=HTMLResponse)
async def review_plan(
    episode_id: EpisodeId,
    session: SignedIn,
    form: CheckedForm,
    caseload: CaseloadDep,
    directory: Directory,
    services: ServicesDep,
) -> Response:
    body = {"outcome": form.get("outcome", "")}
    answer = await services.post("care_plan", f"{_plan(episode_id)}/review", session.authorization, body)
    if answer.ok:
        return _done(episode_id, "reviewed")
    lines = {"review": Line(error=answer.error)}
    return await patient.patient(session, caseload, directory, services, episode_id, lines=lines)
