"""The worklists' actions beyond alerts and recommendations (HTTP only; each is a call to the service that owns it,
with the person's own token, and its answer is shown next to the row):

- a treatment-plan review recorded at care_plan (the plan continues; revising it is the Patient page's);
- a payer's review of an authorization, and a physician's certification, recorded at authorizations (the
  utilization-review desk).

Measures due, missed sessions and failed messages have no action here: their rows link to the Patient page (no
service resends a failed message: the patient is reached another way)."""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from ..deps import CaseloadDep, Directory
from . import pages
from .clients import Answer
from .web import FORM_READ, CheckedForm, ServicesDep, SignedIn

router = APIRouter(prefix="/console", include_in_schema=False)
REVIEW_FIELDS = ("outcome", "units_added", "new_end_date", "next_review_on", "reason")
CERTIFICATION_FIELDS = ("certified_on", "hours_per_week", "clinician")


NUMBERS = ("units_added", "hours_per_week")


def filled(form: dict[str, str], fields: tuple[str, ...]) -> dict[str, Any]:
    """The fields typed (a blank one left out: the service says what it needs, naming the field); a number as a
    number (one that is not is sent as typed: the service names the field)."""
    return {key: _number(form[key].strip()) if key in NUMBERS else form[key].strip()
            for key in fields if form.get(key, "").strip()}  # fmt: skip


def _number(typed: str) -> float | str:
    try:
        number = float(typed)
    except ValueError:
        return typed
    return number if math.isfinite(number) else typed


def line_of(answer: Answer, outcome: str) -> pages.Line:
    return pages.Line(outcome=outcome) if answer.ok else pages.Line(error=answer.error)


@router.post("/plan-reviews/{episode_id}", openapi_extra=FORM_READ, response_class=HTMLResponse)
async def review_plan(
    episode_id: str,
    session: SignedIn,
    _: CheckedForm,
    caseload: CaseloadDep,
    directory: Directory,
    services: ServicesDep,
) -> Response:
    """The plan in force is reviewed and continues: every review due of it is done (care_plan's rule)."""
    path = f"/v1/episodes/{episode_id}/treatment-plan/review"
    answer = await services.post("care_plan", path, session.authorization, {"outcome": "continued"})
    line = line_of(answer, "Reviewed: the plan continues")
    return await pages.worklist(session, caseload, directory, "plan_reviews", done={episode_id: line})


@router.post("/authorizations/{authorization_id}/reviews", openapi_extra=FORM_READ, response_class=HTMLResponse)
async def record_review(
    authorization_id: str,
    session: SignedIn,
    form: CheckedForm,
    caseload: CaseloadDep,
    directory: Directory,
    services: ServicesDep,
) -> Response:
    body = filled(form, REVIEW_FIELDS)
    path = f"/v1/authorizations/{authorization_id}/reviews"
    answer = await services.post("authorizations", path, session.authorization, body)
    line = line_of(answer, f"Review recorded: {body.get('outcome', '').replace('_', ' ')}")
    typed = {} if answer.ok else {authorization_id: form}
    return await pages.worklist(session, caseload, directory, "authorizations", {authorization_id: line}, typed)


@router.post("/authorizations/certifications/{episode_id}", openapi_extra=FORM_READ, response_class=HTMLResponse)
async def record_certification(
    episode_id: str,
    session: SignedIn,
    form: CheckedForm,
    caseload: CaseloadDep,
    directory: Directory,
    services: ServicesDep,
) -> Response:
    body = filled(form, CERTIFICATION_FIELDS)
    path = f"/v1/episodes/{episode_id}/certifications"
    answer = await services.post("authorizations", path, session.authorization, body)
    typed = {} if answer.ok else {episode_id: form}
    done = {episode_id: line_of(answer, "Certification recorded")}
    return await pages.worklist(session, caseload, directory, "authorizations", done, typed)
