"""What a patient's page shows (``/console/episodes/<episode id>``): the name from intake, level, group and status
from the projection, the score chart, the treatment plan, attendance, the timeline, consents and messages sent.

Each part comes from the service that owns it, asked with the person's own token (each service audits its read);
the projection's read is audited here. A part whose service cannot answer says which and why, and the rest of the
page still shows. The treatment plan's form keeps what was typed when care_plan cannot take it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import HTTPException
from fastapi.responses import Response
from markupsafe import Markup

from stepwise_contract import INSTRUMENTS

from ..names import IntakeDirectory
from ..queries import Caseload
from . import chart, plan_form
from .clients import Answer, Services
from .pages import Line, local, page
from .sessions import ConsoleSession

CHARTED = ("phq9", "gad7")
"""The instruments the page charts over time (the others' scores are in the timeline)."""
TIMELINE_SHOWN = 100
MESSAGES_SHOWN = 50
DONE = {
    "saved": "Saved as a new version: it is in force once signed.",
    "signed": "Signed: this version is in force.",
    "reviewed": "Review recorded.",
}
TARGETS = [(name, vocabulary.label) for name, vocabulary in INSTRUMENTS.items() if vocabulary.max_total is not None]
"""The instruments an objective may be measured by (those with a total)."""


@dataclass(frozen=True)
class Part:
    """One part of the page from a service: its data, or that there is none yet, or why it cannot be shown."""

    data: Any = None
    missing: bool = False
    error: str | None = None


def part_of(answer: Answer) -> Part:
    if answer.ok:
        return Part(answer.body)
    if answer.status == 404:
        return Part(missing=True)
    return Part(error=answer.error)


async def name_of(episode_id: str, session: ConsoleSession, directory: IntakeDirectory) -> Part:
    """The patient's name and birth date, from intake with the person's token (never stored, never in a URL)."""
    try:
        found = await directory.names([episode_id], session.authorization)
    except HTTPException as error:
        return Part(error=f"The name cannot be shown now: {error.detail}.")
    return Part(found[episode_id]) if episode_id in found else Part(missing=True)


async def _answers(services: Services, episode_id: str, authorization: str) -> dict[str, Part]:
    """Each service's part, asked at once."""
    episode = f"/v1/episodes/{episode_id}"
    asked = {
        "measures": services.get("intake", f"{episode}/measures", authorization),
        "consents": services.get("intake", f"{episode}/consents", authorization),
        "care_plan": services.get("care_plan", f"{episode}/care-plan", authorization),
        "plan": services.get("care_plan", f"{episode}/treatment-plan", authorization),
        "messages": services.get("notifications", "/v1/notifications", authorization,
                                 {"episode_id": episode_id, "limit": MESSAGES_SHOWN}),
    }  # fmt: skip
    answers = await asyncio.gather(*asked.values())
    return {name: part_of(answer) for name, answer in zip(asked, answers, strict=True)}


async def patient(
    session: ConsoleSession,
    caseload: Caseload,
    directory: IntakeDirectory,
    services: Services,
    episode_id: str,
    done: str | None = None,
    lines: Mapping[str, Line] | None = None,
) -> Response:
    """The patient's page; ``lines``: what became of an action on it (``sign``, ``review``), next to its button."""
    rows = await caseload.rows({"_id": episode_id}, limit=1)
    if not rows:
        return page("patient.html", 404, title="Patient", session=session, counts=await caseload.counts(), row=None,
                    page_section="caseload")  # fmt: skip
    timeline = await caseload.store.timeline(episode_id) or []
    await caseload.store.audit(session.principal, "read_patient", episode_ids=[episode_id], names=True,
                               via="console")  # fmt: skip
    person, parts = await asyncio.gather(name_of(episode_id, session, directory),
                                         _answers(services, episode_id, session.authorization))  # fmt: skip
    zone = caseload.zone
    return page(
        "patient.html", title="Patient", session=session, counts=await caseload.counts(), page_section="caseload",
        episode_id=episode_id, row=rows[0], person=person, parts=parts, charts=charts(parts["measures"], zone),
        attendance=attendance(parts["care_plan"], zone), timeline=list(reversed(timeline))[:TIMELINE_SHOWN],
        timeline_total=len(timeline), done=DONE.get(done or ""), lines=lines or {}, targets=dict(TARGETS),
        when=lambda moment: local(moment if isinstance(moment, str) else moment.isoformat(), zone),
        day=lambda moment: local(moment, zone, "%d %b %Y"),
    )  # fmt: skip


def charts(measures: Part, zone: Any) -> list[dict[str, Any]]:
    """Each charted instrument's SVG and its scores for the table beside it."""
    if measures.data is None:
        return []
    found = []
    for series in measures.data["series"]:
        vocabulary = INSTRUMENTS.get(series["instrument"])
        if series["instrument"] not in CHARTED or vocabulary is None or not series["points"]:
            continue
        scores = [chart.Score(datetime.fromisoformat(point["recorded_at"]).astimezone(zone), point["score"],
                              point["classification"].replace("_", " ")) for point in series["points"]]  # fmt: skip
        drawn = chart.Series(series["instrument"], vocabulary.label, vocabulary.max_total or 0, scores,
                             series["points"][0]["baseline_score"], series.get("reliable_change"),
                             series.get("caseness"))  # fmt: skip
        found.append({"label": vocabulary.label, "svg": Markup(chart.svg(drawn)), "points": series["points"],  # noqa: S704 - escaped in chart.svg
                      "series": drawn})  # fmt: skip
    return found


def attendance(care_plan: Part, zone: Any) -> dict[str, Any]:
    """The sessions recorded (attended, late, missed, excused), oldest first, with each status's count."""
    if care_plan.data is None:
        return {"rows": [], "counts": {}}
    sessions = {s["session_id"]: s for s in (care_plan.data.get("schedule") or {}).get("sessions", [])}
    rows = []
    for session_id, record in care_plan.data.get("attendance", {}).items():
        session = sessions.get(session_id, {})
        starts = session.get("starts_at")
        rows.append({"session_id": session_id, "starts_at": starts or "", "kind": session.get("kind", ""),
                     "when": local(starts, zone) if starts else session_id, **record})  # fmt: skip
    rows.sort(key=lambda row: (row["starts_at"], row["session_id"]))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return {"rows": rows, "counts": counts}


async def plan_edit(
    session: ConsoleSession,
    caseload: Caseload,
    directory: IntakeDirectory,
    services: Services,
    episode_id: str,
    rows: plan_form.Rows | None = None,
    errors: Mapping[str, str] | None = None,
) -> Response:
    """The treatment plan's form: the current version's rows (or an empty plan), or what was typed with care_plan's
    errors next to their fields."""
    notice = None
    if rows is None:
        answer = part_of(await services.get("care_plan", f"/v1/episodes/{episode_id}/treatment-plan",
                                            session.authorization))  # fmt: skip
        notice = answer.error
        rows = plan_form.from_version(answer.data["current"]["problems"]) if answer.data else plan_form.empty_plan()
    person = await name_of(episode_id, session, directory)
    return page("treatment_plan.html", title="Treatment plan", session=session, counts=await caseload.counts(),
                page_section="caseload", episode_id=episode_id, person=person, rows=rows, errors=errors or {},
                notice=notice, targets=TARGETS)  # fmt: skip


def put_errors(answer: Answer) -> dict[str, str]:
    """care_plan's refusal of the plan, by form field (``""``: the whole form's)."""
    detail = answer.body.get("detail") if isinstance(answer.body, dict) and answer.status == 422 else None
    found = plan_form.field_errors(detail)
    return found or {"": answer.error or "care plan refused the plan"}
