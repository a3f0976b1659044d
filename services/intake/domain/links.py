"""Questionnaire links (pure): what a link is, its life, and the patient's form read into instrument answers.

A link is made for a patient to answer due instruments from their phone. Its token is drawn at random by the
caller (``changes.make_link``); intake keeps only the token's SHA-256 (``token_hash``), so the stored record cannot
be turned back into a working link. A link is ``open`` until it is answered (``used``) or its time runs out
(``expired``). The page offers the instruments whose items it can show: PHQ-9 and GAD-7 (free to reproduce).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel

from services.common.utc import UtcDatetime
from stepwise_contract import QUESTIONNAIRES as CONTRACT_QUESTIONNAIRES
from stepwise_contract import InstrumentResult, Questionnaire

LINK_MEASURES = uuid.UUID("5b0b9f57-3c1e-4f0e-a7a4-6a3c0f1f8d21")
"""The namespace of the id of the measure a link's answers become (one per link: a repeated post finds it)."""

LinkState = Literal["open", "used", "expired"]


QUESTIONNAIRES: Mapping[str, Questionnaire] = {name: CONTRACT_QUESTIONNAIRES[name] for name in ("phq9", "gad7")}
"""The instruments the patient page offers, with their published item wording (the contract's: the staff console's
forms show the same); the scoring stays in ``instruments.py``."""


class QuestionnaireLink(BaseModel):
    """A link as intake keeps it: the token's hash, never the token."""

    token_hash: str
    episode_id: str
    instruments: list[str]
    created_at: UtcDatetime
    expires_at: UtcDatetime
    used_at: UtcDatetime | None = None
    used: bool = False
    """Explicit (not ``used_at is None``): a query for unused links never depends on how a store treats null."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_link(token: str, episode_id: str, instruments: Sequence[str], now: datetime, hours: int) -> QuestionnaireLink:
    return QuestionnaireLink(token_hash=token_hash(token), episode_id=episode_id, instruments=list(instruments),
                             created_at=now, expires_at=now + timedelta(hours=hours))  # fmt: skip


def link_state(link: QuestionnaireLink, now: datetime) -> LinkState:
    if link.used:
        return "used"
    return "open" if now < link.expires_at else "expired"


def measure_id_of(link: QuestionnaireLink) -> str:
    return str(uuid.uuid5(LINK_MEASURES, link.token_hash))


def answers_from_form(form: Mapping[str, str], instruments: Sequence[str]) -> tuple[dict[str, list[int]], list[str]]:
    """The form's ``{instrument}.{item}`` fields (items from 1) as answers by instrument, and the fields missing or
    out of range (named, never their values)."""
    answers: dict[str, list[int]] = {}
    missing: list[str] = []
    for instrument in instruments:
        questionnaire = QUESTIONNAIRES[instrument]
        values: list[int] = []
        for number in range(1, len(questionnaire.items) + 1):
            field = f"{instrument}.{number}"
            raw = form.get(field, "")
            if raw.isdigit() and int(raw) < len(questionnaire.options):
                values.append(int(raw))
            else:
                missing.append(field)
        answers[instrument] = values
    return answers, missing


def shows_crisis_resources(results: Sequence[InstrumentResult]) -> bool:
    """A positive suicide item: PHQ-9 item 9 above 0, or a C-SSRS answer that calls for a safety alert."""
    suicide_flags = {("phq9", "same_day_review"), ("cssrs", "immediate_safety_alert")}
    return any((result.instrument, flag) in suicide_flags for result in results for flag in result.flags)
