"""The authorizations service's typed records: an episode's coverage (its payers' authorizations, the services and
days counted against them, the calendar they are projected over, certifications) and the errors of its rules."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

from services.common.utc import UtcDatetime
from stepwise_contract import AuthorizationStatus, AuthorizationUnit, CareLevel, ReviewReason, ReviewType

APPROVED: frozenset[AuthorizationStatus] = frozenset({"approved", "partially_approved"})
"""The statuses under which an authorization covers services and is drawn down."""

ReviewOutcome = Literal["approved", "partially_approved", "denied", "pending"]


class AuthorizationError(Exception):
    """A rule refused a change; ``code`` is stable (``schemas.ERRORS`` answers it), ``field`` the request field at
    fault, if one is."""

    def __init__(self, code: str, message: str, field: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


class Revision(BaseModel):
    """One change a person (or the migration) made to an authorization: who, when, what and why."""

    revision: int = Field(ge=1)
    at: UtcDatetime
    by: str
    change: Literal["recorded", "decision", "review", "migrated"]
    status: AuthorizationStatus
    reason: str | None = None


class Review(BaseModel):
    """A concurrent review with the payer: its outcome and what it granted."""

    review_id: str
    reviewed_at: UtcDatetime
    outcome: ReviewOutcome
    review_type: ReviewType
    units_added: float = 0
    new_end_date: date | None = None
    next_review_on: date | None = None
    by: str
    reason: str | None = None


class Authorization(BaseModel):
    """A payer's authorization of a level for some units between two dates."""

    authorization_id: str
    payer: str
    authorization_number: str = Field(description="The payer's number: stored, never in an event or a log.")
    level: CareLevel
    codes: list[str]
    unit: AuthorizationUnit
    units_authorized: float | None = Field(description="None: a migrated record that counted no units.")
    start_date: date
    end_date: date
    status: AuthorizationStatus
    review_type: ReviewType
    next_review_on: date | None = None
    last_covered_day: date | None = None
    revision: int = 1
    history: list[Revision] = Field(default_factory=list)
    reviews: list[Review] = Field(default_factory=list)

    @property
    def approved(self) -> bool:
        return self.status in APPROVED

    def in_dates(self, day: date) -> bool:
        return self.start_date <= day <= self.end_date


class CountedService(BaseModel):
    """The highest revision of a service delivered (``iop.service.delivered``)."""

    service_id: str
    revision: int
    status: Literal["delivered", "voided"]
    session_id: str
    service_date: date
    level: CareLevel
    code: str | None
    minutes: int


class CountedDay(BaseModel):
    """The highest revision of a service day (``iop.service_day.completed``)."""

    service_date: date
    revision: int
    level: CareLevel
    per_diem_code: str | None


class CalendarSession(BaseModel):
    """A session on the episode's calendar, at the level it is scheduled at."""

    session_id: str
    local_date: date
    hours: float
    level: CareLevel


class Certification(BaseModel):
    """A physician's certification of the need for the program's hours (Medicare IOP)."""

    certification_id: str
    certified_on: date
    hours_per_week: float
    clinician: str = Field(description="The certifying clinician's subject at the identity provider.")
    recorded_at: UtcDatetime
    recorded_by: str


class ReviewEntry(BaseModel):
    """A line of the UR worklist: when an authorization's review is due, and why."""

    authorization_id: str
    payer: str
    level: CareLevel
    review_due_on: date
    reason: ReviewReason
    deadline: date
    lead_business_days: int
    unit: AuthorizationUnit
    units_remaining: float | None

    @property
    def why(self) -> str:
        named = {"next_review": "the next review date", "end_date": "the end date",
                 "last_covered_day": "the last covered day", "exhaustion": "the projected exhaustion"}  # fmt: skip
        return f"{named[self.reason]} ({self.deadline.isoformat()}) less {self.lead_business_days} business days"


class Coverage(BaseModel):
    """One episode's coverage: the aggregate every change of this service works on."""

    episode_id: str
    authorizations: list[Authorization] = Field(default_factory=list)
    services: dict[str, CountedService] = Field(default_factory=dict)
    days: dict[str, CountedDay] = Field(default_factory=dict, description="By ISO date.")
    calendar: list[CalendarSession] = Field(default_factory=list)
    clinical_level: CareLevel | None = None
    ended: bool = False
    certifications: list[Certification] = Field(default_factory=list)
    said: list[str] = Field(default_factory=list, description="Keys of the signals published once each.")
    published: dict[str, str] = Field(
        default_factory=dict, description="Each authorization's view as last published (its JSON)."
    )
    reviews: list[ReviewEntry] = Field(default_factory=list, description="The worklist lines, as last decided.")

    def authorization(self, authorization_id: str) -> Authorization:
        for authorization in self.authorizations:
            if authorization.authorization_id == authorization_id:
                return authorization
        raise AuthorizationError("unknown_authorization", f"no authorization {authorization_id}")
