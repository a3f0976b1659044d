"""What the Intake pages show: register a patient, open an episode, record an assessment item by item, and intake's
answer (the recommended level, its rationale, a safety alert raised).

Every step is intake's (``POST /v1/patients``, ``/v1/patients/{id}/episodes``, ``/v1/episodes/{id}/assessments``
after its ``/preview``), called with the person's token; the console only turns the forms into intake's bodies
and intake's answers into words. The choices (programs, tracks, levels, override reasons) and the instruments' words
are the contract's vocabulary. Between steps only pseudonymous ids travel (in paths): never a name or a birth date."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any, get_args

from fastapi import HTTPException
from fastapi.responses import Response

from services.common.auth import Role
from stepwise_contract import (
    CSSRS_QUESTIONS,
    DIMENSION_RATINGS,
    DIMENSIONS,
    INSTRUMENTS,
    LEVEL_ORDER,
    PROGRAMS,
    QUESTIONNAIRES,
    OverrideReason,
    Track,
)

from ..names import IntakeDirectory
from ..queries import Caseload
from . import forms
from .clients import Answer
from .pages import page
from .sessions import ConsoleSession

SECTION = "intake"
TRACKS: tuple[str, ...] = get_args(Track)
OVERRIDE_REASONS: tuple[str, ...] = get_args(OverrideReason)
LISTS = ("phq9", "gad7")
"""The instruments answered item by item on a frequency scale (a list of answers in intake's request)."""
YES_NO = {"yes": True, "no": False}

PATIENT_FIELDS = ("name", "date_of_birth", "email", "phone")
PATIENT_CONTROLS = (*PATIENT_FIELDS, "confirm_new")
EPISODE_CONTROLS = ("program", "track")
ASSESSMENT_CONTROLS = (
    *(f"dimensions.{name}" for name in DIMENSIONS),
    *(f"instruments.{name}" for name in (*LISTS, "cssrs")),
    *(f"instruments.{name}.{n}" for name in LISTS for n in range(len(QUESTIONNAIRES[name].items))),
    *(f"instruments.cssrs.{question.name}" for question in CSSRS_QUESTIONS),
    "placement",
    "placement.chosen_level",
    "placement.reason_code",
    "placement.note",
)
"""Each control of the assessment form by the request field it fills (``forms``: intake's 422 finds it by name)."""


def new_key() -> str:
    """A form's Idempotency-Key: the same form sent twice (a double click, a retry) records once."""
    return uuid.uuid4().hex


def key_for(answer: Answer, form: Mapping[str, str]) -> str:
    """The key the form shown again carries: the same after intake could not be reached (the first request may have
    been recorded: a retry finds it), a new one after a refusal (the next one is another request)."""
    return (form.get("key") or new_key()) if answer.down else new_key()


def idempotent(form: Mapping[str, str]) -> dict[str, str]:
    return {"Idempotency-Key": form["key"]} if form.get("key") else {}


def _filled(form: Mapping[str, str], name: str) -> str | None:
    value = form.get(name, "").strip()
    return value or None


def patient_body(form: Mapping[str, str]) -> dict[str, Any]:
    """What was typed, as intake takes it: a field left empty is left out (intake says which one it needs)."""
    body: dict[str, Any] = {name: value for name in PATIENT_FIELDS if (value := _filled(form, name)) is not None}
    return body | ({"confirm_new": True} if form.get("confirm_new") == "yes" else {})


def episode_body(form: Mapping[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {"program": form.get("program", "")}
    return body | ({"track": track} if (track := _filled(form, "track")) else {})


def _number(raw: str | None) -> int | str | None:
    """A radio's value as intake counts it; anything else is passed on for intake to refuse by name."""
    if raw is None or raw == "":
        return None
    return int(raw) if raw.isdigit() else raw


PLACE = "placement"
"""The ``decision`` of the button that records at another level than the recommended one (with ``placement``)."""


def assessment_body(form: Mapping[str, str]) -> dict[str, Any]:
    """The form as intake's assessment: its answers (``answers_body``), and the placement when the clinician chose
    "Place at another level" (its fields typed are left out for "Record at" the recommended level)."""
    placement = {name: value for name in ("chosen_level", "reason_code", "note")
                 if (value := _filled(form, f"placement.{name}")) is not None}  # fmt: skip
    return answers_body(form) | ({"placement": placement} if form.get("decision") == PLACE else {})


def fingerprint(answers: Mapping[str, Any]) -> str:
    """The answers a recommendation was previewed for (a hidden field of the preview's form): recording checks the
    answers are still those, so "Record at <level>" always names the level intake recommends for them."""
    return hashlib.sha256(json.dumps(answers, sort_keys=True).encode()).hexdigest()[:32]


def previewed(form: Mapping[str, str]) -> bool:
    """The form's answers are those whose recommendation the page showed."""
    return form.get("previewed") == fingerprint(answers_body(form))


def answers_body(form: Mapping[str, str]) -> dict[str, Any]:
    """The form's answers as intake takes them: the six ratings, each instrument with an item answered (its
    unanswered items as null: intake names them)."""
    dimensions = {name: _number(form.get(f"dimensions.{name}")) for name in DIMENSIONS}
    body: dict[str, Any] = {"dimensions": {name: value for name, value in dimensions.items() if value is not None}}
    instruments: dict[str, Any] = {}
    for name in LISTS:
        items = [_number(form.get(f"instruments.{name}.{n}")) for n in range(len(QUESTIONNAIRES[name].items))]
        if any(item is not None for item in items):
            instruments[name] = items
    cssrs = {q.name: YES_NO.get(form[f"instruments.cssrs.{q.name}"], form[f"instruments.cssrs.{q.name}"])
             for q in CSSRS_QUESTIONS if form.get(f"instruments.cssrs.{q.name}")}  # fmt: skip
    if cssrs:
        instruments["cssrs"] = cssrs
    if instruments:
        body["instruments"] = instruments
    return body


async def _shown(template: str, status: int, session: ConsoleSession, caseload: Caseload, **context: Any) -> Response:
    return page(template, status, session=session, counts=await caseload.counts(), page_section=SECTION,
                errors=context.pop("errors", {}), given=context.pop("given", {}), **context)  # fmt: skip


def _status(answer: Answer | None) -> int:
    """The page's status: intake's refusal's (422, 409 …), 503 when it could not be reached."""
    if answer is None or answer.ok:
        return 200
    return 503 if answer.down else answer.status or 422


async def register(
    session: ConsoleSession, caseload: Caseload, form: Mapping[str, str] | None = None, answer: Answer | None = None
) -> Response:
    """The registration form: empty, or as typed with what intake said (a patient registered already: theirs)."""
    errors = forms.field_errors(answer, PATIENT_CONTROLS) if answer else {}
    refusal = answer.body if answer and answer.status == 409 and isinstance(answer.body, dict) else {}
    exists = refusal.get("patient_id")  # registered already: that patient's id
    given = forms.typed(form or {}) | {"key": key_for(answer, form) if answer and form else new_key()}
    return await _shown("intake_patient.html", _status(answer), session, caseload, title="Register a patient",
                        step=1, errors=errors, given=given, exists=exists)  # fmt: skip


async def episode_form(
    session: ConsoleSession,
    caseload: Caseload,
    patient: Answer,
    patient_id: str,
    form: Mapping[str, str] | None = None,
    answer: Answer | None = None,
) -> Response:
    """The episode form for a patient (their name from intake, read with the person's token: intake audits it)."""
    errors = forms.field_errors(answer, EPISODE_CONTROLS) if answer else {}
    given = forms.typed(form or {}) | {"key": key_for(answer, form) if answer and form else new_key()}
    person = patient.body if patient.ok else None
    return await _shown("intake_episode.html", _status(answer), session, caseload, title="Open an episode",
                        step=2, errors=errors, given=given, patient_id=patient_id, person=person,
                        person_error=None if patient.ok else patient.error, programs=PROGRAMS,
                        tracks=TRACKS)  # fmt: skip


async def name_of(episode_id: str, session: ConsoleSession, directory: IntakeDirectory) -> tuple[
        dict[str, Any] | None, str | None]:  # fmt: skip
    """The episode's patient's name and birth date from intake (for this page only), or why not in words."""
    try:
        found = await directory.names([episode_id], session.authorization)
    except HTTPException as error:
        return None, f"The patient's name cannot be shown now: {error.detail}."
    return found.get(episode_id), None


async def assessment_form(
    session: ConsoleSession,
    caseload: Caseload,
    episode_id: str,
    person: tuple[dict[str, Any] | None, str | None],
    form: Mapping[str, str] | None = None,
    answer: Answer | None = None,
    preview: Answer | None = None,
) -> Response:
    """The assessment item by item: the six dimensions, PHQ-9, GAD-7 and the C-SSRS screener. Once previewed
    (intake's ``/preview`` answered ``preview``), the same answers with intake's recommendation, its rationale and
    the safety alert recording would raise, and the choice: record at that level or (clinicians) place at another
    with a reason. ``answer``: intake's refusal (of the preview or the recording), shown next to the fields."""
    shown = preview.body if preview and preview.ok else None
    errors = forms.field_errors(answer, ASSESSMENT_CONTROLS) if answer else {}
    key = key_for(answer, form) if answer and form else (form or {}).get("key") or new_key()  # a preview's: the form's
    given = forms.typed(form or {}) | {"key": key}
    levels = [level for level in LEVEL_ORDER if not shown or level.value != shown["recommended_level"]]
    return await _shown("intake_assessment.html", _status(answer), session, caseload, title="Assessment",
                        step=4 if shown else 3, errors=errors, given=given, episode_id=episode_id, person=person[0],
                        person_error=person[1], dimensions=DIMENSIONS, ratings=DIMENSION_RATINGS,
                        questionnaires=[QUESTIONNAIRES[name] for name in LISTS], cssrs=CSSRS_QUESTIONS,
                        clinician=session.principal.role == Role.CLINICIAN, levels=levels,
                        reasons=OVERRIDE_REASONS, words=in_words, preview=shown, instruments=INSTRUMENTS,
                        previewed=fingerprint(answers_body(form or {})) if shown else None)  # fmt: skip


async def result(
    session: ConsoleSession,
    caseload: Caseload,
    episode_id: str,
    assessment_id: str,
    history: Answer,
    person: tuple[dict[str, Any] | None, str | None],
) -> Response:
    """intake's answer to the assessment: the recommended level and its rationale, a safety alert raised, the
    scores and a clinician's placement (read back from intake, which audits the read)."""
    found = None
    if history.ok:
        found = next((a for a in history.body["assessments"] if a["assessment_id"] == assessment_id), None)
    error = history.error if not history.ok else None if found else "intake does not know this assessment."
    status = 503 if history.down else 404 if error else 200
    return await _shown("intake_result.html", status, session, caseload, title="Recommendation", step=4,
                        episode_id=episode_id, assessment=found, error=error, person=person[0],
                        person_error=person[1], instruments=INSTRUMENTS, words=in_words)  # fmt: skip


def in_words(code: str | None) -> str:
    """A code of intake's (a reason, a band, a safety reason) as words: ``patient_declined_higher_level`` ->
    ``patient declined higher level``."""
    return (code or "").replace("_", " ")
