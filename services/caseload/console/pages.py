"""What the console's pages show: the projection's rows for the person (audited), names from intake with their own
token, and what the services answered to an action, in words next to the row it concerns."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import date, datetime
from ipaddress import ip_address
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from services.common.auth import Role
from services.common.edge import Network

from ..deps import NAME_ROLES
from ..domain.worklists import WORKLISTS
from ..names import IntakeDirectory
from ..queries import Caseload, episode_ids, with_names
from ..schemas import WorklistName
from .clients import Answer
from .sessions import ConsoleSession

__all__ = ["WorklistName"]

HERE = Path(__file__).resolve().parent
TEMPLATES = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")  # fmt: skip
HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex, nofollow",
}
CONSOLE_ROLES = (Role.CLINICIAN, Role.INTAKE_STAFF, Role.ADMIN, Role.UTILIZATION_REVIEW)
ONLY = {Role.UTILIZATION_REVIEW: ("/console/worklists/authorizations", "/console/authorizations/", "/console/sign-out")}
"""The pages a role is kept to (others: every page): the utilization-review desk works the authorizations due, and
reads nothing else of the projection (caseload's API gives it no read at all)."""
SIGN_IN_CSRF_COOKIE = "stepwise_console_sign_in"
STATUSES = ("attended", "late", "missed", "excused")
LABELS = {
    "today": "Today",
    "safety_alerts": "Safety alerts",
    "missed_sessions": "Missed sessions",
    "recommendations": "Recommendations",
    "measures_due": "Measures due",
    "plan_reviews": "Plan reviews due",
    "authorizations": "Authorizations due",
    "failed_messages": "Failed messages",
}
SECTIONS = {"caseload": "Caseload", "intake": "Intake", "admin": "Admin"}
"""The console's other pages (``/console/<section>``), after Today and the worklists in the navigation; a patient's
page is ``/console/episodes/<episode id>`` (a pseudonymous id: never a name in a URL)."""


@dataclass(frozen=True)
class Line:
    """What became of one row's action: an outcome, or an error in words."""

    outcome: str | None = None
    error: str | None = None
    status: str | None = None
    """The attendance status now recorded (before the projection hears of it)."""


class CsrfRefused(HTTPException):
    def __init__(self) -> None:
        super().__init__(403, "this form has no valid CSRF token: nothing was done")


class NotForRole(Exception):
    """A page the signed-in person's role may not open: a 403 page saying so (with their own pages)."""

    def __init__(self, session: ConsoleSession, what: str = "This page") -> None:
        self.session = session
        self.what = what


def may_open(role: Role, path: str) -> bool:
    kept = ONLY.get(role)
    return kept is None or path.startswith(kept)


def home_of(role: Role) -> str:
    """Where the role's day starts."""
    return "/console/worklists/authorizations" if role == Role.UTILIZATION_REVIEW else "/console/today"


def page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    session: ConsoleSession | None = context.get("session")
    role = session.principal.role if session else None
    labels = {key: label for key, label in LABELS.items() if role is None or may_open(role, _path_of(key))}
    sections = {key: label for key, label in SECTIONS.items() if role is None or may_open(role, f"/console/{key}")}
    html = TEMPLATES.get_template(template).render(labels=labels, sections=sections, **context)
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def _path_of(worklist: str) -> str:
    return "/console/today" if worklist == "today" else f"/console/worklists/{worklist}"


def not_for_role(_: Request, error: Exception) -> Response:
    assert isinstance(error, NotForRole)
    role = error.session.principal.role
    return page("not_for_role.html", 403, title="Not for your role", session=error.session, what=error.what,
                role=role.value, home=home_of(role), counts={})  # fmt: skip


def refused(_: Request, __: Exception) -> Response:
    return page("refused.html", 403, title="Not done", session=None)


def sign_in(
    request: Request, status: int = 200, error: str | None = None, ended: bool = False, out: bool = False
) -> Response:
    """The sign-in form, with a fresh double-submit CSRF token (there is no session yet to hold one)."""
    csrf = secrets.token_urlsafe(24)
    response = page("sign_in.html", status, title="Sign in", session=None, csrf=csrf, error=error, ended=ended,
                    out=out)  # fmt: skip
    response.set_cookie(SIGN_IN_CSRF_COOKIE, csrf, path="/console/sign-in", httponly=True, samesite="strict",
                        secure=over_https(request))  # fmt: skip
    return response


def over_https(request: Request) -> bool:
    """The browser reached the console over HTTPS: directly, by ``CONSOLE_BASE_URL``, or as a trusted proxy
    (``TRUSTED_PROXIES``) says in ``X-Forwarded-Proto`` (the services take no proxy header from anyone else)."""
    if request.url.scheme == "https" or request.app.state.console_base_url.startswith("https://"):
        return True
    peer = request.client.host if request.client else ""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip() == "https"
    return forwarded and _trusted(peer, request.app.state.trusted_proxies)


def _trusted(peer: str, networks: tuple[Network, ...]) -> bool:
    try:
        address = ip_address(peer)
    except ValueError:
        return False
    return any(address in network for network in networks)


def sign_in_csrf_matches(cookie: str | None, presented: str | None) -> bool:
    return bool(cookie and presented) and hmac.compare_digest((cookie or "").encode(), (presented or "").encode())


async def _names(rows: list[dict[str, Any]], session: ConsoleSession, directory: IntakeDirectory) -> tuple[
        list[dict[str, Any]], str | None]:  # fmt: skip
    """The rows with names from intake (asked with the person's token); when intake cannot answer, without, and
    why in words."""
    ids = episode_ids(rows)
    if session.principal.role not in NAME_ROLES:
        return with_names(rows, {}), "Names are shown to clinicians and intake staff only."
    try:
        found = await directory.names(ids, session.authorization) if ids else {}
    except HTTPException as error:
        return with_names(rows, {}), f"Names cannot be shown now: {error.detail}."
    return with_names(rows, found), None


async def _counts(caseload: Caseload) -> dict[str, int]:
    return await caseload.counts()


async def today(
    session: ConsoleSession,
    caseload: Caseload,
    directory: IntakeDirectory,
    day: date | None,
    done: dict[str, dict[str, Line]] | None = None,
) -> Response:
    """Today's group sessions with their rosters, and today's own appointments."""
    on = day or caseload.today()
    rows = await caseload.worklist("today", on)
    await caseload.store.audit(session.principal, "read_worklist", worklist="today", episode_ids=episode_ids(rows),
                               names=True, via="console")  # fmt: skip
    named, names_error = await _names(rows, session, directory)
    groups = [row for row in named if row["group_id"]]
    appointments = [row for row in named if not row["group_id"]]
    return page("today.html", title="Today", session=session, counts=await _counts(caseload), day=on,
                day_param="" if day is None else f"?date={on.isoformat()}", groups=groups, appointments=appointments,
                names_error=names_error, done=done or {}, statuses=STATUSES,
                time_of=lambda moment: local(moment, caseload.zone, "%H:%M"))  # fmt: skip


def local(moment: str | None, zone: ZoneInfo, form: str = "%a %d %b, %H:%M") -> str:
    """An ISO time from the projection, in the clinic's zone."""
    return datetime.fromisoformat(moment).astimezone(zone).strftime(form) if moment else ""


async def worklist(
    session: ConsoleSession,
    caseload: Caseload,
    directory: IntakeDirectory,
    name: str,
    done: dict[str, Line] | None = None,
    typed: dict[str, dict[str, str]] | None = None,
) -> Response:
    """``done``: an action's result by the key of its row (``ROW_KEYS``); ``typed``: what was typed in the row's
    form, kept when the service refused or could not be reached."""
    rows = await caseload.worklist(name)
    await caseload.store.audit(session.principal, "read_worklist", worklist=name, episode_ids=episode_ids(rows),
                               names=True, via="console")  # fmt: skip
    named, names_error = await _names(rows, session, directory)
    shown = {row.get(key) for row in rows for key in ROW_KEYS}
    elsewhere = [line for key, line in (done or {}).items() if key not in shown]  # the row left the list already
    return page("worklist.html", elsewhere=elsewhere, title=LABELS[name], session=session,
                counts=await _counts(caseload), name=name, rows=named, names_error=names_error, done=done or {},
                typed=typed or {}, patient_links=may_open(session.principal.role, "/console/episodes/"),
                role=session.principal.role.value, worklists=WORKLISTS[1:],
                when=lambda moment: local(moment, caseload.zone))  # fmt: skip


ROW_KEYS = ("alert_id", "recommendation_id", "authorization_id", "episode_id")
"""What an action's result is shown next to: its alert, recommendation or authorization, else its episode."""


def sheet_of(form: dict[str, str]) -> list[dict[str, str]]:
    """The sheet's lines: each member whose status was chosen (``status.<episode id>``)."""
    return [{"episode_id": key.removeprefix("status."), "status": value}
            for key, value in sorted(form.items()) if key.startswith("status.") and value in STATUSES]  # fmt: skip


def sheet_results(answer: Answer) -> dict[str, Line]:
    """care_plan's answer per member (``""``: the whole sheet's)."""
    if not answer.ok:
        return {"": Line(error=answer.error)}
    results: dict[str, Line] = {}
    for line in answer.body["lines"]:
        if line["outcome"] == "rejected":
            results[line["episode_id"]] = Line(error=line.get("detail") or line.get("code"))
        else:
            status = line["attendance"]["status"]
            results[line["episode_id"]] = Line(outcome=f"{status}: {line['outcome']}", status=status)
    return results
