"""When a review with the payer is due, and when a physician's (re)certification is. Pure.

``review_due_on`` = the earliest of the next review date, the end date, the last covered day and the projected
exhaustion, moved back to the last business day on or before it (no call to a payer on a weekend or a closure),
less the lead in business days: the payer's own ``review_lead_business_days`` when its rules set one, else
``REVIEW_LEAD_BUSINESS_DAYS``.
"""

from __future__ import annotations

import calendar
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from stepwise_contract import ReviewReason

from .model import Authorization, Certification
from .policy import CertificationRule, UrPolicy

REASONS: tuple[ReviewReason, ...] = ("next_review", "end_date", "last_covered_day", "exhaustion")
"""The order a tie is named in: the payer's own date first."""


def business_day(day: date, closures: Collection[date]) -> bool:
    return day.weekday() < 5 and day not in closures


def last_business_day(day: date, closures: Collection[date]) -> date:
    """``day``, or the business day before it."""
    while not business_day(day, closures):
        day -= timedelta(days=1)
    return day


def business_days_before(day: date, lead: int, closures: Collection[date]) -> date:
    """The business day ``lead`` business days before the last business day on or before ``day``."""
    due = last_business_day(day, closures)
    for _ in range(lead):
        due = last_business_day(due - timedelta(days=1), closures)
    return due


@dataclass(frozen=True)
class ReviewDue:
    due_on: date
    reason: ReviewReason
    deadline: date
    lead: int


def lead_days(policy: UrPolicy, payer: str, default: int) -> int:
    """The payer's own lead time wins over the clinic's default."""
    rules = policy.payer(payer)
    return rules.review_lead_business_days if rules and rules.review_lead_business_days is not None else default


def next_review_on(authorization: Authorization, policy: UrPolicy) -> date | None:
    """The authorization's next review date, or, without one, the payer's review interval after its start (or its
    last review)."""
    if authorization.next_review_on is not None:
        return authorization.next_review_on
    rules = policy.payer(authorization.payer)
    if rules is None or rules.review_interval_days is None:
        return None
    since = max([authorization.start_date, *(review.reviewed_at.date() for review in authorization.reviews)])
    return since + timedelta(days=rules.review_interval_days)


def review_due(authorization: Authorization, exhaustion: date | None, policy: UrPolicy, default_lead: int) -> ReviewDue:
    dates = (next_review_on(authorization, policy), authorization.end_date, authorization.last_covered_day, exhaustion)
    candidates = [(day, REASONS.index(reason), reason) for day, reason in zip(dates, REASONS, strict=True) if day]
    deadline, _, reason = min(candidates)
    lead = lead_days(policy, authorization.payer, default_lead)
    return ReviewDue(business_days_before(deadline, lead, policy.closures), reason, deadline, lead)


@dataclass(frozen=True)
class CertificationDue:
    payer: str
    due_on: date
    reason: Literal["initial", "recertification"]
    last_certified_on: date | None
    rule: CertificationRule


def add_months(day: date, months: int) -> date:
    """The same day ``months`` later (the month's last day when it has no such day)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def certifications_due(
    authorizations: Collection[Authorization], certifications: Collection[Certification], policy: UrPolicy
) -> list[CertificationDue]:
    """For each payer of an approved authorization whose rules ask for a certification: when the next is due. The
    first by the payer's earliest start; then every ``recertify_every_months`` after the last one certifying at least
    the rule's hours a week (one certifying fewer does not count)."""
    due = []
    for payer in sorted({a.payer for a in authorizations if a.approved}):
        rules = policy.payer(payer)
        if rules is None or rules.certification is None:
            continue
        rule = rules.certification
        valid = [c.certified_on for c in certifications if c.hours_per_week >= rule.min_hours_per_week]
        if valid:
            last = max(valid)
            due.append(CertificationDue(payer, add_months(last, rule.recertify_every_months), "recertification",
                                        last, rule))  # fmt: skip
        else:
            start = min(a.start_date for a in authorizations if a.approved and a.payer == payer)
            due.append(CertificationDue(payer, start, "initial", None, rule))
    return due
