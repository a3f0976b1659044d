"""The staff console's pages under ``/console`` (HTTP only; what they show is ``pages.py``'s).

Server-rendered HTML, htmx (vendored, ``static/``) for partial updates, no inline script (the CSP says so). Every
page needs a console session (``sessions.py``) and every form carries its CSRF token: a POST without it is a 403.
Every action calls the service that owns it with the person's own token; every read of the projection is audited
with the person. No PII in a URL: names only in pages' bodies."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import date
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from services.common.auth import Authenticator, Caller, Role, Unauthenticated
from services.common.deps import from_state
from services.common.edge import AuthFailures, client_address
from services.common.schemas import READS_ITS_FORM

from ..api import worklist_changes
from ..deps import CaseloadDep, Directory
from . import pages
from . import sign_in as by_provider
from .clients import Services
from .pages import CONSOLE_ROLES, HEADERS
from .sessions import ConsoleSession, ConsoleSessions

log = logging.getLogger(__name__)
router = APIRouter(prefix="/console", include_in_schema=False)
COOKIE = "stepwise_console"

FORM_READ = {READS_ITS_FORM: True}

Sessions = Annotated[ConsoleSessions, Depends(from_state("console_sessions", ConsoleSessions))]
ServicesDep = Annotated[Services, Depends(from_state("console_services", Services))]


class NotSignedIn(Exception):
    """No session, an idle one, or one whose sign-in at the provider could not be renewed (``lapsed``): the sign-in
    page (htmx follows ``HX-Redirect``)."""

    def __init__(self, had_one: bool, lapsed: bool = False) -> None:
        ended = "?lapsed=1" if lapsed else "?ended=1" if had_one else ""
        self.location = f"/console/sign-in{ended}"


async def not_signed_in(request: Request, error: Exception) -> Response:
    assert isinstance(error, NotSignedIn)
    if request.headers.get("HX-Request"):
        return Response(status_code=200, headers={"HX-Redirect": error.location, **HEADERS})
    return RedirectResponse(error.location, status_code=303, headers=HEADERS)


async def _session(request: Request, sessions: Sessions) -> ConsoleSession:
    cookie = request.cookies.get(COOKIE)
    found = await sessions.find(cookie)
    if found is None:
        raise NotSignedIn(had_one=bool(cookie))
    if found.expires_us is not None:  # signed in at the clinic's provider: its access token kept fresh
        state = request.app.state
        fresh = await by_provider.kept_fresh(state.console_sign_in, sessions, state.authenticator, found)
        if fresh is None:
            raise NotSignedIn(had_one=True, lapsed=True)
        found = fresh
    if not pages.may_open(found.principal.role, request.url.path):
        raise pages.NotForRole(found)
    return found


SignedIn = Annotated[ConsoleSession, Depends(_session)]


async def form_of(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", "replace")
    return {name: values[0] for name, values in parse_qs(body).items()}


async def _checked_form(request: Request, session: SignedIn) -> dict[str, str]:
    """The POST's form, once its CSRF token is the session's (else 403: the action is not done)."""
    form = await form_of(request)
    if not session.csrf_matches(form.get("csrf")):
        raise pages.CsrfRefused()
    return form


CheckedForm = Annotated[dict[str, str], Depends(_checked_form)]


@router.get("", response_class=HTMLResponse)
async def home() -> Response:
    return RedirectResponse("/console/today", status_code=303, headers=HEADERS)


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(
    request: Request,
    sessions: Sessions,
    ended: bool = False,
    out: bool = False,
    lapsed: bool = False,
    failed: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    """The token form; with OIDC_ISSUER, the way to the clinic's provider (``sign_in.py``)."""
    if (at_provider := request.app.state.console_sign_in) is not None:
        notice = next((word for word, said in (("ended", ended), ("out", out), ("lapsed", lapsed)) if said), None)
        return await by_provider.page(request, at_provider, sessions, notice, failed)
    return pages.sign_in(request, ended=ended, out=out)


@router.post("/sign-in", openapi_extra=FORM_READ, response_class=HTMLResponse)
async def sign_in(request: Request, sessions: Sessions) -> Response:
    if request.app.state.console_sign_in is not None:  # staff sign in at the clinic's provider: no token form
        return RedirectResponse("/console/sign-in", status_code=303, headers=HEADERS)
    form = await form_of(request)
    if not pages.sign_in_csrf_matches(request.cookies.get(pages.SIGN_IN_CSRF_COOKIE), form.get("csrf")):
        return pages.sign_in(request, status=403, error="The form expired: please sign in again.")
    failures: AuthFailures = request.app.state.auth_failures
    client = client_address(request.scope, request.app.state.trusted_proxies)
    if failures.retry_after(client):
        return pages.sign_in(request, status=429, error="Too many refused tokens: wait a minute and try again.")
    token = form.get("token", "").strip()
    caller, error = await _who(request.app.state.authenticator, token)
    if caller is None or (principal := caller.acting_as(CONSOLE_ROLES)) is None:
        failures.refused(client)
        return pages.sign_in(request, status=401, error=error or "This token may not use the console.")
    cookie = await sessions.open(token, principal)
    log.info("console session opened for token %s", principal.token_id)
    response = signed_in(request, cookie, principal.role)
    response.delete_cookie(pages.SIGN_IN_CSRF_COOKIE, path="/console/sign-in")
    return response


def signed_in(request: Request, cookie: str, role: Role) -> Response:
    """The person's first page (``pages.home_of``: Today, or the UR desk's list), with the new session's cookie."""
    response = RedirectResponse(pages.home_of(role), status_code=303, headers=HEADERS)
    response.set_cookie(
        COOKIE, cookie, path="/console", httponly=True, samesite="lax", secure=pages.over_https(request)
    )
    return response


