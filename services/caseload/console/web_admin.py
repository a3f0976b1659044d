"""The Admin page's routes (HTTP only; what it shows is ``admin.py``'s): admins only, anyone else gets a 403 page
saying so. The PII audit's person comes in a POSTed form, never in a URL."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from services.common.auth import Role

from ..deps import CaseloadDep
from . import admin
from .pages import NotForRole
from .sessions import ConsoleSession
from .web import FORM_READ, CheckedForm, ServicesDep, SignedIn

router = APIRouter(prefix="/console", include_in_schema=False)
Service = Literal["intake", "care_plan", "notifications", "authorizations", "caseload"]


async def _admin(session: SignedIn) -> ConsoleSession:
    if session.principal.role != Role.ADMIN:
        raise NotForRole(session, "The Admin page")
    return session


AdminSession = Annotated[ConsoleSession, Depends(_admin)]


@router.get("/admin", response_class=HTMLResponse)
async def admin_page(request: Request, session: AdminSession, caseload: CaseloadDep, services: ServicesDep) -> Response:
    return await admin.admin_page(request, session, caseload, services)


@router.post("/admin/set-aside/{service}/{event_id}/replay", openapi_extra=FORM_READ, response_class=HTMLResponse)
async def replay(
    service: Service,
    event_id: str,
    request: Request,
    session: AdminSession,
    _: CheckedForm,
    caseload: CaseloadDep,
    services: ServicesDep,
) -> Response:
    line = await admin.replay(service, event_id, request, session, services)
    return await admin.admin_page(request, session, caseload, services, done={f"{service}/{event_id}": line})


@router.post("/admin/audit", openapi_extra=FORM_READ, response_class=HTMLResponse)
async def audit(
    request: Request, session: AdminSession, form: CheckedForm, caseload: CaseloadDep, services: ServicesDep
) -> Response:
    found = await admin.audit_of(form, session, services)
    return await admin.admin_page(request, session, caseload, services, audit=found)
