"""What the Admin page shows (admin role only): each service's set-aside events with their reason and replays (a
replay is the service's own, with the admin's token, recorded on the event there), and intake's PII audit of one
person, asked server-side with the person named in a POSTed form (never in a URL)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import Response

from services.common.service import list_set_aside_events, replay_set_aside_event

from ..queries import Caseload
from .clients import SERVICES, Answer, Services
from .pages import Line, local, page
from .sessions import ConsoleSession

SHELVES = (*SERVICES, "caseload")
"""Every service that consumes events, so may set some aside (caseload's own are read in this process)."""
LISTED = 100
AUDIT_LIMIT = 200


@dataclass(frozen=True)
class Shelf:
    service: str
    events: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class Audit:
    """The PII audit asked for one person: what was typed, the entries, or why none can be shown."""

    person: str = ""
    entries: list[dict[str, Any]] | None = None
    error: str | None = None


async def _shelf(service: str, request: Request, session: ConsoleSession, services: Services) -> Shelf:
    if service == "caseload":
        found = await list_set_aside_events(request, session.principal, None, LISTED)
        return Shelf(service, [event.model_dump(mode="json") for event in found])
    answer = await services.get(service, "/v1/set-aside-events", session.authorization, {"limit": LISTED})
    return Shelf(service, answer.body) if answer.ok else Shelf(service, error=answer.error)


async def replay(service: str, event_id: str, request: Request, session: ConsoleSession, services: Services) -> Line:
    """Replay one event at its service; what came of it in words."""
    if service == "caseload":
        try:
            replayed = (await replay_set_aside_event(event_id, request, session.principal)).model_dump(mode="json")
        except HTTPException as refused:
            return Line(error=f"caseload refused: {refused.detail}")
        return _outcome(Answer(True, replayed))
    path = f"/v1/set-aside-events/{event_id}/replay"
    return _outcome(await services.post(service, path, session.authorization))


def _outcome(answer: Answer) -> Line:
    if not answer.ok:
        return Line(error=answer.error)
    last = (
        answer.body["replays"][-1]
        if answer.body.get("replays")
        else {"outcome": "already_applied", "detail": "replayed and applied before"}
    )
    words = f"{last['outcome'].replace('_', ' ')}: {last['detail']}"
    return Line(outcome=words) if last["outcome"] != "set_aside_again" else Line(error=words)


async def audit_of(form: dict[str, str], session: ConsoleSession, services: Services) -> Audit:
    person = form.get("person", "").strip()
    if not person:
        return Audit(error="person: enter a username, a subject, or a token's fingerprint (token:…)")
    params = {"person": person, "limit": AUDIT_LIMIT}
    answer = await services.get("intake", "/v1/audit", session.authorization, params)
    return Audit(person, answer.body) if answer.ok else Audit(person, error=answer.error)


async def admin_page(
    request: Request,
    session: ConsoleSession,
    caseload: Caseload,
    services: Services,
    done: dict[str, Line] | None = None,
    audit: Audit | None = None,
) -> Response:
    shelves = await asyncio.gather(*(_shelf(service, request, session, services) for service in SHELVES))
    listed = {f"{shelf.service}/{event['id']}" for shelf in shelves for event in shelf.events}
    elsewhere = [line for key, line in (done or {}).items() if key not in listed]
    return page("admin.html", title="Admin", page_section="admin", session=session, counts=await caseload.counts(),
                shelves=shelves, done=done or {}, elsewhere=elsewhere, audit=audit or Audit(), audit_limit=AUDIT_LIMIT,
                when=lambda moment: local(moment, caseload.zone, "%Y-%m-%d %H:%M"))  # fmt: skip
