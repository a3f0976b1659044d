"""What the authorizations service's HTTP API takes and answers: its request and response models (its OpenAPI
document), and its refusals (``ERRORS``)."""

from __future__ import annotations

from datetime import date

from fastapi import status
from pydantic import BaseModel, Field, StrictFloat

from services.common.domain_errors import ErrorTable
from services.common.schemas import RequestBody, request_examples, response_example
from services.common.utc import IsoDate, UtcDatetime
from stepwise_contract import AuthorizationStatus, AuthorizationUnit, CareLevel, ReviewReason, ReviewType

from .domain.authorizations import Decision, NewAuthorization, ReviewIn
from .domain.model import AuthorizationError, Certification, Review, ReviewOutcome, Revision
from .domain.policy import PAYER_ID

ERRORS = ErrorTable(
    AuthorizationError,
    statuses={
        "unknown_authorization": status.HTTP_404_NOT_FOUND,
        "authorization_exists": status.HTTP_409_CONFLICT,
    },
)
"""The authorizations service's refusals as HTTP answers (the others name the request field at fault: a 422)."""

Code = str
Units = StrictFloat


class AuthorizationIn(RequestBody):
    model_config = request_examples(
        {"payer": "carelon", "authorization_number": "PA-2026-118", "level": "IOP", "unit": "day",
         "units_authorized": 10, "start_date": "2026-12-07", "end_date": "2027-01-15", "status": "approved",
         "review_type": "initial", "next_review_on": "2026-12-21", "last_covered_day": "2026-12-22"}
    )  # fmt: skip

    payer: str = Field(pattern=PAYER_ID, description="The payer's id in the clinic's payer policy (lower case).")
    authorization_number: str = Field(min_length=1, max_length=100, description="Stored; never in an event or log.")
    level: CareLevel
    codes: list[Code] | None = Field(
        default=None, min_length=1, description="Default: the level's per-diem and session codes (policy)."
    )
    unit: AuthorizationUnit
    units_authorized: Units = Field(gt=0, le=10_000)
    start_date: IsoDate
    end_date: IsoDate
    status: AuthorizationStatus
    review_type: ReviewType = "initial"
    next_review_on: IsoDate | None = None
    last_covered_day: IsoDate | None = None

    def new(self) -> NewAuthorization:
        return NewAuthorization.model_validate(self.model_dump())


class DecisionIn(RequestBody):
    model_config = request_examples({"status": "denied", "reason": "payer denied continued stay at IOP"},
                                    {"status": "partially_approved", "units_authorized": 6,
                                     "reason": "six of ten days approved"})  # fmt: skip

    status: AuthorizationStatus | None = None
    units_authorized: Units | None = Field(default=None, gt=0, le=10_000)
    end_date: IsoDate | None = None
    next_review_on: IsoDate | None = None
    last_covered_day: IsoDate | None = None
    review_type: ReviewType | None = None
    reason: str = Field(min_length=1, max_length=500)

    def decision(self) -> Decision:
        return Decision.model_validate(self.model_dump())


class ReviewOutcomeIn(RequestBody):
    model_config = request_examples({"outcome": "approved", "units_added": 10, "new_end_date": "2027-02-12",
                                     "next_review_on": "2027-01-29"})  # fmt: skip

    outcome: ReviewOutcome
    review_type: ReviewType = "concurrent"
    units_added: Units = Field(default=0, ge=0, le=10_000)
    new_end_date: IsoDate | None = None
    next_review_on: IsoDate | None = None
    reason: str | None = Field(default=None, max_length=500)

    def review(self) -> ReviewIn:
        return ReviewIn.model_validate(self.model_dump())


class CertificationIn(RequestBody):
    model_config = request_examples({"certified_on": "2026-12-07", "hours_per_week": 9, "clinician": "dr.rivera"})

    certified_on: IsoDate
    hours_per_week: Units = Field(gt=0, le=168)
    clinician: str = Field(min_length=1, max_length=200, description="The certifying clinician's subject.")


class AuthorizationOut(BaseModel):
    """An authorization with its live draw-down, projection and review due, and why."""

    model_config = response_example(
        {"authorization_id": "6f1c…", "episode_id": "7d0c…", "payer": "carelon", "authorization_number": "PA-2026-118",
         "level": "IOP", "codes": ["H0015"], "unit": "day", "units_authorized": 10, "units_used": 8,
         "units_remaining": 2, "start_date": "2026-12-07", "end_date": "2027-01-15", "status": "approved",
         "review_type": "initial", "next_review_on": "2026-12-21", "last_covered_day": "2026-12-22",
         "projected_exhaustion_on": "2026-12-18", "review_due_on": "2026-12-16", "review_reason": "exhaustion",
         "why": "the projected exhaustion (2026-12-18) less 2 business days", "revision": 1, "history": [],
         "reviews": []}
    )  # fmt: skip

    authorization_id: str
    episode_id: str
    payer: str
    authorization_number: str
    level: CareLevel
    codes: list[str]
    unit: AuthorizationUnit
    units_authorized: float | None
    units_used: float
    units_remaining: float | None
    start_date: date
    end_date: date
    status: AuthorizationStatus
    review_type: ReviewType
    next_review_on: date | None
    last_covered_day: date | None
    projected_exhaustion_on: date | None
    review_due_on: date | None
    review_reason: ReviewReason | None
    why: str | None = Field(description="What the review date is counted back from, and by how much.")
    revision: int
    history: list[Revision]
    reviews: list[Review]


class ReviewOut(BaseModel):
    """A line of the UR worklist."""

    episode_id: str
    authorization_id: str
    payer: str
    level: CareLevel
    review_due_on: date
    reason: ReviewReason
    why: str
    unit: AuthorizationUnit
    units_remaining: float | None


class CertificationOut(Certification):
    episode_id: str
    recorded_at: UtcDatetime