async def _who(authenticator: Authenticator, token: str) -> tuple[Caller | None, str | None]:
    if not token:
        return None, "token: enter your access token."
    try:
        return await authenticator.authenticate(token), None
    except Unauthenticated:
        return None, "token: this token is not accepted."


@router.post("/sign-out", openapi_extra=FORM_READ, response_class=HTMLResponse)
async def sign_out(session: SignedIn, _: CheckedForm, sessions: Sessions) -> Response:
    await sessions.close(session)
    response = RedirectResponse("/console/sign-in?out=1", status_code=303, headers=HEADERS)
    response.delete_cookie(COOKIE, path="/console")
    return response


@router.get("/today", response_class=HTMLResponse)
async def today(
    session: SignedIn,
    caseload: CaseloadDep,
    directory: Directory,
    day: Annotated[date | None, Query(alias="date")] = None,
) -> Response:
    return await pages.today(session, caseload, directory, day)


@router.post("/today/{group_id}/{session_id}", openapi_extra=FORM_READ, response_class=HTMLResponse)
async def take_attendance(
    group_id: str,
    session_id: str,
    session: SignedIn,
    form: CheckedForm,
    caseload: CaseloadDep,
    directory: Directory,
    services: ServicesDep,
    day: Annotated[date | None, Query(alias="date")] = None,
) -> Response:
    sheet = pages.sheet_of(form)
    if not sheet:
        results = {"": pages.Line(error="Choose attended, late, missed or excused for at least one member.")}
    else:
        path = f"/v1/groups/{group_id}/sessions/{session_id}/attendance"
        answer = await services.post("care_plan", path, session.authorization, {"attendance": sheet})
        results = pages.sheet_results(answer)
    return await pages.today(session, caseload, directory, day, done={session_id: results})


@router.get("/worklists", response_class=HTMLResponse)
async def worklists_home() -> Response:
    return RedirectResponse("/console/worklists/safety_alerts", status_code=303, headers=HEADERS)


@router.get("/worklists/{name}", response_class=HTMLResponse)
async def worklist(
    name: pages.WorklistName, session: SignedIn, caseload: CaseloadDep, directory: Directory
) -> Response:
    return await pages.worklist(session, caseload, directory, name)


@router.get("/safety-alerts/{alert_id}", response_class=HTMLResponse)
async def alert_link(alert_id: str) -> Response:  # noqa: ARG001 - the list shows every open alert
    """Where notifications' pages link (``<CONSOLE_BASE_URL>/safety-alerts/<alert id>``): the safety alerts."""
    return RedirectResponse("/console/worklists/safety_alerts", status_code=303, headers=HEADERS)


@router.post("/alerts/{alert_id}/acknowledge", openapi_extra=FORM_READ, response_class=HTMLResponse)
async def acknowledge(
    alert_id: str,
    session: SignedIn,
    _: CheckedForm,
    caseload: CaseloadDep,
    directory: Directory,
    services: ServicesDep,
) -> Response:
    answer = await services.post("notifications", f"/v1/safety-alerts/{alert_id}/acknowledge", session.authorization)
    line = pages.Line(outcome="Acknowledged") if answer.ok else pages.Line(error=answer.error)
    return await pages.worklist(session, caseload, directory, "safety_alerts", done={alert_id: line})


@router.post("/recommendations/{episode_id}/{recommendation_id}", openapi_extra=FORM_READ, response_class=HTMLResponse)
async def decide(
    episode_id: str,
    recommendation_id: str,
    session: SignedIn,
    form: CheckedForm,
    caseload: CaseloadDep,
    directory: Directory,
    services: ServicesDep,
) -> Response:
    """Accept or decline a step-up / step-down recommendation at care_plan (a reason is kept there, never here)."""
    body = {"decision": form.get("decision", "")} | ({"reason": form["reason"]} if form.get("reason") else {})
    path = f"/v1/episodes/{episode_id}/recommendations/{recommendation_id}/decision"
    answer = await services.post("care_plan", path, session.authorization, body)
    done = {"accept": "Accepted", "decline": "Declined"}.get(body["decision"], "")
    line = pages.Line(outcome=done) if answer.ok else pages.Line(error=answer.error)
    return await pages.worklist(session, caseload, directory, "recommendations", done={recommendation_id: line})


@router.get("/stream")
async def stream(request: Request, sessions: Sessions, caseload: CaseloadDep) -> Response:
    """The worklists' changes for a signed-in browser (an EventSource sends the cookie, not a bearer token). Not
    activity: a page left open is still signed out when idle; the stream then says so and ends."""
    cookie = request.cookies.get(COOKIE)
    session = await sessions.find(cookie, touch=False)
    if session is None:
        return Response(status_code=204, headers=HEADERS)  # an EventSource does not reconnect after a 204
    await caseload.store.audit(session.principal, "stream_worklists", via="console")
    relayed = _relay(request, sessions, cookie, caseload)
    return StreamingResponse(relayed, media_type="text/event-stream", headers=HEADERS)


async def _relay(request: Request, sessions: ConsoleSessions, cookie: Any, caseload: Any) -> AsyncIterator[str]:
    """caseload's changes, first the counts as they are now: what changed between the page and its stream's start
    is not missed."""
    async for chunk in worklist_changes(request, caseload, request.app.state.stream_poll_seconds, once=False):
        if await sessions.find(cookie, touch=False) is None:
            yield "event: signed_out\ndata: {}\n\n"
            return
        yield chunk
        if chunk.startswith("event: ready"):
            now = {"changed": [], "episodes": 0, "counts": await caseload.counts()}
            yield f"event: worklists\ndata: {json.dumps(now)}\n\n"
