"""The caseload's projection (pure): every event type, redelivery, out-of-order arrival, corrections."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.caseload.domain.model import EpisodeView
from services.caseload.domain.projection import PROJECTORS, apply
from services.caseload.domain.worklists import (
    census,
    flags,
    misses_in_a_row,
    safety_alert_rows,
    session_days,
    today_rows,
)
from stepwise_contract import (
    EVENT_TYPES,
    CareLevelChanged,
    CloudEvent,
    EventData,
    InstrumentMeasure,
    MeasureDue,
    MeasureOverdue,
    MeasureRecorded,
    Reason,
    SafetyAlertAcknowledged,
    SafetyAlertRaised,
    ServiceDelivered,
    SessionMissed,
    StepUpRecommended,
    new_event,
)
from tests.unit.contract.test_contract import EPISODE, T0, make_data

ZONE = ZoneInfo("America/New_York")
SESSION = "iop-am-20261021"


def event(data: EventData, at: datetime = T0, source: str = "/stepwise/test") -> CloudEvent[Any]:
    made: CloudEvent[Any] = new_event(data, source=source, time=at)
    return made


def project(*events: CloudEvent[Any]) -> EpisodeView:
    view: EpisodeView | None = None
    for each in events:
        view = apply(view, each) or view
    assert view is not None
    return view


def admitted() -> CloudEvent[Any]:
    return event(make_data("iop.care_level.assigned"))


def raised(alert_id: str = "al-1", at: datetime = T0) -> CloudEvent[Any]:
    return event(SafetyAlertRaised(episode_id=EPISODE, alert_id=alert_id, assessment_id="a-2", level="immediate",
                                   reasons=["cssrs_high_risk"], raised_at=at), at)  # fmt: skip


def acknowledged(alert_id: str = "al-1", at: datetime = T0 + timedelta(minutes=5)) -> CloudEvent[Any]:
    return event(SafetyAlertAcknowledged(episode_id=EPISODE, alert_id=alert_id, acknowledged_at=at), at)


def missed(session_id: str, starts_at: datetime, run: int) -> CloudEvent[Any]:
    data = SessionMissed(
        episode_id=EPISODE,
        session_id=session_id,
        starts_at=starts_at,
        detected="reported",
        recorded_at=starts_at + timedelta(hours=1),
        consecutive_misses=run,
        total_misses=run,
    )
    return event(data, starts_at + timedelta(hours=1))


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_event_type_is_on_the_timeline_with_a_summary(event_type: str) -> None:
    view = project(admitted(), event(make_data(event_type)))
    [entry] = [e for e in view.timeline if e.type == event_type][-1:]
    assert entry.summary and EPISODE not in entry.summary


def test_every_projected_type_is_an_event_type() -> None:
    assert set(PROJECTORS) <= set(EVENT_TYPES)


def test_an_admission_gives_level_status_group_and_calendar() -> None:
    view = project(event(make_data("iop.assessment.completed")), admitted())
    assert (view.level.value, view.status.value, view.group_id.value, view.program.value) == (
        "IOP", "active", "iop-am", "adult")  # fmt: skip
    assert [s.session_id for s in view.calendar()] == [SESSION]
    assert [m.kind for m in view.movements] == ["admission"]


def test_the_days_of_the_sessions_are_the_clinics_local_days_as_the_calendar_gives_them() -> None:
    view = project(event(make_data("iop.assessment.completed")), admitted())
    read_back = EpisodeView.model_validate(view.model_dump(mode="json"))  # as the store gives it back
    expected = sorted({s.starts_at.astimezone(ZONE).date().isoformat() for s in view.calendar()})

    assert session_days(view, ZONE) == session_days(read_back, ZONE) == expected == ["2026-10-21"]
    late_evening = {"session_id": "s-1", "starts_at": "2026-10-22T02:30:00Z", "ends_at": "2026-10-22T03:30:00Z"}
    view.sessions.value = [late_evening]
    assert session_days(view, ZONE) == ["2026-10-21"]  # 22:30 in New York


def test_events_of_one_write_are_on_the_timeline_in_the_flows_order_whatever_their_ids() -> None:
    """An assessment and the measure it recorded are published by one write, at the same moment: the timeline
    shows the assessment first, however their ids (the tie's last resort) compare."""
    for source in ("/stepwise/a", "/stepwise/z"):
        assessment = event(make_data("iop.assessment.completed"), source="/stepwise/m")
        measure = event(make_data("iop.measure.recorded"), source=source)
        for view in (project(assessment, measure), project(measure, assessment)):
            assert [entry.type for entry in view.timeline] == ["iop.assessment.completed", "iop.measure.recorded"]


def test_a_redelivery_changes_nothing() -> None:
    once = admitted()
    view = project(once)
    assert apply(view, once) is None
    assert len(project(once, once, once).timeline) == 1


def test_an_alert_is_open_until_acknowledged() -> None:
    assert flags(project(admitted(), raised()), 2) == ["safety_alert"]
    assert flags(project(admitted(), raised(), acknowledged()), 2) == []


def test_an_acknowledgement_before_its_alert_leaves_it_closed() -> None:
    view = project(admitted(), acknowledged(), raised())
    assert safety_alert_rows([view]) == [] and "safety_alert" not in flags(view, 2)
    assert view.alerts["al-1"].raised_at == T0


def test_two_misses_in_a_row_flag_the_member_whatever_the_order() -> None:
    first, second = T0 + timedelta(days=1), T0 + timedelta(days=3)
    for order in ((missed("s1", first, 1), missed("s2", second, 2)), (missed("s2", second, 2), missed("s1", first, 1))):
        view = project(admitted(), *order)
        assert misses_in_a_row(view) == 2 and "missed_sessions" in flags(view, 2)


def test_a_correction_to_attended_ends_the_run() -> None:
    start = T0 + timedelta(days=1)
    delivered = ServiceDelivered(episode_id=EPISODE, service_id="s1", revision=1, status="delivered", session_id="s1",
                                 kind="group", group_id="iop-am", service_date=start.date(), minutes=180,
                                 code="90853", units=1, level="IOP", attendance="attended",
                                 recorded_at=start + timedelta(hours=5))  # fmt: skip
    view = project(admitted(), missed("s1", start, 1), event(delivered))
    assert view.attendance["s1"].status == "attended" and misses_in_a_row(view) == 0


def test_a_decided_recommendation_stays_closed_when_it_arrives_late() -> None:
    recommendation = StepUpRecommended(episode_id=EPISODE, recommendation_id="r-1", from_level="IOP", to_level="PHP",
                                       rationale=[Reason(code="x", text="y")], policy_version="p",
                                       recommended_at=T0)  # fmt: skip
    changed = CareLevelChanged(episode_id=EPISODE, from_level="IOP", to_level="PHP", direction="up",
                               recommendation_id="r-1", changed_at=T0 + timedelta(hours=1), status="active",
                               schedule=None)  # fmt: skip
    for order in ((recommendation, changed), (changed, recommendation)):
        view = project(admitted(), *(event(data) for data in order))
        assert view.recommendation is None and view.level.value == "PHP"
    assert project(admitted(), event(recommendation)).recommendation is not None


def test_an_ended_episode_stays_ended_when_an_older_event_comes_later() -> None:
    view = project(event(make_data("iop.episode.discharged")), admitted())
    assert view.status.value == "discharged"


def test_a_due_measure_is_done_once_recorded_in_its_window_in_any_order() -> None:
    due = MeasureDue(episode_id=EPISODE, due_id="d-1", instruments=["phq9"], reason="schedule",
                     window_opens_at=T0, window_closes_at=T0 + timedelta(days=2))  # fmt: skip
    overdue = MeasureOverdue(**due.model_dump(exclude={"schema_version"}))
    measure = InstrumentMeasure(instrument="phq9", score=8, band="mild", baseline_score=12, previous_score=12,
                                classification="no_reliable_change", recovered=False, response=False)  # fmt: skip
    recorded = MeasureRecorded(episode_id=EPISODE, measure_id="m-1", source="measure",
                               recorded_at=T0 + timedelta(days=1), instruments=[measure])  # fmt: skip
    assert project(event(due)).measures["d-1"].state == "due"
    assert project(event(overdue), event(due)).measures["d-1"].state == "overdue"
    for order in ((due, recorded), (recorded, due)):
        view = project(*(event(data) for data in order))
        assert view.measures["d-1"].state == "done" and view.scores["phq9"].score == 8


def test_today_lists_the_group_session_with_its_member_and_record() -> None:
    view = project(admitted())
    [session] = today_rows([view], datetime(2026, 10, 21).date(), ZONE)
    assert session["session_id"] == SESSION and session["members"] == [{"episode_id": EPISODE, "record": None}]


def test_census_counts_episodes_in_care_and_admissions() -> None:
    view = project(admitted())
    counted = census([view], T0.date(), T0 - timedelta(days=1), T0 + timedelta(days=1), ZONE)
    assert counted["per_level"] == {"IOP": 1} and counted["movements"] == {"admission": 1}


SAMPLES = [admitted(), raised(), acknowledged(), missed("s1", T0 + timedelta(days=1), 1),
           missed(SESSION, T0 + timedelta(days=2), 2), event(make_data("iop.care_team.changed")),
           event(make_data("iop.care_level.step_up_recommended")), event(make_data("iop.measure.due")),
           event(make_data("iop.measure.recorded")), event(make_data("iop.notification.failed")),
           event(make_data("iop.episode.graduated"))]  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(st.permutations(SAMPLES))
def test_the_projection_does_not_depend_on_the_order_events_arrive_in(events: list[CloudEvent[Any]]) -> None:
    assert project(*events) == project(*SAMPLES)


def test_keys_are_source_and_id() -> None:
    same = admitted()
    other_source = same.model_copy(update={"source": "/stepwise/elsewhere", "id": str(uuid.uuid4())})
    assert len(project(same, other_source).timeline) == 2


def _to_the_millisecond(value: Any) -> Any:
    """What MongoDB keeps of a document: dates to the millisecond."""
    if isinstance(value, datetime):
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    if isinstance(value, dict):
        return {key: _to_the_millisecond(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_to_the_millisecond(item) for item in value]
    return value


def stored(view: EpisodeView) -> EpisodeView:
    return EpisodeView.model_validate(_to_the_millisecond(view.model_dump()))


def test_applied_live_through_the_store_or_rebuilt_in_memory_alike() -> None:
    """Events of one millisecond (an assessment and its alert): read back from the store before each event, or
    applied in memory by a rebuild, the projection is the same."""
    events = [event(make_data("iop.assessment.completed"), T0 + timedelta(microseconds=600)),
              raised("al-1", T0 + timedelta(microseconds=100)), admitted()]  # fmt: skip
    live: EpisodeView | None = None
    for each in events:
        live = stored(apply(live, each) or live)  # type: ignore[arg-type]
    rebuilt: EpisodeView | None = None
    for each in sorted(events, key=lambda e: e.type):
        rebuilt = apply(rebuilt, each, in_place=True) or rebuilt
    assert live is not None and rebuilt is not None
    assert live == stored(rebuilt)
