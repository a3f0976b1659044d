"""The treatment plan's HTTP models: what a clinician puts, signs, acknowledges and reviews, and what GET answers
(each objective tied to an instrument with its progress), and the audit log's entries."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field, StrictInt

from services.common.schemas import RequestBody, request_examples
from services.common.utc import Rfc3339, UtcDatetime

from .domain.model import (
    AcknowledgedHow,
    Goal,
    Objective,
    PlanReview,
    PlanVersion,
    Problem,
    ReviewDue,
    ReviewOutcome,
)
from .domain.treatment_plan import Progress

MAX_PROBLEMS = 10

EXAMPLE_PLAN = {
    "problems": [
        {
            "statement": "Alcohol use is harming work and family life.",
            "goals": [
                {
                    "in_own_words": "I want to stop drinking and be there for my kids.",
                    "objectives": [
                        {
                            "statement": "PHQ-9 below 10 on two measures in a row.",
                            "target_date": "2027-01-15",
                            "target": {"instrument": "phq9", "below": 10, "in_a_row": 2},
                            "interventions": [
                                {"modality": "group", "per_week": 3, "responsible_role": "counsellor"},
                                {"modality": "individual", "per_week": 1, "responsible_role": "therapist"},
                            ],
                        }
                    ],
                }
            ],
        }
    ]
}


class TreatmentPlanIn(RequestBody):
    """Problems → goals in the patient's words → measurable objectives with a target date (optionally an
    instrument's score) → interventions with their frequency and responsible role. Every list is bounded."""

    model_config = request_examples(EXAMPLE_PLAN)

    problems: list[Problem] = Field(min_length=1, max_length=MAX_PROBLEMS)


class SignIn(RequestBody):
    model_config = request_examples({"version": 2})

    version: StrictInt = Field(ge=1, description="The latest version, as read: a newer one put since is a 409.")


class AcknowledgeIn(RequestBody):
    """The patient's agreement to a signed version: how and when, as staff record it."""

    model_config = request_examples({"version": 2, "how": "signed_on_paper", "agreed_at": "2026-12-07T15:30:00Z"})

    version: StrictInt = Field(ge=1)
    how: AcknowledgedHow
    agreed_at: Rfc3339 = Field(description="Not ahead of now.")


class ReviewIn(RequestBody):
    model_config = request_examples({"outcome": "continued"})

    outcome: ReviewOutcome = Field(description="continued: the plan stands; revised: a new version follows.")


class ObjectiveOut(Objective):
    progress: Progress | None = Field(
        default=None, description="For an objective tied to an instrument: met, not_met, or no_data (no score yet)."
    )
    scores: list[int] = Field(default_factory=list, description="The latest scores the progress was read from.")


class GoalOut(Goal):
    objectives: list[ObjectiveOut]  # type: ignore[assignment]


class ProblemOut(Problem):
    goals: list[GoalOut]  # type: ignore[assignment]


class PlanVersionOut(PlanVersion):
    problems: list[ProblemOut]  # type: ignore[assignment]


class TreatmentPlanOut(BaseModel):
    """The current version (each instrument-tied objective with its progress), every version, the reviews
    recorded and those due."""

    episode_id: str
    status: Literal["draft", "signed", "revision_unsigned"] = Field(
        description="draft: never signed; signed: the current version is in force; revision_unsigned: a newer "
        "version waits for signing (the last signed one stays in force)."
    )
    current: PlanVersionOut
    in_force_version: int | None
    versions: list[PlanVersion] = Field(description="The history, oldest first.")
    reviews: list[PlanReview]
    reviews_due: list[ReviewDue]
    next_review_due_on: date | None = Field(description="The next periodic review's local day (clinic zone).")


class PlanAuditEntry(BaseModel):
    at: UtcDatetime
    role: str
    token_id: str
    subject: str | None = None
    username: str | None = None
    action: str
    episode_id: str
