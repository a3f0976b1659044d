"""Billing codes, services delivered and service days (domain/services.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from services.care_plan.domain.care_plan import change_level, record_attendance
from services.care_plan.domain.groups import Joined
from services.care_plan.domain.model import AttendanceStatus, CarePlan, CarePlanError, ServiceDay
from services.care_plan.domain.policy import DEFAULT_POLICY_FILE, BillingCode, SessionKindPolicy, load_policy
from services.care_plan.domain.services import billing_code, review_services
from services.common.policy_file import PolicyError
from stepwise_contract import CareLevel, EventData, ServiceDayCompleted, ServiceDelivered
from tests.unit.care_plan.helpers import (
    FRI_23,
    FRI_30,
    LATER,
    MON_26,
    NY,
    POLICY,
    RECORDED,
    WED_21,
    WED_28,
    ahead,
    attend,
    book,
    group,
    joined_plan,
    ny,
    recommendation,
    session_of,
    sessions_of,
)

# --- helpers ------------------------------------------------------------------------------------------------


def delivered_events(events: Sequence[EventData]) -> list[ServiceDelivered]:
    return [event for event in events if isinstance(event, ServiceDelivered)]


def day_events(events: Sequence[EventData]) -> list[ServiceDayCompleted]:
    return [event for event in events if isinstance(event, ServiceDayCompleted)]


# --- billing codes ------------------------------------------------------------------------------------------


GROUP_KIND = POLICY.session_kinds["group"]
INDIVIDUAL = POLICY.session_kinds["individual"]
EDUCATION = POLICY.session_kinds["education"]


@pytest.mark.parametrize("minutes", [1, 45, 180, 300])
def test_a_per_session_code_is_one_unit_whatever_the_length(minutes: int) -> None:
    assert billing_code(GROUP_KIND, minutes) == ("90853", 1)


@pytest.mark.parametrize(
    ("minutes", "expected"),
    [(0, (None, 0)), (7, (None, 0)), (8, ("H2027", 1)), (15, ("H2027", 1)), (22, ("H2027", 1)),
     (23, ("H2027", 2)), (37, ("H2027", 2)), (38, ("H2027", 3)), (60, ("H2027", 4))],
)  # fmt: skip
def test_per_15_minutes_counts_units_by_the_8_minute_rule(minutes: int, expected: tuple[str | None, int]) -> None:
    assert EDUCATION.units == "per_15_minutes"
    assert billing_code(EDUCATION, minutes) == expected


@pytest.mark.parametrize(
    ("minutes", "code"),
    [(120, "90837"), (53, "90837"), (52, "90834"), (38, "90834"), (37, "90832"), (16, "90832"), (15, None), (0, None)],
)
def test_time_based_individual_codes(minutes: int, code: str | None) -> None:
    assert billing_code(INDIVIDUAL, minutes) == (code, 1 if code else 0)


@given(minutes=st.integers(min_value=0, max_value=720))
def test_per_15_minutes_units_property(minutes: int) -> None:
    code, units = billing_code(EDUCATION, minutes)
    assert units == (0 if minutes < 8 else (minutes - 8) // 15 + 1)
    assert (code is None) == (minutes < 8)


@given(minutes=st.integers(min_value=0, max_value=720), order=st.permutations(range(3)))
def test_the_longest_code_reached_wins_in_whatever_order_the_codes_are_listed(minutes: int, order: list[int]) -> None:
    codes = [BillingCode(code="90837", min_minutes=53), BillingCode(code="90834", min_minutes=38),
             BillingCode(code="90832", min_minutes=16)]  # fmt: skip
    kind = SessionKindPolicy(minutes=53, codes=[codes[i] for i in order])
    expected = "90837" if minutes >= 53 else "90834" if minutes >= 38 else "90832" if minutes >= 16 else None
    assert billing_code(kind, minutes) == (expected, 1 if expected else 0)


# --- services delivered and service days --------------------------------------------------------------------


WEEK_LATER = datetime(2026, 10, 28, 20, 0, tzinfo=UTC)  # Wednesday 28 16:00: WED_21 to WED_28 are over


def reviewed(plan: CarePlan, at: datetime = RECORDED) -> tuple[CarePlan, list[EventData]]:
    return review_services(plan, POLICY, at)


def test_an_attended_session_is_a_service_and_its_day_rolls_up() -> None:
    plan, events = reviewed(attend(joined_plan(), WED_21, "attended", RECORDED))
    service, day = events
    assert service == ServiceDelivered(
        episode_id="ep-1",
        service_id=WED_21,
        revision=1,
        status="delivered",
        session_id=WED_21,
        kind="group",
        group_id="iop-am",
        service_date=date(2026, 10, 21),
        minutes=180,
        code="90853",
        units=1,
        level=CareLevel.IOP,
        attendance="attended",
        recorded_at=RECORDED,
    )
    assert day == ServiceDayCompleted(
        episode_id="ep-1",
        service_date=date(2026, 10, 21),
        revision=1,
        level=CareLevel.IOP,
        services=1,
        minutes=180,
        service_ids=[WED_21],
        per_diem_code="H0015",
        completed_at=RECORDED,
    )
    assert plan.services[WED_21].revision == 1
    assert plan.service_days[date(2026, 10, 21)] == ServiceDay(
        revision=1, level=CareLevel.IOP, services=1, minutes=180, service_ids=[WED_21], per_diem_code="H0015"
    )


def test_a_late_arrival_is_a_service_of_the_minutes_attended() -> None:
    _, events = reviewed(attend(joined_plan(), WED_21, "late", RECORDED, minutes=150))
    [service] = delivered_events(events)
    assert (service.attendance, service.minutes, service.code, service.units) == ("late", 150, "90853", 1)
    [day] = day_events(events)
    assert (day.minutes, day.per_diem_code) == (150, None)  # under the 3 hours of the IOP per diem


def test_a_late_arrival_without_minutes_is_the_whole_session() -> None:
    _, events = reviewed(attend(joined_plan(), WED_21, "late", RECORDED))
    [service] = delivered_events(events)
    assert service.minutes == 180


@pytest.mark.parametrize("status", ["missed", "excused"])
def test_an_absence_publishes_nothing(status: AttendanceStatus) -> None:
    plan = attend(joined_plan(), WED_21, status, RECORDED)
    assert reviewed(plan) == (plan, [])


def test_the_same_attendance_reviewed_twice_publishes_nothing() -> None:
    plan, events = reviewed(attend(joined_plan(), WED_21, "attended", RECORDED))
    assert events
    assert reviewed(plan, RECORDED + timedelta(hours=1)) == (plan, [])
    same = attend(plan, WED_21, "attended", RECORDED + timedelta(hours=2))  # recorded again: no change
    assert reviewed(same, RECORDED + timedelta(hours=2)) == (same, [])


@pytest.mark.parametrize("absence", ["missed", "excused"])
def test_a_service_corrected_to_an_absence_is_voided_and_its_day_published_again(absence: AttendanceStatus) -> None:
    plan, _ = reviewed(attend(joined_plan(), WED_21, "attended", RECORDED))
    later = RECORDED + timedelta(days=1)
    plan, events = reviewed(attend(plan, WED_21, absence, later), later)
    service, day = events
    assert isinstance(service, ServiceDelivered)
    assert (service.service_id, service.revision, service.status, service.attendance) == (WED_21, 2, "voided", absence)
    assert (service.minutes, service.code, service.units, service.recorded_at) == (0, None, 0, later)
    assert isinstance(day, ServiceDayCompleted)
    assert (day.revision, day.services, day.minutes, day.service_ids, day.per_diem_code) == (2, 0, 0, [], None)
    plan, events = reviewed(attend(plan, WED_21, "attended", later), later)
    [again] = delivered_events(events)
    assert (again.revision, again.status) == (3, "delivered")
    assert [d.revision for d in day_events(events)] == [3]


def test_a_correction_of_the_minutes_is_a_new_revision() -> None:
    plan, _ = reviewed(attend(joined_plan(), WED_21, "attended", RECORDED))
    plan, events = reviewed(attend(plan, WED_21, "late", RECORDED, minutes=170))
    [service] = delivered_events(events)
    assert (service.revision, service.minutes, service.attendance) == (2, 170, "late")
    [day] = day_events(events)
    assert (day.revision, day.minutes, day.per_diem_code) == (2, 170, None)


def test_a_day_rolls_up_once_every_session_of_it_has_a_record() -> None:
    plan, individual = book(joined_plan(), "individual", ny(2026, 10, 21, 14))
    plan, events = reviewed(attend(plan, WED_21, "attended", RECORDED))
    assert [type(event) for event in events] == [ServiceDelivered]  # the individual session has no record yet
    plan, events = reviewed(attend(plan, individual, "attended", RECORDED))
    [service] = delivered_events(events)
    assert (service.kind, service.group_id, service.minutes, service.code) == ("individual", None, 53, "90837")
    [day] = day_events(events)
    assert (day.revision, day.services, day.minutes, day.service_ids) == (1, 2, 233, [WED_21, individual])
    assert day.per_diem_code == "H0015"


def test_a_missed_session_completes_its_day_without_counting() -> None:
    plan, individual = book(joined_plan(), "individual", ny(2026, 10, 21, 14))
    plan, _ = reviewed(attend(plan, individual, "attended", RECORDED, minutes=40))
    plan, events = reviewed(attend(plan, WED_21, "missed", RECORDED))
    [day] = day_events(events)
    assert (day.services, day.minutes, day.service_ids, day.per_diem_code) == (1, 40, [individual], None)
    assert plan.services[individual].code == "90834"


def test_a_level_without_a_per_diem_rolls_its_days_up_without_a_code() -> None:
    plan = joined_plan("op-am")  # Tuesdays 10:00-11:30
    plan, events = reviewed(attend(plan, "op-am-20261027", "attended", LATER), LATER)
    [service] = delivered_events(events)
    assert (service.level, service.minutes, service.code, service.units) == (CareLevel.OP, 90, "90853", 1)
    [day] = day_events(events)
    assert (day.level, day.services, day.per_diem_code) == (CareLevel.OP, 1, None)


def test_a_service_is_reported_at_the_level_the_episode_had_when_the_session_took_place() -> None:
    plan = attend(joined_plan(), WED_21, "attended", RECORDED)
    now = datetime(2026, 10, 27, 12, 0, tzinfo=UTC)
    plan, _ = change_level(plan, recommendation(CareLevel.PHP, now), POLICY, now, Joined(group("php-am")))
    plan = attend(plan, "php-am-20261028", "attended", datetime(2026, 10, 28, 20, 0, tzinfo=UTC))
    _, events = reviewed(plan, datetime(2026, 10, 28, 20, 0, tzinfo=UTC))
    levels = {event.session_id: (event.level, event.minutes) for event in delivered_events(events)}
    assert levels == {WED_21: (CareLevel.IOP, 180), "php-am-20261028": (CareLevel.PHP, 300)}
    per_diem = {day.service_date: (day.level, day.per_diem_code) for day in day_events(events)}
    assert per_diem == {date(2026, 10, 21): (CareLevel.IOP, "H0015"), date(2026, 10, 28): (CareLevel.PHP, "H0035")}


SERVICE_STATUSES: list[AttendanceStatus] = ["attended", "late", "missed", "excused"]


@settings(max_examples=120, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=4),
            st.sampled_from(SERVICE_STATUSES),
            st.one_of(st.none(), st.integers(min_value=0, max_value=200)),
        ),
        max_size=25,
    )
)
def test_published_services_follow_the_attendance_by_revisions(
    recordings: list[tuple[int, AttendanceStatus, int | None]],
) -> None:
    plan, individual = book(joined_plan(), "individual", ny(2026, 10, 21, 14))
    pool = [WED_21, individual, FRI_23, MON_26, WED_28]
    revisions: dict[str, int] = {}
    day_revisions: dict[date, int] = {}
    for step, (index, status, minutes) in enumerate(recordings):
        at = WEEK_LATER + timedelta(minutes=step)
        session = session_of(plan, pool[index])
        length = round((session.ends_at - session.starts_at).total_seconds() / 60)
        attended = min(minutes, length) if minutes is not None and status in ("attended", "late") else None
        plan = attend(plan, pool[index], status, at, attended)
        plan, events = review_services(plan, POLICY, at)
        assert review_services(plan, POLICY, at) == (plan, [])  # reviewing again publishes nothing
        for service in delivered_events(events):
            assert service.revision == revisions.get(service.service_id, 0) + 1
            revisions[service.service_id] = service.revision
        for completed in day_events(events):
            assert completed.revision == day_revisions.get(completed.service_date, 0) + 1
            day_revisions[completed.service_date] = completed.revision
        for session_id, record in plan.attendance.items():
            line = plan.services.get(session_id)
            if record.status in ("attended", "late"):
                assert line is not None and line.status == "delivered"
                assert line.attendance == record.status
                whole = round((session_of(plan, session_id).ends_at - session_of(plan, session_id).starts_at)
                              .total_seconds() / 60)  # fmt: skip
                assert line.minutes == (whole if record.minutes is None else record.minutes)
            else:
                assert line is None or line.status == "voided"
        for day, rolled in plan.service_days.items():
            same_day = [s.session_id for s in sessions_of(plan) if s.starts_at.astimezone(NY).date() == day]
            assert all(sid in plan.attendance for sid in same_day)
            delivered = [sid for sid in same_day if plan.attendance[sid].status in ("attended", "late")]
            assert rolled.service_ids == delivered
            assert rolled.services == len(delivered)


def test_a_service_recorded_ahead_and_taken_off_the_calendar_is_voided_and_its_day_emptied() -> None:
    plan = ahead(joined_plan(), FRI_30, RECORDED)  # recorded ahead of the session
    plan, _ = reviewed(plan)
    now = datetime(2026, 10, 27, 12, 0, tzinfo=UTC)  # Tuesday: a step-up takes Friday's IOP session away
    moved, _ = change_level(plan, recommendation(CareLevel.PHP, now), POLICY, now, Joined(group("php-am")))
    moved = ahead(moved, "php-am-20261030", now)  # the day's new session, recorded ahead too
    moved, events = review_services(moved, POLICY, now)
    [voided] = [e for e in delivered_events(events) if e.service_id == FRI_30]
    assert (voided.status, voided.revision, voided.minutes, voided.code) == ("voided", 2, 0, None)
    [day] = [e for e in day_events(events) if e.service_date == date(2026, 10, 30)]
    assert (day.revision, day.service_ids, day.level) == (2, ["php-am-20261030"], CareLevel.PHP)


def test_a_plan_stored_before_services_were_reported_is_not_billed_again() -> None:
    plan = attend(attend(joined_plan(), WED_21, "attended", RECORDED), FRI_23, "missed", WEEK_LATER)
    legacy = plan.model_copy(update={"services_tracked": False})
    baseline, events = reviewed(legacy)
    assert events == [] and baseline.services_tracked
    assert baseline.services[WED_21].revision == 0 and baseline.service_days[date(2026, 10, 21)].revision == 0
    assert reviewed(baseline) == (baseline, [])
    corrected, events = reviewed(attend(baseline, WED_21, "late", RECORDED, minutes=120))
    assert [(e.service_id, e.revision, e.minutes) for e in delivered_events(events)] == [(WED_21, 1, 120)]
    assert corrected.services[WED_21].revision == 1


def test_minutes_attended_cannot_exceed_the_session() -> None:
    with pytest.raises(CarePlanError) as caught:
        record_attendance(joined_plan(), WED_21, "late", RECORDED, minutes=181)
    assert caught.value.code == "minutes_over_session"


def test_no_group_may_take_the_custom_calendars_id(tmp_path: Path) -> None:
    raw = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    raw["groups"][0]["group_id"] = "custom"
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(PolicyError, match=r"groups\.0\.group_id"):
        load_policy(path)
