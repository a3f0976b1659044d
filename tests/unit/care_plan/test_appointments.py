"""A plan's own appointments (domain/groups.py): booked and cancelled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.care_plan.domain.care_plan import graduate
from services.care_plan.domain.groups import (
    APPOINTMENT_HORIZON,
    MOST_APPOINTMENTS_AHEAD,
    book_appointment,
    cancel_appointment,
)
from services.care_plan.domain.model import CarePlanError
from stepwise_contract import CareLevel, ScheduleChanged, ScheduledSession
from tests.unit.care_plan.helpers import (
    ASSIGNED_AT,
    POLICY,
    WED_21,
    attend,
    book,
    ids,
    joined_plan,
    ny,
    session_of,
    waiting_plan,
)


def test_an_appointment_is_named_by_its_kind_and_local_start_and_takes_the_kinds_length() -> None:
    plan = joined_plan()
    booked, changed, session_id = book_appointment(
        plan, "individual", datetime(2026, 11, 5, 19, 0, tzinfo=UTC), None, POLICY, ASSIGNED_AT
    )  # 14:00 EST
    assert session_id == "individual-20261105-1400"
    session = session_of(booked, session_id)
    assert session.ends_at - session.starts_at == timedelta(minutes=POLICY.session_kinds["individual"].minutes)
    assert (session.kind, session.group_id) == ("individual", None)
    assert booked.appointments == [session]
    assert ids(booked) == sorted(ids(booked), key=lambda sid: session_of(booked, sid).starts_at)
    assert len(ids(booked)) == len(ids(plan)) + 1
    assert changed == ScheduleChanged(episode_id="ep-1", level=CareLevel.IOP, changed_at=ASSIGNED_AT,
                                      schedule=booked.schedule, reason="appointment_booked")  # fmt: skip
    _, summer = book(plan, "family", datetime(2026, 10, 22, 18, 0, tzinfo=UTC))  # 14:00 EDT
    assert summer == "family-20261022-1400"


def test_an_appointment_may_be_given_its_own_length() -> None:
    booked, session_id = book(joined_plan(), "family", ny(2026, 10, 22, 14), minutes=90)
    session = session_of(booked, session_id)
    assert session.ends_at - session.starts_at == timedelta(minutes=90)


def test_an_appointment_may_begin_as_a_group_session_ends() -> None:
    booked, session_id = book(joined_plan(), "individual", ny(2026, 10, 21, 12))
    assert session_id == "individual-20261021-1200"
    assert ids(booked)[:2] == [WED_21, session_id]


def test_a_waiting_plan_can_book_appointments() -> None:
    booked, session_id = book(waiting_plan(), "individual", ny(2026, 10, 21, 10))
    assert ids(booked) == [session_id]


@pytest.mark.parametrize(
    ("kind", "starts_at", "code", "names"),
    [
        ("yoga", ny(2026, 10, 22, 14), "unknown_kind", "individual, family"),  # the kinds there are, never the value
        ("individual", ASSIGNED_AT, "appointment_in_past", None),
        ("individual", ny(2026, 10, 19, 14), "appointment_in_past", None),
        ("individual", ny(2026, 10, 21, 10), "overlapping_session", WED_21),
        ("family", ny(2026, 10, 21, 11, 30), "overlapping_session", WED_21),
        ("individual", ny(2026, 10, 22, 13, 30), "overlapping_session", "individual-20261022-1300"),
        ("individual", ASSIGNED_AT + APPOINTMENT_HORIZON + timedelta(hours=1), "appointment_too_far", "366 days"),
    ],
)
def test_an_appointment_that_cannot_be_booked(kind: str, starts_at: datetime, code: str, names: str | None) -> None:
    plan, _ = book(joined_plan(), "individual", ny(2026, 10, 22, 13))
    with pytest.raises(CarePlanError) as caught:
        book_appointment(plan, kind, starts_at, None, POLICY, ASSIGNED_AT)
    assert caught.value.code == code
    if names:
        assert names in str(caught.value)


def test_a_plan_keeps_at_most_so_many_appointments_ahead() -> None:
    plan = joined_plan()
    past = ScheduledSession(session_id="individual-past", starts_at=ASSIGNED_AT - timedelta(days=1),
                            ends_at=ASSIGNED_AT - timedelta(hours=23), kind="individual")  # fmt: skip
    ahead = [ScheduledSession(session_id=f"individual-{n}", starts_at=ASSIGNED_AT + timedelta(days=200, hours=n),
                              ends_at=ASSIGNED_AT + timedelta(days=200, hours=n, minutes=50), kind="individual")
             for n in range(MOST_APPOINTMENTS_AHEAD)]  # fmt: skip
    full = plan.model_copy(update={"appointments": [past, *ahead]})
    with pytest.raises(CarePlanError) as caught:
        book_appointment(full, "individual", ny(2026, 10, 22, 14), None, POLICY, ASSIGNED_AT)
    assert caught.value.code == "too_many_appointments" and f"{MOST_APPOINTMENTS_AHEAD} appointments" in str(
        caught.value
    )
    room = plan.model_copy(update={"appointments": [past, *ahead[1:]]})  # one that has passed does not count
    booked, _, _ = book_appointment(room, "individual", ny(2026, 10, 22, 14), None, POLICY, ASSIGNED_AT)
    assert len(booked.appointments) == MOST_APPOINTMENTS_AHEAD + 1


def test_two_appointments_never_share_a_session_id() -> None:
    """Clocks go back at 02:00 on 2026-11-01 in New York: 01:30 comes twice, an hour apart. Two appointments at
    the two 01:30s do not overlap: both are booked, and the second (fold 1) is told apart by ``-2``."""
    plan = joined_plan()
    edt, est = datetime(2026, 11, 1, 5, 30, tzinfo=UTC), datetime(2026, 11, 1, 6, 30, tzinfo=UTC)  # 01:30, twice
    first, first_id = book(plan, "individual", edt, minutes=50)
    second, second_id = book(first, "individual", est, minutes=50)
    assert (first_id, second_id) == ("individual-20261101-0130", "individual-20261101-0130-2")
    assert first_id != second_id
    assert len(set(ids(second))) == len(ids(second))
    assert second.schedule is not None
    starts = {session.session_id: session.starts_at for session in second.schedule.sessions}
    assert (starts[first_id], starts[second_id]) == (edt, est)


def test_no_appointment_on_a_plan_that_ended() -> None:
    ended, _ = graduate(joined_plan(), ASSIGNED_AT, "clinician")
    with pytest.raises(CarePlanError) as caught:
        book_appointment(ended, "individual", ny(2026, 10, 22, 14), None, POLICY, ASSIGNED_AT)
    assert caught.value.code == "plan_not_active"


def test_cancelling_an_appointment_takes_it_off_the_calendar() -> None:
    plan = joined_plan()
    booked, session_id = book(plan, "individual", ny(2026, 10, 22, 14))
    now = ASSIGNED_AT + timedelta(hours=1)
    cancelled, changed = cancel_appointment(booked, session_id, now)
    assert cancelled.schedule == plan.schedule
    assert cancelled.appointments == []
    assert changed == ScheduleChanged(episode_id="ep-1", level=CareLevel.IOP, changed_at=now,
                                      schedule=plan.schedule, reason="appointment_cancelled")  # fmt: skip


@pytest.mark.parametrize(
    ("session_id", "now", "recorded", "code"),
    [
        ("individual-20261023-1400", ASSIGNED_AT, False, "unknown_session"),
        (WED_21, ASSIGNED_AT, False, "unknown_session"),  # a group session is not an appointment
        ("individual-20261022-1400", ny(2026, 10, 22, 14), False, "appointment_in_past"),
        ("individual-20261022-1400", ASSIGNED_AT, True, "appointment_in_past"),
    ],
)
def test_an_appointment_that_cannot_be_cancelled(session_id: str, now: datetime, recorded: bool, code: str) -> None:
    booked, _ = book(joined_plan(), "individual", ny(2026, 10, 22, 14))
    if recorded:
        booked = attend(booked, "individual-20261022-1400", "excused", ASSIGNED_AT)
    with pytest.raises(CarePlanError) as caught:
        cancel_appointment(booked, session_id, now)
    assert caught.value.code == code
