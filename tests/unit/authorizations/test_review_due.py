"""Review-due arithmetic at every boundary (weekends, closures, ties, the payer's lead), certifications due, and
what ``settle`` says once each."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.authorizations.domain import authorizations as desk
from services.authorizations.domain.coverage import Rules, certification_recorded, next_check_on, settle
from services.authorizations.domain.model import Certification
from services.authorizations.domain.review_due import (
    add_months,
    business_day,
    business_days_before,
    certifications_due,
    review_due,
)

from .helpers import NOW, POLICY, RULES, TODAY, authorization, coverage, weekdays, with_calendar, with_days

CLOSURES = POLICY.closures  # 2026-12-25 (Friday), 2027-01-01 (Friday)


@pytest.mark.parametrize(
    ("deadline", "lead", "due"),
    [
        (date(2026, 12, 9), 0, date(2026, 12, 9)),  # a Wednesday, no lead: that day
        (date(2026, 12, 9), 2, date(2026, 12, 7)),  # Wednesday less two: Monday
        (date(2026, 12, 7), 1, date(2026, 12, 4)),  # Monday less one: the Friday before
        (date(2026, 12, 13), 0, date(2026, 12, 11)),  # a Sunday: the Friday before it
        (date(2026, 12, 13), 2, date(2026, 12, 9)),  # Sunday less two: from Friday, Wednesday
        (date(2026, 12, 28), 1, date(2026, 12, 24)),  # Monday less one, over the Christmas closure: Thursday
        (date(2026, 12, 25), 0, date(2026, 12, 24)),  # the closure itself: the day before
        (date(2027, 1, 4), 2, date(2026, 12, 30)),  # over New Year's Day (a closure) and a weekend
    ],
)
def test_business_days_before_skips_weekends_and_closures(deadline: date, lead: int, due: date) -> None:
    assert business_days_before(deadline, lead, CLOSURES) == due


@given(st.dates(date(2026, 1, 1), date(2028, 12, 31)), st.integers(0, 15))
def test_the_due_day_is_a_business_day_with_exactly_the_lead_between(deadline: date, lead: int) -> None:
    due = business_days_before(deadline, lead, CLOSURES)
    assert business_day(due, CLOSURES) and due <= deadline
    between = [due + timedelta(days=n) for n in range(1, (deadline - due).days + 1)]
    assert sum(business_day(day, CLOSURES) for day in between) == lead


def test_the_earliest_date_wins_and_a_tie_names_the_payers_own_date_first() -> None:
    a = authorization(next_review_on=date(2026, 12, 18), last_covered_day=date(2026, 12, 18), end=date(2027, 1, 8))
    due = review_due(a, date(2026, 12, 21), POLICY, 2)
    assert (due.reason, due.deadline, due.due_on) == ("next_review", date(2026, 12, 18), date(2026, 12, 16))
    earlier = review_due(a, date(2026, 12, 15), POLICY, 2)
    assert (earlier.reason, earlier.due_on) == ("exhaustion", date(2026, 12, 11))
    only_end = review_due(authorization(end=date(2026, 12, 31), payer="some-plan"), None, POLICY, 3)
    assert (only_end.reason, only_end.due_on) == ("end_date", date(2026, 12, 28))


def test_a_payers_own_lead_time_wins_over_the_clinics() -> None:
    carelon = authorization(end=date(2026, 12, 31))  # carelon: 2 business days in the policy
    assert review_due(carelon, None, POLICY, 5).lead == 2
    other = authorization(end=date(2026, 12, 31), payer="some-plan")
    assert review_due(other, None, POLICY, 5).lead == 5


def test_medicare_certification_is_due_at_the_start_then_every_other_month() -> None:
    medicare = [authorization(payer="medicare", start=date(2026, 12, 7))]
    [first] = certifications_due(medicare, [], POLICY)
    assert (first.reason, first.due_on) == ("initial", date(2026, 12, 7))
    too_few = Certification(certification_id="c0", certified_on=date(2026, 12, 7), hours_per_week=6, clinician="dr",
                            recorded_at=NOW, recorded_by="ur")  # fmt: skip
    assert certifications_due(medicare, [too_few], POLICY)[0].reason == "initial"  # under 9 h a week: not one
    nine = too_few.model_copy(update={"hours_per_week": 9})
    [again] = certifications_due(medicare, [nine], POLICY)
    assert (again.reason, again.due_on) == ("recertification", date(2027, 2, 7))
    assert certifications_due([authorization()], [], POLICY) == []  # carelon asks for none
    assert add_months(date(2026, 12, 31), 2) == date(2027, 2, 28)


def test_a_recorded_certification_is_said_per_payer_asking_with_its_next_due_and_never_who() -> None:
    both = coverage(authorization(payer="medicare", start=date(2026, 12, 7)), authorization())
    first, nine = desk.certify(both, date(2026, 12, 7), 9, "dr.rivera", "ur", NOW)
    [said] = certification_recorded(first, nine, POLICY, NOW)  # carelon asks for none
    assert (said.payer, said.certification_id) == ("medicare", nine.certification_id)
    assert said.certified_on == date(2026, 12, 7)
    assert (said.hours_per_week, said.min_hours_per_week, said.next_due_on) == (9, 9, date(2027, 2, 7))
    assert "dr.rivera" not in said.model_dump_json()
    few, six = desk.certify(both, date(2026, 12, 7), 6, "dr.rivera", "ur", NOW)
    [short] = certification_recorded(few, six, POLICY, NOW)
    assert short.next_due_on == date(2026, 12, 7)  # fewer hours than medicare asks: still due
    assert certification_recorded(coverage(authorization()), six, POLICY, NOW) == []


def test_units_low_then_review_due_for_exhaustion_then_exhausted_each_once() -> None:
    ahead = weekdays(TODAY, 20)
    c = with_calendar(coverage(authorization()), ahead)
    c = with_days(c, weekdays(date(2026, 11, 2), 5))
    c, said = settle(c, NOW, RULES)
    assert [e.event_type for e in said] == ["iop.authorization.changed"]  # five left, five scheduled this week
    c, said = settle(with_days(c, [date(2026, 11, 9)]), NOW, RULES)
    assert [e.event_type for e in said] == ["iop.authorization.changed", "iop.authorization.units_low"]
    c, said = settle(with_days(c, [date(2026, 11, 10), date(2026, 11, 11)]), NOW, RULES)
    types = [e.event_type for e in said]
    assert types == ["iop.authorization.changed", "iop.authorization.review_due"]  # low: said before
    assert said[1].reason == "exhaustion" and "PA-SECRET" not in said[0].model_dump_json()  # type: ignore[attr-defined]
    c, said = settle(with_days(c, weekdays(date(2026, 11, 12), 2)), NOW, RULES)
    assert [e.event_type for e in said] == ["iop.authorization.changed", "iop.authorization.exhausted"]
    assert settle(c, NOW, RULES)[1] == []  # nothing new: nothing said
    assert next_check_on(c, NOW, RULES) == TODAY + timedelta(days=1)


def test_a_concurrent_review_adding_units_is_a_new_revision_and_may_say_again() -> None:
    c = with_days(coverage(authorization(units=2)), weekdays(date(2026, 11, 2), 2))
    c, said = settle(c, NOW, RULES)
    assert "iop.authorization.exhausted" in [e.event_type for e in said]
    more = desk.ReviewIn(outcome="approved", units_added=5, new_end_date=date(2027, 2, 26))
    reviewed = desk.review(c, "a1", more, "ur.coordinator", NOW)
    a = reviewed.authorization("a1")
    assert (a.revision, a.units_authorized, a.end_date, a.history[-1].by) == (2, 7, date(2027, 2, 26), "ur.coordinator")
    _, said = settle(reviewed, NOW, RULES)
    assert [e.event_type for e in said] == ["iop.authorization.changed"]


def test_a_step_up_says_level_mismatch_and_the_php_day_unauthorized() -> None:
    from services.authorizations.domain.coverage import count_day, plan_calendar
    from stepwise_contract import CareLevel

    from .helpers import day, schedule

    c = with_calendar(coverage(authorization()), weekdays(TODAY, 10))
    c, _ = settle(c, NOW, RULES)
    stepped = plan_calendar(c, CareLevel.PHP, schedule(weekdays(TODAY, 10)), from_day=TODAY)
    stepped = count_day(stepped, day(TODAY, level="PHP", code="H0035"))
    _, said = settle(stepped, NOW, RULES)
    by_type = {e.event_type: e for e in said}
    mismatch, unauthorized = by_type["iop.authorization.level_mismatch"], by_type["iop.service.unauthorized"]
    assert (mismatch.clinical_level, mismatch.authorized_level) == ("PHP", "IOP")  # type: ignore[attr-defined]
    assert (unauthorized.reason, unauthorized.item) == ("wrong_level", "day")  # type: ignore[attr-defined]


def test_a_certification_is_said_its_lead_before_it_is_due() -> None:
    medicare = authorization(payer="medicare", start=date(2026, 12, 7))
    _, said = settle(coverage(medicare), NOW, RULES)  # due Monday 7 December, two business days ahead: 3 December
    assert "iop.certification.due" not in [e.event_type for e in said]
    later = Rules(RULES.policy, 2, 7, RULES.timezone)
    _, said = settle(coverage(medicare), NOW + timedelta(days=2), later)
    assert "iop.certification.due" in [e.event_type for e in said]
