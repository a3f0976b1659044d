"""What the Caseload page shows: the episodes (mine or all) by level, group, status and worklist, and a search by
name at intake with the person's own token. Rows from the projection are audited with the person; names come from
intake (which audits them) and appear only in the page's body, never in a URL."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi.responses import Response

from services.common.mongo import Document
from stepwise_contract.vocabulary import LEVEL_ORDER

from ..domain.worklists import FLAG_OF
from ..names import IntakeDirectory
from ..queries import LIST_LIMIT, Caseload, episode_ids
from ..store import holding
from .clients import Answer
from .pages import LABELS, _names, page
from .sessions import ConsoleSession

STATUSES = ("assessed", "waitlisted", "active", "referred_out", "graduated", "discharged")
LEVELS = tuple(level.value for level in LEVEL_ORDER)
SEARCH_FIELDS = ("name", "date_of_birth")
SEARCH_LIMIT = 20


@dataclass(frozen=True)
class Filters:
    """The list's filters (none is PII: they travel in the URL)."""

    view: Literal["mine", "all"] | None = None
    level: str | None = None
    group: str | None = None
    status: str | None = None
    worklist: str | None = None

    def shown(self, session: ConsoleSession) -> Literal["mine", "all"]:
        """Mine by default for a person the identity provider names (a static token names nobody)."""
        return self.view or ("mine" if session.principal.subject else "all")

    def query(self, session: ConsoleSession) -> Document | None:
        """The projection's filter; None for "mine" without a person to be the primary clinician."""
        chosen = {"level": self.level, "group_id": self.group, "status": self.status}
        query: Document = {key: value for key, value in chosen.items() if value}
        if self.worklist in FLAG_OF:
            query["flags"] = holding(FLAG_OF[self.worklist])
        if self.shown(session) == "mine":
            if session.principal.subject is None:
                return None
            query["primary_clinician"] = session.principal.subject
        return query


@dataclass(frozen=True)
class Search:
    """A search by name (and birth date) as typed, and what intake answered."""

    typed: dict[str, str] = field(default_factory=dict)
    found: list[dict[str, Any]] = field(default_factory=list)
    more: bool = False
    error: str | None = None
    error_field: str | None = None
    """The form field intake's refusal names (its words go next to it)."""


def search_body(form: dict[str, str]) -> dict[str, Any]:
    """intake's search request: what was typed (blank fields left out, intake says what is missing)."""
    body: dict[str, Any] = {key: form[key].strip() for key in SEARCH_FIELDS if form.get(key, "").strip()}
    return body | {"limit": SEARCH_LIMIT}


async def search_result(session: ConsoleSession, caseload: Caseload, form: dict[str, str], answer: Answer) -> Search:
    """intake's answer as rows: each episode found, with what the projection knows of it (audited)."""
    typed = {key: form.get(key, "") for key in SEARCH_FIELDS}
    if not answer.ok:
        error = "intake cannot be reached: nothing was searched; try again" if answer.down else answer.error
        named = next((key for key in SEARCH_FIELDS if f"refused: {key}:" in (error or "")), None)
        return Search(typed, error=error, error_field=named or "name")
    found = {e["episode_id"]: (p, e) for p in answer.body["patients"] for e in p["episodes"]}
    rows = {row["episode_id"]: row for row in await caseload.rows({"_id": {"$in": sorted(found)}})} if found else {}
    await caseload.store.audit(session.principal, "search_caseload", episode_ids=sorted(rows), via="console")
    shown = [_found(patient, episode, rows.get(episode_id)) for episode_id, (patient, episode) in found.items()]
    return Search(typed, found=shown, more=answer.body.get("more", False))


def _found(patient: dict[str, Any], episode: dict[str, Any], row: dict[str, Any] | None) -> dict[str, Any]:
    known = row or {}
    return {"episode_id": episode["episode_id"], "name": patient["name"], "date_of_birth": patient["date_of_birth"],
            "program": episode["program"], "opened_at": episode["opened_at"][:10],
            "status": known.get("status") or f"{episode['status']} at intake", "level": known.get("level"),
            "group_id": known.get("group_id")}  # fmt: skip


async def caseload_page(
    session: ConsoleSession,
    caseload: Caseload,
    directory: IntakeDirectory,
    filters: Filters,
    search: Search | None = None,
) -> Response:
    """The list (not after a search: the page then shows what was found) and both forms."""
    query = filters.query(session)
    rows: list[dict[str, Any]] = []
    names_error = None
    if search is None and query is not None:
        rows = await caseload.rows(query)
        await caseload.store.audit(session.principal, "read_caseload", filters={k: str(v) for k, v in query.items()},
                                   episode_ids=episode_ids(rows), names=True, via="console")  # fmt: skip
        rows, names_error = await _names(rows, session, directory)
    return page("caseload.html", title="Caseload", page_section="caseload", session=session,
                counts=await caseload.counts(), filters=filters, view=filters.shown(session), rows=rows,
                no_person=query is None, names_error=names_error, search=search or Search(),
                searched=search is not None, limited=len(rows) >= LIST_LIMIT, levels=LEVELS, statuses=STATUSES,
                groups=await caseload.store.groups(), worklists={name: LABELS[name] for name in FLAG_OF},
                flag_labels=_flag_labels())  # fmt: skip


def _flag_labels() -> dict[str, str]:
    return {flag: LABELS[name] for name, flag in FLAG_OF.items()}
