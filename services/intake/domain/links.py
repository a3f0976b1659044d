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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel

from services.common.utc import UtcDatetime
from stepwise_contract import InstrumentResult

LINK_MEASURES = uuid.UUID("5b0b9f57-3c1e-4f0e-a7a4-6a3c0f1f8d21")
"""The namespace of the id of the measure a link's answers become (one per link: a repeated post finds it)."""

LinkState = Literal["open", "used", "expired"]


@dataclass(frozen=True)
class Questionnaire:
    instrument: str
    title: str
    stem: str
    items: tuple[str, ...]
    options: tuple[str, ...]
    """Answer labels, scored 0, 1, 2 … in order."""


FREQUENCY = ("Not at all", "Several days", "More than half the days", "Nearly every day")
STEM = "Over the last 2 weeks, how often have you been bothered by any of the following problems?"
QUESTIONNAIRES: Mapping[str, Questionnaire] = {
    "phq9": Questionnaire(
        "phq9",
        "PHQ-9",
        STEM,
        (
            "Little interest or pleasure in doing things",
            "Feeling down, depressed, or hopeless",
            "Trouble falling or staying asleep, or sleeping too much",
            "Feeling tired or having little energy",
            "Poor appetite or overeating",
            "Feeling bad about yourself, or that you are a failure or have let yourself or your family down",
            "Trouble concentrating on things, such as reading the newspaper or watching television",
            "Moving or speaking so slowly that other people could have noticed? Or the opposite, being so fidgety "
            "or restless that you have been moving around a lot more than usual",
            "Thoughts that you would be better off dead or of hurting yourself in some way",
        ),
        FREQUENCY,
    ),
    "gad7": Questionnaire(
        "gad7",
        "GAD-7",
        STEM,
        (
            "Feeling nervous, anxious or on edge",
            "Not being able to stop or control worrying",
            "Worrying too much about different things",
            "Trouble relaxing",
            "Being so restless that it is hard to sit still",
            "Becoming easily annoyed or irritable",
            "Feeling afraid as if something awful might happen",
        ),
        FREQUENCY,
    ),
}
"""The instruments the patient page offers, with their published item wording (PHQ-9 and GAD-7: Pfizer, free to
reproduce); the scoring stays in ``instruments.py``."""


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
