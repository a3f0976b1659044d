"""Drawing authorizations down from the days and services care_plan reports, with corrections and redeliveries,
and projecting their exhaustion over the calendar."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from services.authorizations.domain.coverage import count_day, count_service, plan_calendar
from services.authorizations.domain.drawdown import draw_down
from stepwise_contract import CareLevel

from .helpers import (
    TODAY,
    authorization,
    coverage,
    day,
    schedule,
    service,
    weekdays,
    with_calendar,
    with_days,
    with_services,
)

PAST = weekdays(date(2026, 11, 2), 8)


def test_days_with_a_per_diem_code_are_drawn_from_the_day_authorization() -> None:
    c = with_days(coverage(authorization()), PAST)
    c = count_day(c, day(date(2026, 11, 20), code=None))  # a day short of its minimum: no per diem, nothing used
    drawn = draw_down(c, TODAY, 7)
    assert drawn.used == {"a1": 8} and drawn.unauthorized == []


def test_a_redelivery_or_an_older_revision_changes_nothing_and_a_correction_replaces() -> None:
    c = with_services(coverage(authorization(unit="session")), PAST[:3])
    again = count_service(c, service(PAST[0]))
    assert again == c  # the same revision again: counted once
    voided = count_service(c, service(PAST[0], revision=2, status="voided"))
    assert draw_down(voided, TODAY, 7).used["a1"] == 2  # a voided service gives its unit back
    stale = count_service(voided, service(PAST[0], revision=1))
    assert stale == voided  # an older revision arriving late does not undo the correction
    restored = count_service(voided, service(PAST[0], revision=3))
    assert draw_down(restored, TODAY, 7).used["a1"] == 3


def test_hours_count_minutes_and_sessions_count_one_each() -> None:
    c = with_services(coverage(authorization(unit="hour", units=20)), PAST[:2])
    assert draw_down(c, TODAY, 7).used["a1"] == 6
    c = count_service(c, service(PAST[2], minutes=90))
    assert draw_down(c, TODAY, 7).used["a1"] == 7.5


def test_a_day_no_approved_authorization_covers_is_unauthorized_with_its_reason() -> None:
    c = coverage(authorization(end=date(2026, 11, 30), units=2), authorization("a2", level="PHP",
                 start=date(2026, 12, 10), status="pending"))  # fmt: skip
    c = with_days(c, PAST[:3])  # the third has no units left
    c = count_day(c, day(date(2026, 12, 1)))  # after the IOP authorization's end
    c = count_day(c, day(date(2026, 12, 10), level="PHP", code="H0035"))  # PHP pending
    c = count_day(c, day(date(2026, 11, 16), level="PHP", code="H0035"))  # a step-up under the IOP authorization
    reasons = {item.on: reason for item, _unit, reason in draw_down(c, TODAY, 7).unauthorized}
    assert reasons == {PAST[2]: "no_units_left", date(2026, 12, 1): "outside_dates",
                       date(2026, 12, 10): "not_approved", date(2026, 11, 16): "wrong_level"}  # fmt: skip


def test_a_code_the_authorization_does_not_name_is_not_covered() -> None:
    only_group = authorization(unit="session").model_copy(update={"codes": ["90853"]})
    c = count_service(coverage(only_group), service(PAST[0], code="90837"))
    [(_item, _unit, reason)] = draw_down(c, TODAY, 7).unauthorized
    assert reason == "code_not_covered"


def test_the_earliest_authorization_is_drawn_first_then_the_next() -> None:
    c = coverage(authorization("a1", units=2), authorization("a2", units=5, start=date(2026, 11, 3)))
    drawn = draw_down(with_days(c, PAST[:4]), TODAY, 7)
    assert drawn.used == {"a1": 2, "a2": 2} and drawn.exhausted_on == {"a1": PAST[1]}


def test_exhaustion_is_projected_over_the_calendar_skipping_what_is_counted() -> None:
    ahead = weekdays(TODAY, 10, skip=frozenset({date(2026, 12, 3)}))  # a closure: no session that day
    c = with_calendar(with_days(coverage(authorization()), PAST[:6]), ahead)
    drawn = draw_down(c, TODAY, 7)
    assert drawn.used["a1"] == 6
    assert drawn.projected_exhaustion_on["a1"] == ahead[3]  # four units left: the fourth session ahead
    assert drawn.scheduled_soon["a1"] == 4  # 1-7 December: Tue, Fri, Mon, Tue (Thursday closed)


def test_a_step_up_moves_the_calendar_and_the_projection_no_longer_runs_out() -> None:
    ahead = weekdays(TODAY, 10)
    c = with_calendar(with_days(coverage(authorization()), PAST[:6]), ahead)
    stepped = plan_calendar(c, CareLevel.PHP, schedule(ahead[2:]), from_day=ahead[2])
    drawn = draw_down(stepped, TODAY, 7)
    assert "a1" not in drawn.projected_exhaustion_on  # two IOP days left on the calendar, four units
    assert [s.level for s in stepped.calendar][:3] == ["IOP", "IOP", "PHP"]


@given(st.lists(st.tuples(st.sampled_from(PAST), st.integers(1, 4), st.booleans()), max_size=30))
def test_any_order_of_revisions_counts_each_service_by_its_highest(deliveries: list[tuple[date, int, bool]]) -> None:
    c = coverage(authorization(unit="session", units=None))
    for on, revision, voided in deliveries:
        c = count_service(c, service(on, revision=revision, status="voided" if voided else "delivered"))
    highest: dict[date, tuple[int, bool]] = {}
    for on, revision, voided in deliveries:
        if on not in highest or revision > highest[on][0]:
            highest[on] = (revision, voided)
    assert draw_down(c, TODAY, 7).used["a1"] == sum(1 for _, voided in highest.values() if not voided)


@given(st.lists(st.sampled_from(PAST), max_size=20), st.integers(1, 12))
def test_nothing_is_used_beyond_the_units_and_nothing_is_lost(days: list[date], units: int) -> None:
    c = with_days(coverage(authorization(units=units)), days)
    drawn = draw_down(c, TODAY, 7)
    distinct = len(set(days))
    assert drawn.used["a1"] == min(units, distinct)
    assert len(drawn.unauthorized) == distinct - drawn.used["a1"]
