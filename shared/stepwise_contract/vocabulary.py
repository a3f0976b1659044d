"""The words Stepwise and its subscribers share, each defined once: levels of care and their order,
programs, safety-alert levels, consent scopes and recipients, channels, weekdays, and what each
instrument reports.

Event fields take exactly these values (``InstrumentResult.band`` and ``.flags`` included); rules in
Stepwise and in subscribing systems can check names against them instead of copying them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Final, Literal, get_args

from pydantic import BeforeValidator, StringConstraints


class CareLevel(StrEnum):
    """Levels of care in neutral labels.

    Outpatient, intensive outpatient, partial hospitalization, residential, inpatient.
    """

    OP = "OP"
    IOP = "IOP"
    PHP = "PHP"
    RESIDENTIAL = "RESIDENTIAL"
    INPATIENT = "INPATIENT"


LEVEL_ORDER: tuple[CareLevel, ...] = (
    CareLevel.OP,
    CareLevel.IOP,
    CareLevel.PHP,
    CareLevel.RESIDENTIAL,
    CareLevel.INPATIENT,
)
"""Levels of care from least to most intensive."""

Program = Literal["adult", "adolescent"]
"""The program an episode is in; placement rules and calendars may differ by program."""
PROGRAMS: Final[tuple[Program, ...]] = get_args(Program)

AlertLevel = Literal["immediate", "same_day"]
"""immediate: act now (e.g. high C-SSRS risk); same_day: clinician review today. Most urgent first."""
ALERT_LEVELS: Final[tuple[AlertLevel, ...]] = get_args(AlertLevel)

ConsentScope = Literal["appointments", "attendance", "level_of_care", "general_progress", "alumni_program"]
"""What a consent allows its recipient to be told (42 CFR Part 2: each disclosure names its purpose)."""

SupportKind = Literal["family", "designated_support"]
"""A person close to the patient whom a consent names."""
SUPPORT_KINDS: Final[tuple[SupportKind, ...]] = get_args(SupportKind)

ALUMNI_GROUP: Final = "alumni_group"
ALUMNI: Final = "alumni"
ConsentRecipientKind = Literal[SupportKind, "alumni_group"]
"""Whom a consent names (``iop.consent.changed``): a support, or the alumni group. A consent naming the
alumni group lets the graduate hear from it; its messages go to the graduate, as recipient ``alumni``."""

RecipientKind = Literal["patient", SupportKind, "care_team", "alumni"]
"""Who a message goes to (``iop.notification.*``, opt-outs): ``alumni`` is the graduate as a member of
the alumni group (under a consent whose recipient kind is ``alumni_group``)."""

Track = Literal["morning", "evening"]
"""A program's time of day: morning or evening sessions."""

SessionKind = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$", max_length=40)]
"""What a session is, as the clinic's policy names it: a snake_case word. Stepwise ships these four."""
SESSION_KINDS: Final[tuple[str, ...]] = ("group", "individual", "family", "education")
"""The session kinds of the default policy: group therapy, individual therapy, family session (with the
patient, under a consent naming a family member or support), psychoeducation."""
FAMILY_SESSION: Final = "family"
"""The kind that brings a family member or support in: booked only under a consent in force naming one."""

MeasureClassification = Literal["baseline", "reliable_improvement", "reliable_deterioration", "no_reliable_change"]
"""An instrument's score against the episode's baseline (its first score on that instrument): ``baseline`` the first
time; else reliable improvement or deterioration by the instrument's reliable-change threshold (policy data, NHS
Talking Therapies defaults, Jacobson & Truax 1991), or no reliable change."""
MEASURE_CLASSIFICATIONS: Final[tuple[MeasureClassification, ...]] = get_args(MeasureClassification)
MeasureSource = Literal["measure", "assessment"]
"""Where a scored instrument came from: a measure between assessments, or a full assessment."""
MeasureReason = Literal["schedule", "admission", "level_change", "planned_discharge", "alumni"]
"""Why a measure is due (care_plan's measurement policy): the level's recurring schedule, admission, a level change,
a planned discharge, or an alumni follow-up after graduation."""

Channel = Literal["email", "sms", "webhook"]
"""How a message goes out: people are reached by email and SMS, the care team by email and webhook."""

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: Final[tuple[Weekday, ...]] = get_args(Weekday)
"""Monday first, as ``date.weekday()`` counts."""
_FULL_NAMES: Final[dict[str, Weekday]] = {
    full: short
    for full, short in zip(
        ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"), WEEKDAYS, strict=True
    )
}


def _weekday(value: object) -> object:
    if isinstance(value, str):
        lowered = value.strip().lower()
        return _FULL_NAMES.get(lowered, lowered)
    return value


