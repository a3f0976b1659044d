"""The patient's questionnaire page: ``GET /q/{token}`` shows the link's instruments, ``POST /q/{token}`` records the
answers as a measure (the same change as ``POST /v1/episodes/{id}/measures``).

HTTP only. Server-rendered (no JavaScript), nothing but the questions: no name, diagnosis or program. Every answer
carries ``Referrer-Policy: no-referrer`` (the token must not leak to another site) and ``Cache-Control: no-store``.
The form is protected against cross-site posts by a double-submit token (a cookie that only this site can set, and
the same value in the form). Requests are limited per client (``QUESTIONNAIRE_REQUESTS_PER_MINUTE``). The token never
reaches a log: uvicorn's access log shows ``/q/…`` (``services.common.logs.SecretPaths``).
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from services.common.deps import from_state
from services.common.edge import AuthFailures, client_address
from services.common.schemas import READS_ITS_FORM

from . import changes
from .deps import LinkConfig as Links
from .deps import Measures, Store
from .domain.instruments import InstrumentAnswers
from .domain.links import QUESTIONNAIRES, QuestionnaireLink, answers_from_form, shows_crisis_resources
from .domain.measures import MeasuresPolicy
from .settings import LinkSettings

router = APIRouter(include_in_schema=False)
TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"), autoescape=select_autoescape(["html"])
)
PAGE = TEMPLATES.get_template("questionnaire.html")
CSRF_COOKIE = "q_csrf"
HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Robots-Tag": "noindex, nofollow",
}
TITLE = "A few questions from your care team"

Limits = Annotated[AuthFailures, Depends(from_state("link_requests", AuthFailures))]
"""Requests per client in the last minute (the edge's counter of refused tokens, counting page requests here)."""


def _page(status: int, page: str, **context: Any) -> HTMLResponse:
    html = PAGE.render(page=page, title=TITLE, crisis=context.pop("crisis", None), **context)
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def _busy(request: Request, settings: LinkSettings, limits: AuthFailures) -> HTMLResponse | None:
    """429 when the client made too many page requests in the last minute; else counts this one."""
    client = client_address(request.scope, settings.trusted_proxies)
    if limits.retry_after(client):
        return _page(429, "busy")
    limits.refused(client)
    return None


def _form(link: QuestionnaireLink, csrf: str, status: int = 200, **context: Any) -> HTMLResponse:
    questionnaires = [QUESTIONNAIRES[instrument] for instrument in link.instruments]
    names = {
        f"{q.instrument}.{n}": f"{q.title} question {n}" for q in questionnaires for n in range(1, len(q.items) + 1)
    }
    context = {"missing": [], "given": {}, **context}
    return _page(status, "form", questionnaires=questionnaires, csrf=csrf, field_names=names, **context)


@router.get("/q/{token}", response_class=HTMLResponse)
async def questionnaire(token: str, request: Request, store: Store, settings: Links, limits: Limits) -> HTMLResponse:
    if (busy := _busy(request, settings, limits)) is not None:
        return busy
    try:
        link = await changes.open_link(store, token)
    except changes.LinkRefused:
        return _page(404, "gone")
    csrf = secrets.token_urlsafe(24)
    response = _form(link, csrf)
    response.set_cookie(CSRF_COOKIE, csrf, path="/q/", httponly=True, samesite="strict", secure=settings.secure)
    return response


@router.post("/q/{token}", response_class=HTMLResponse, openapi_extra={READS_ITS_FORM: True})
async def answer(
    token: str, request: Request, store: Store, measures: Measures, settings: Links, limits: Limits
) -> HTMLResponse:
    if (busy := _busy(request, settings, limits)) is not None:
        return busy
    form = {name: values[0] for name, values in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie, form.get("csrf", "")):
        return _page(403, "expired_form")
    try:
        link = await changes.open_link(store, token)
    except changes.LinkRefused:
        return _page(404, "gone")
    return await _record(store, measures, link, form, cookie)


async def _record(
    store: Store, policy: MeasuresPolicy, link: QuestionnaireLink, form: dict[str, str], csrf: str
) -> HTMLResponse:
    """The answers as a measure; a positive suicide item shows the crisis resources at once, also on a form sent
    back for missing answers."""
    answers, missing = answers_from_form(form, link.instruments)
    suicide_item = form.get("phq9.9", "0") not in ("", "0") and "phq9" in link.instruments
    crisis = policy.crisis_resources if suicide_item else None
    if missing:
        return _form(link, csrf, 422, missing=missing, given=form, crisis=crisis)
    results = InstrumentAnswers.model_validate(answers).score()
    await changes.answer_link(store, policy, link, results)
    return _page(200, "thanks", crisis=policy.crisis_resources if shows_crisis_resources(results) else None)
