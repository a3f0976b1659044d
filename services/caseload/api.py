"""Caseload's HTTP API: the caseload, the worklists (and a stream of their changes), an episode's timeline, the
census. Names only for staff who ask (``names=true``), looked up at intake with the caller's own token. Every read
is audited with the person (who, which list or episode, when).

HTTP only: the reads are ``queries.py``'s."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse

from services.common.auth import Principal
from services.common.errors import invalid_input
from services.common.mongo import Document
from services.common.schemas import V1_ERRORS, beyond_schema, errors
from services.common.utc import IsoDate, utc_now

from .deps import NAME_ROLES, CaseloadDep, Directory, Reader, Staff
from .domain.worklists import FLAG_OF, WORKLISTS
from .queries import Caseload, episode_ids, with_names
from .schemas import CaseloadOut, SearchIn, TimelineOut, WorklistName, WorklistOut
from .store import holding, stamp

router = APIRouter(prefix="/v1", tags=["caseload"], responses=V1_ERRORS)

Names = Annotated[bool, Query(description="Join each patient's name and birth date (clinician, intake staff).")]
Flag = Annotated[str | None, Query(description=f"One of {sorted(FLAG_OF.values())}.")]


async def _named(
    rows: list[dict[str, Any]], names: bool, request: Request, by: Principal, directory: Directory
) -> list[dict[str, Any]]:
    """The rows, with names when asked for by someone who may see them (intake audits the person)."""
    if not names:
        return rows
    if by.role not in NAME_ROLES:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "names are for clinicians and intake staff")
    ids = episode_ids(rows)
    found = await directory.names(ids, request.headers["authorization"]) if ids else {}
    return with_names(rows, found)


@router.get(
    "/caseload",
    summary="Episodes with their level, status, group, attendance, alerts, measures … (audited)",
    openapi_extra=beyond_schema(not_a_person="`mine=true` is asked by a person signed in at the identity provider"),
)
async def get_caseload(
    request: Request,
    caseload: CaseloadDep,
    directory: Directory,
    by: Reader,
    status_: Annotated[str | None, Query(alias="status")] = None,
    level: str | None = None,
    group: str | None = None,
    program: str | None = None,
    mine: Annotated[bool, Query(description="Only the episodes whose primary clinician is the caller.")] = False,
    flag: Flag = None,
    names: Names = False,
) -> CaseloadOut:
    query: Document = {key: value for key, value in
                       {"status": status_, "level": level, "group_id": group, "program": program}.items()
                       if value is not None}  # fmt: skip
    if flag is not None:
        query["flags"] = holding(flag)
    if mine:
        if by.subject is None:
            raise invalid_input(("query", "mine"), "the caller is not a person signed in at the identity provider",
                                "not_a_person")  # fmt: skip
        query["primary_clinician"] = by.subject
    rows = await caseload.rows(query)
    await caseload.store.audit(by, "read_caseload", filters={k: str(v) for k, v in query.items()},
                               episode_ids=episode_ids(rows), names=names)  # fmt: skip
    return CaseloadOut(episodes=await _named(rows, names, request, by, directory))


@router.post(
    "/caseload/search",
    summary="Find episodes by the patient's name or birth date, through intake (staff)",
    openapi_extra=beyond_schema(
        name_too_short="a word of `name` has at least 3 letters (intake's rule)",
        nothing_to_search="`name` or `date_of_birth` is given (intake's rule)",
    ),
)
async def search_caseload(
    body: SearchIn, request: Request, caseload: CaseloadDep, directory: Directory, by: Staff
) -> CaseloadOut:
    answer = await directory.search(body.model_dump(mode="json", exclude_none=True), request.headers["authorization"])
    found = {e["episode_id"]: p for p in answer["patients"] for e in p["episodes"]}
    rows = await caseload.rows({"_id": {"$in": sorted(found)}}) if found else []
    await caseload.store.audit(by, "search_caseload", episode_ids=episode_ids(rows))
    names = {episode: {"name": p["name"], "date_of_birth": p["date_of_birth"]} for episode, p in found.items()}
    return CaseloadOut(episodes=with_names(rows, names))


@router.get("/worklists", summary="How many episodes each worklist holds now")
async def get_worklists(caseload: CaseloadDep, by: Reader) -> dict[str, int]:
    await caseload.store.audit(by, "read_worklist_counts")
    return await caseload.counts()


@router.get("/worklists/stream", summary="Server-sent events: which worklists changed (bearer-authenticated)")
async def stream_worklists(
    request: Request,
    caseload: CaseloadDep,
    by: Reader,
    once: Annotated[
        bool, Query(description="Close after the first change (for clients that cannot hold a stream).")
    ] = False,
) -> StreamingResponse:
    await caseload.store.audit(by, "stream_worklists")
    poll = request.app.state.stream_poll_seconds
    return StreamingResponse(worklist_changes(request, caseload, poll, once), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store"})  # fmt: skip


async def worklist_changes(request: Request, caseload: Caseload, poll: float, once: bool) -> AsyncIterator[str]:
    """One ``worklists`` event per poll that saw episodes change: the worklists they are on (no ids, no names)."""
    since = stamp(utc_now())
    yield "event: ready\ndata: {}\n\n"
    while not await request.is_disconnected():
        await asyncio.sleep(poll)
        changed = await caseload.store.changed_since(since)
        if not changed:
            continue
        since = max(document["changed_us"] for document in changed)
        lists = {name for d in changed for name, flag in FLAG_OF.items() if flag in d.get("flags", [])}
        if any(caseload.today().isoformat() in d.get("session_days", []) for d in changed):
            lists.add("today")
        data = {"changed": sorted(lists), "episodes": len(changed), "counts": await caseload.counts()}
        yield f"event: worklists\ndata: {json.dumps(data)}\n\n"
        if once:
            return


@router.get("/worklists/{name}", summary="One worklist's rows (audited)")
async def get_worklist(
    name: WorklistName,
    request: Request,
    caseload: CaseloadDep,
    directory: Directory,
    by: Reader,
    names: Names = False,
    day: Annotated[IsoDate | None, Query(alias="date", description="For `today`: another day.")] = None,
) -> WorklistOut:
    rows = await caseload.worklist(name, day)
    await caseload.store.audit(by, "read_worklist", worklist=name, episode_ids=episode_ids(rows), names=names)
    on = (day or caseload.today()) if name == "today" else None
    return WorklistOut(worklist=name, date=on, rows=await _named(rows, names, request, by, directory))


@router.get("/episodes/{episode_id}/timeline", responses=errors(404), summary="The episode's events, oldest first")
async def get_timeline(
    episode_id: str,
    caseload: CaseloadDep,
    by: Reader,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> TimelineOut:
    entries = await caseload.store.timeline(episode_id)
    if entries is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "episode not found")
    await caseload.store.audit(by, "read_timeline", episode_ids=[episode_id])
    page = [{"type": e.type, "time": e.time, "summary": e.summary} for e in entries[offset : offset + limit]]
    more = offset + limit < len(entries)
    return TimelineOut(episode_id=episode_id, entries=page, next_offset=offset + limit if more else None)


@router.get("/census", summary="Episodes in care per level, group and program on a day; movements over a period")
async def get_census(
    caseload: CaseloadDep,
    by: Reader,
    day: Annotated[IsoDate | None, Query(alias="date", description="Default: today, in the clinic's zone.")] = None,
    since: Annotated[IsoDate | None, Query(description="Movements from this day (default: `date`).")] = None,
    until: Annotated[IsoDate | None, Query(description="Movements through this day (default: `date`).")] = None,
) -> dict[str, Any]:
    await caseload.store.audit(by, "read_census")
    return await caseload.census(day or caseload.today(), since, until)


__all__ = ["WORKLISTS", "router"]