WeekdayName = Annotated[Weekday, BeforeValidator(_weekday)]
"""A weekday in a policy file or request: ``mon`` … ``sun``, also spelled out (``monday``), any case."""


@dataclass(frozen=True)
class InstrumentVocabulary:
    label: str
    bands: tuple[str, ...]
    """Band names, least to most severe."""
    flags: tuple[str, ...]
    max_total: int | None
    """Highest total; None for an instrument without one (C-SSRS, BAM)."""


INSTRUMENTS: Mapping[str, InstrumentVocabulary] = {
    "phq9": InstrumentVocabulary(
        "PHQ-9", ("minimal", "mild", "moderate", "moderately_severe", "severe"), ("same_day_review",), 27
    ),
    "gad7": InstrumentVocabulary("GAD-7", ("minimal", "mild", "moderate", "severe"), ("further_assessment",), 21),
    "audit": InstrumentVocabulary(
        "AUDIT", ("low", "hazardous", "harmful", "possible_dependence"), ("specialist_referral",), 40
    ),
    "audit_c": InstrumentVocabulary("AUDIT-C", ("negative", "positive"), ("cutoff_sex_unspecified",), 12),
    "dast10": InstrumentVocabulary(
        "DAST-10", ("none", "low", "moderate", "substantial", "severe"), ("intensive_assessment",), 10
    ),
    "cssrs": InstrumentVocabulary(
        "C-SSRS", ("low", "moderate", "high"), ("clinician_review", "immediate_safety_alert"), None
    ),
    "bam": InstrumentVocabulary("BAM", ("reported",), ("use_reported",), None),
}
"""Every instrument intake scores, by the name events use."""


# The words forms show for an assessment (issue 28: the staff console's intake page, and intake's questionnaire
# page): the dimensions and their ratings, the questionnaires' items and answers. Neutral labels where the source's
# text is licensed (the ASAM Criteria); the published wording where it is free to reproduce (PHQ-9, GAD-7).

DIMENSIONS: Mapping[str, str] = {
    "withdrawal": "Intoxication and withdrawal",
    "biomedical": "Biomedical conditions",
    "emotional": "Emotional, behavioural or cognitive conditions",
    "readiness": "Readiness to change",
    "relapse": "Relapse or continued use potential",
    "environment": "Recovery environment",
}
"""The six assessment dimensions (``DimensionRatings``' fields, in its order) in neutral words (the clinical
reference: ASAM Criteria 3rd ed.'s six dimensions, whose own text is licensed and not shipped)."""
DIMENSION_RATINGS: Final[tuple[str, ...]] = ("No risk", "Mild", "Moderate", "Significant", "Severe")
"""What each dimension rating means, 0 to 4 (``DimensionRatings``: 0 no risk, 4 severe risk)."""


@dataclass(frozen=True)
class Questionnaire:
    instrument: str
    title: str
    stem: str
    items: tuple[str, ...]
    options: tuple[str, ...]
    """Answer labels, scored 0, 1, 2 … in order."""


FREQUENCY: Final[tuple[str, ...]] = ("Not at all", "Several days", "More than half the days", "Nearly every day")
_STEM = "Over the last 2 weeks, how often have you been bothered by any of the following problems?"
QUESTIONNAIRES: Mapping[str, Questionnaire] = {
    "phq9": Questionnaire(
        "phq9",
        "PHQ-9",
        _STEM,
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
        _STEM,
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
"""PHQ-9 and GAD-7 with their published item wording and answer labels (Spitzer, Williams, Kroenke et al., Pfizer:
free to reproduce, www.phqscreeners.com); the scoring is intake's (``services/intake/domain/instruments.py``)."""


@dataclass(frozen=True)
class YesNoQuestion:
    name: str
    """The answer's field in intake's request (``cssrs.q1`` …)."""
    text: str
    asked_if: str | None = None
    """The question whose yes makes this one asked (C-SSRS skip logic); None: always asked."""


CSSRS_QUESTIONS: tuple[YesNoQuestion, ...] = (
    YesNoQuestion("q1", "wish to be dead (past month)"),
    YesNoQuestion("q2", "suicidal thoughts (past month)"),
    YesNoQuestion("q3", "suicidal thoughts with method", "q2"),
    YesNoQuestion("q4", "suicidal intent", "q2"),
    YesNoQuestion("q5", "suicidal intent with a plan", "q2"),
    YesNoQuestion("q6", "suicidal behaviour (lifetime)"),
    YesNoQuestion("q6_within_3_months", "that behaviour within the past 3 months", "q6"),
)
"""The C-SSRS screener's questions by what each asks (Columbia Lighthouse Project, cssrs.columbia.edu: the screener's
own wording is asked as the clinic's printed or trained version has it; these are its published question headings)."""
