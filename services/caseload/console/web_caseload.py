"""The Caseload page's routes (HTTP only; what it shows is ``caseload.py``'s): the list with its filters (a GET: no
filter is PII) and the search by name (a POST: a name never goes in a URL)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from ..deps import CaseloadDep, Directory
from ..schemas import WorklistName
from . import caseload as shown
from .web import FORM_READ, CheckedForm, ServicesDep, SignedIn

router = APIRouter(prefix="/console", include_in_schema=False)
Blank = Literal[""]
"""A filter's "any" choice (the form sends it empty)."""


@router.get("/caseload", response_class=HTMLResponse)
async def caseload_page(
    session: SignedIn,
    caseload: CaseloadDep,
    directory: Directory,
    view: Literal["mine", "all"] | None = None,
    level: Annotated[str | None, Query(max_length=40)] = None,
    group: Annotated[str | None, Query(max_length=100)] = None,
    status: Annotated[str | None, Query(max_length=40)] = None,
    worklist: WorklistName | Blank | None = None,
) -> Response:
    filters = shown.Filters(view, level or None, group or None, status or None, worklist or None)
    return await shown.caseload_page(session, caseload, directory, filters)


@router.post("/caseload/search", openapi_extra=FORM_READ, response_class=HTMLResponse)
async def search(
    session: SignedIn, form: CheckedForm, caseload: CaseloadDep, directory: Directory, services: ServicesDep
) -> Response:
    answer = await services.post("intake", "/v1/patients/search", session.authorization, shown.search_body(form))
    found = await shown.search_result(session, caseload, form, answer)
    return await shown.caseload_page(session, caseload, directory, shown.Filters(), found)
