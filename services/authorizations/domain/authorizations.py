"""What a UR coordinator records: an authorization, a decision on it, a concurrent review, a physician's
certification. Pure: each returns the coverage as decided (every change of an authorization a new revision, with
who and when); ``settle`` (coverage.py) then says what follows."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from pydantic import BaseModel, Field

from services.common.ids import derived_id
from stepwise_contract import AuthorizationStatus, AuthorizationUnit, CareLevel, ReviewType

from .model import Authorization, AuthorizationError, Certification, Coverage, Review, ReviewOutcome, Revision
from .policy import UrPolicy

IDS = uuid.UUID("0f5d7a9e-2b64-4c1e-9a53-6d0c8e2f4b71")
"""The namespace of this service's derived ids (``services/common/ids.py``)."""


class NewAuthorization(BaseModel):
    payer: str
    authorization_number: str
    level: CareLevel
    codes: list[str] | None = None
    unit: AuthorizationUnit
    units_authorized: float | None
    start_date: date
    end_date: date
    status: AuthorizationStatus
    review_type: ReviewType = "initial"
    next_review_on: date | None = None
    last_covered_day: date | None = None


class Decision(BaseModel):
    """A change of status and the terms decided with it; what is left out stays."""

    status: AuthorizationStatus | None = None
    units_authorized: float | None = None
    end_date: date | None = None
    next_review_on: date | None = None
    last_covered_day: date | None = None
    review_type: ReviewType | None = None
    reason: str = Field(min_length=1)


class ReviewIn(BaseModel):
    outcome: ReviewOutcome
    review_type: ReviewType = "concurrent"
    units_added: float = Field(default=0, ge=0)
    new_end_date: date | None = None
    next_review_on: date | None = None
    reason: str | None = None


def record(
    coverage: Coverage, new: NewAuthorization, policy: UrPolicy, by: str, now: datetime, *, migrated: bool = False
) -> tuple[Coverage, Authorization]:
    """A new authorization; the payer's number once per payer and episode (a second is a 409, never a copy)."""
    if any(a.payer == new.payer and a.authorization_number == new.authorization_number
           for a in coverage.authorizations):  # fmt: skip
        raise AuthorizationError("authorization_exists", "this payer's authorization is recorded already")
    _check_dates(new.start_date, new.end_date, new.next_review_on, new.last_covered_day)
    authorization_id = derived_id(IDS, coverage.episode_id, "authorization", len(coverage.authorizations) + 1)
    codes = new.codes if new.codes else policy.codes(new.level)
    if not codes:
        raise AuthorizationError("no_codes", f"no default codes for {new.level.value}: name them", ("body", "codes"))
    first = Revision(revision=1, at=now, by=by, change="migrated" if migrated else "recorded", status=new.status)
    authorization = Authorization(authorization_id=authorization_id, codes=codes, history=[first],
                                  **new.model_dump(exclude={"codes"}))  # fmt: skip
    return _with(coverage, authorization), authorization


def decide(coverage: Coverage, authorization_id: str, decision: Decision, by: str, now: datetime) -> Coverage:
    """A status and the terms decided with it (a denial, an appeal, a partial approval of fewer units …)."""
    current = coverage.authorization(authorization_id)
    terms = decision.model_dump(exclude={"reason"}, exclude_none=True)
    if not terms:
        raise AuthorizationError("nothing_decided", "give a status or a term that changes", ("body",))
    changed = current.model_copy(update=terms)
    _check_dates(changed.start_date, changed.end_date, changed.next_review_on, changed.last_covered_day)
    return _with(coverage, _revised(changed, by, now, "decision", decision.reason))


def review(coverage: Coverage, authorization_id: str, outcome: ReviewIn, by: str, now: datetime) -> Coverage:
    """A review with the payer: its outcome is the status; units added and a new end date when it grants them."""
    current = coverage.authorization(authorization_id)
    if outcome.outcome in ("denied", "pending") and (outcome.units_added or outcome.new_end_date):
        raise AuthorizationError("nothing_granted", f"a review {outcome.outcome} grants no units or dates",
                                 ("body", "outcome"))  # fmt: skip
    units = current.units_authorized
    if outcome.units_added and units is None:
        raise AuthorizationError("units_not_counted", "this authorization counts no units", ("body", "units_added"))
    entry = Review(review_id=derived_id(IDS, authorization_id, "review", len(current.reviews) + 1), reviewed_at=now,
                   by=by, **outcome.model_dump())  # fmt: skip
    changed = current.model_copy(update={
        "status": outcome.outcome, "review_type": outcome.review_type, "reviews": [*current.reviews, entry],
        "units_authorized": None if units is None else units + outcome.units_added,
        "end_date": outcome.new_end_date or current.end_date,
        "next_review_on": outcome.next_review_on or current.next_review_on,
    })  # fmt: skip
    _check_dates(changed.start_date, changed.end_date, changed.next_review_on, changed.last_covered_day)
    return _with(coverage, _revised(changed, by, now, "review", outcome.reason))


def certify(
    coverage: Coverage, certified_on: date, hours_per_week: float, clinician: str, by: str, now: datetime
) -> tuple[Coverage, Certification]:
    certification = Certification(
        certification_id=derived_id(IDS, coverage.episode_id, "certification", len(coverage.certifications) + 1),
        certified_on=certified_on, hours_per_week=hours_per_week, clinician=clinician, recorded_at=now, recorded_by=by,
    )  # fmt: skip
    return coverage.model_copy(update={"certifications": [*coverage.certifications, certification]}), certification


def _revised(changed: Authorization, by: str, now: datetime, change: str, reason: str | None) -> Authorization:
    revision = changed.revision + 1
    entry = Revision.model_validate({"revision": revision, "at": now, "by": by, "change": change,
                                     "status": changed.status, "reason": reason})  # fmt: skip
    return changed.model_copy(update={"revision": revision, "history": [*changed.history, entry]})


def _with(coverage: Coverage, authorization: Authorization) -> Coverage:
    others = [a for a in coverage.authorizations if a.authorization_id != authorization.authorization_id]
    ordered = sorted([*others, authorization], key=lambda a: a.authorization_id)
    position = {a.authorization_id: i for i, a in enumerate(coverage.authorizations)}
    ordered.sort(key=lambda a: position.get(a.authorization_id, len(position)))
    return coverage.model_copy(update={"authorizations": ordered})


def _check_dates(start: date, end: date, next_review: date | None, last_covered: date | None) -> None:
    if end < start:
        raise AuthorizationError("end_before_start", "end_date is before start_date", ("body", "end_date"))
    if last_covered is not None and not start <= last_covered <= end:
        raise AuthorizationError("last_covered_day_outside", "last_covered_day is outside the dates",
                                 ("body", "last_covered_day"))  # fmt: skip
    if next_review is not None and next_review < start:
        raise AuthorizationError("review_before_start", "next_review_on is before start_date",
                                 ("body", "next_review_on"))  # fmt: skip
