"""The CloudEvents envelope and its Kafka binary-mode codec, and the event data schemas."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stepwise_contract import (
    CONTENT_TYPE,
    EVENT_TYPES,
    AlumniEnrolled,
    AlumniLeft,
    AssessmentCompleted,
    AttendanceRuleTriggered,
    AuthorizationChanged,
    AuthorizationExhausted,
    AuthorizationLevelMismatch,
    AuthorizationReviewDue,
    AuthorizationUnitsLow,
    CareLevel,
    CareLevelAssigned,
    CareLevelChanged,
    CareTeamChanged,
    CertificationDue,
    CertificationRecorded,
    CloudEvent,
    ConsentChanged,
    DimensionRatings,
    DrugScreenRecorded,
    EpisodeDischarged,
    EpisodeGraduated,
    EventData,
    GroupWaitlisted,
    InstrumentMeasure,
    InstrumentResult,
    MalformedEvent,
    MeasureDue,
    MeasureOverdue,
    MeasureRecorded,
    NotificationFailed,
    NotificationSent,
    Reason,
    SafetyAlertAcknowledged,
    SafetyAlertEscalated,
    SafetyAlertRaised,
    Schedule,
    ScheduleChanged,
    ScheduledSession,
    ScreenResult,
    ServiceDayCompleted,
    ServiceDelivered,
    ServiceUnauthorized,
    SessionMissed,
    StepDownRecommended,
    StepUpRecommended,
    TreatmentPlanReviewDue,
    TreatmentPlanReviewed,
    TreatmentPlanReviewOverdue,
    TreatmentPlanSigned,
    UtilizationBelowMinimum,
    from_headers,
    from_kafka,
    new_event,
    to_kafka,
)

SOURCE = "/stepwise/test"
EPISODE = "7d0c1f3e-4b0a-4a57-9c1e-2b8f6a1d0e42"
T0 = datetime(2026, 10, 20, 13, 30, 15, 123456, tzinfo=UTC)


def make_data(event_type: str, episode_id: str = EPISODE, session_id: str = "iop-am-20261021") -> EventData:
    if event_type == AssessmentCompleted.event_type:
        return AssessmentCompleted(
            episode_id=episode_id,
            assessment_id="a-1",
            kind="intake",
            program="adult",
            assessed_at=T0,
            dimensions=DimensionRatings(withdrawal=1, biomedical=0, emotional=3, readiness=2, relapse=2, environment=1),
            instruments=[InstrumentResult(instrument="phq9", total=12, band="moderate", flags=["same_day_review"])],
            recommended_level=CareLevel.PHP,
            rationale=[Reason(code="highest_dimension", text="Highest dimension rating is 3 (emotional): PHP.")],
            policy_version="simple-1",
        )
    if event_type == CareLevelAssigned.event_type:
        start = datetime(2026, 10, 21, 13, 0, tzinfo=UTC)
        return CareLevelAssigned(
            episode_id=episode_id,
            level=CareLevel.IOP,
            status="active",
            assigned_at=T0,
            assessment_id="a-1",
            schedule=Schedule(
                timezone="America/New_York",
                track="morning",
                days_per_week=3,
                hours_per_session=3.0,
                weeks=8,
                sessions=[
                    ScheduledSession(
                        session_id=session_id,
                        starts_at=start,
                        ends_at=start + timedelta(hours=3),
                        kind="group",
                        group_id="iop-am",
                    )
                ],
            ),
            rationale=[Reason(code="level_offered", text="IOP is offered here: care plan started.")],
            policy_version="default-2026.12",
        )
    if event_type == SafetyAlertRaised.event_type:
        return SafetyAlertRaised(
            episode_id=episode_id,
            alert_id="alert-1",
            assessment_id="a-1",
            level="immediate",
            reasons=["cssrs_high_risk", "phq9_item9_positive"],
            raised_at=T0,
        )
    if event_type == SafetyAlertAcknowledged.event_type:
        return SafetyAlertAcknowledged(episode_id=episode_id, alert_id="alert-1", acknowledged_at=T0)
    if event_type == SafetyAlertEscalated.event_type:
        return SafetyAlertEscalated(episode_id=episode_id, alert_id="alert-1", level="immediate",
                                    acknowledge_by=T0 - timedelta(minutes=1), escalated_at=T0)  # fmt: skip
    if event_type == DrugScreenRecorded.event_type:
        return DrugScreenRecorded(
            episode_id=episode_id,
            screen_id="ds-1",
            collected_at=T0 - timedelta(hours=2),
            recorded_at=T0,
            results=[
                ScreenResult(substance="buprenorphine", result="positive", expected=True),
                ScreenResult(substance="fentanyl", result="negative"),
            ],
            unexpected_positive=False,
        )
    if event_type == MeasureRecorded.event_type:
        phq9 = InstrumentMeasure(instrument="phq9", score=9, band="mild", baseline_score=16, previous_score=12,
                                 classification="reliable_improvement", recovered=True, response=False)  # fmt: skip
        return MeasureRecorded(episode_id=episode_id, measure_id="m-1", source="measure", recorded_at=T0,
                               instruments=[phq9])  # fmt: skip
    if event_type == ConsentChanged.event_type:
        return ConsentChanged(
            episode_id=episode_id, consent_id="c-1", recipient_kind="family", status="granted", changed_at=T0
        )
    rationale = [Reason(code="attendance_rate", text="Attendance 92% meets the 80% minimum.")]
    if event_type in (StepUpRecommended.event_type, StepDownRecommended.event_type):
        model = StepUpRecommended if event_type == StepUpRecommended.event_type else StepDownRecommended
        return model(
            episode_id=episode_id,
            recommendation_id="r-1",
            from_level=CareLevel.IOP,
            to_level=CareLevel.OP,
            rationale=rationale,
            policy_version="default-2026.12",
            recommended_at=T0,
        )
    if event_type == CareLevelChanged.event_type:
        return CareLevelChanged(
            episode_id=episode_id,
            from_level=CareLevel.IOP,
            to_level=CareLevel.PHP,
            direction="up",
            recommendation_id="r-1",
            changed_at=T0,
            status="active",
            schedule=None,
        )
    if event_type == AttendanceRuleTriggered.event_type:
        return AttendanceRuleTriggered(
            episode_id=episode_id,
            rule_code="consecutive_misses_outreach",
            action="outreach",
            session_id=session_id,
            consecutive_misses=2,
            misses_in_window=2,
            rationale=rationale,
            policy_version="default-2026.12",
            triggered_at=T0,
        )
    if event_type == UtilizationBelowMinimum.event_type:
        return UtilizationBelowMinimum(
            episode_id=episode_id, week_start=T0.date(), level=CareLevel.IOP, hours_attended=6.0, minimum_hours=9.0
        )
    if event_type == EpisodeGraduated.event_type:
        return EpisodeGraduated(episode_id=episode_id, graduated_at=T0, level=CareLevel.OP, by="completion")
    if event_type == EpisodeDischarged.event_type:
        return EpisodeDischarged(
            episode_id=episode_id, discharged_at=T0, level=CareLevel.IOP, reason_code="non_attendance"
        )
    if event_type in (NotificationSent.event_type, NotificationFailed.event_type):
        outcome = {"episode_id": episode_id, "notification_id": "n-1", "purpose": "welcome",
                   "recipient_kind": "patient", "channel": "email", "attempts": 2}  # fmt: skip
        if event_type == NotificationSent.event_type:
            return NotificationSent(**outcome, sent_at=T0)
        return NotificationFailed(**outcome, failed_at=T0, reason_code="retries_exhausted")
    if event_type == ScheduleChanged.event_type:
        assigned = make_data(CareLevelAssigned.event_type, episode_id=episode_id)
        assert isinstance(assigned, CareLevelAssigned) and assigned.schedule is not None
        return ScheduleChanged(episode_id=episode_id, level=CareLevel.IOP, changed_at=T0, schedule=assigned.schedule)
    if event_type == GroupWaitlisted.event_type:
        return GroupWaitlisted(
            episode_id=episode_id,
            level=CareLevel.IOP,
            track="morning",
            program="adult",
            group_ids=["iop-am"],
            position=3,
            waitlisted_at=T0,
        )
    if event_type == ServiceDelivered.event_type:
        return ServiceDelivered(
            episode_id=episode_id,
            service_id=session_id,
            revision=1,
            status="delivered",
            session_id=session_id,
            kind="group",
            group_id="iop-am",
            service_date=T0.date(),
            minutes=180,
            code="90853",
            units=1,
            level=CareLevel.IOP,
            attendance="attended",
            recorded_at=T0,
        )
    if event_type == ServiceDayCompleted.event_type:
        return ServiceDayCompleted(
            episode_id=episode_id,
            service_date=T0.date(),
            revision=2,
            level=CareLevel.IOP,
            services=1,
            minutes=180,
            service_ids=[session_id],
            per_diem_code="H0015",
            completed_at=T0,
        )
    if event_type == AlumniEnrolled.event_type:
        return AlumniEnrolled(
            episode_id=episode_id, consent_id="c-2", graduated_at=T0, enrolled_at=T0, check_in_days=[7, 30, 60, 90]
        )
    if event_type == AlumniLeft.event_type:
        return AlumniLeft(episode_id=episode_id, left_at=T0, reason_code="opted_out")
    if event_type == MeasureRecorded.event_type:
        scored = InstrumentMeasure(instrument="phq9", score=16, band="moderately_severe", baseline_score=9,
                                    previous_score=12, classification="reliable_deterioration", recovered=False,
                                    response=False)  # fmt: skip
        return MeasureRecorded(episode_id=episode_id, measure_id="m-1", source="measure", recorded_at=T0,
                               instruments=[scored])  # fmt: skip
    if event_type in (MeasureDue.event_type, MeasureOverdue.event_type):
        window: type[MeasureDue | MeasureOverdue] = (
            MeasureDue if event_type == MeasureDue.event_type else MeasureOverdue
        )
        return window(episode_id=episode_id, due_id="d-1", instruments=["phq9", "gad7"], reason="schedule",
                     window_opens_at=T0, window_closes_at=T0 + timedelta(days=5))  # fmt: skip
    if event_type == SessionMissed.event_type:
        return SessionMissed(
            episode_id=episode_id,
            session_id=session_id,
            starts_at=datetime(2026, 10, 21, 13, 0, tzinfo=UTC),
            detected="reported",
            recorded_at=T0,
            consecutive_misses=2,
            total_misses=3,
        )
    if event_type == TreatmentPlanSigned.event_type:
        return TreatmentPlanSigned(episode_id=episode_id, version=2, supersedes_version=1, signed_at=T0,
                                   review_due_on=date(2026, 12, 7))  # fmt: skip
    if event_type in (TreatmentPlanReviewDue.event_type, TreatmentPlanReviewOverdue.event_type):
        review: type[TreatmentPlanReviewDue | TreatmentPlanReviewOverdue] = (
            TreatmentPlanReviewDue if event_type == TreatmentPlanReviewDue.event_type else TreatmentPlanReviewOverdue
        )
        return review(episode_id=episode_id, review_id="r-1", reason="reliable_deterioration", trigger_id="m-1",
                      version=2, due_on=date(2026, 12, 8), overdue_at=T0 + timedelta(days=2))  # fmt: skip
    if event_type == TreatmentPlanReviewed.event_type:
        return TreatmentPlanReviewed(episode_id=episode_id, settled_review_ids=["r-1"], version=2, outcome="continued",
                                     reviewed_at=T0, review_due_on=date(2027, 1, 6))  # fmt: skip
    if event_type in UR_SAMPLES:
        sample: EventData = UR_SAMPLES[event_type](episode_id)
        return sample
    if event_type == CareTeamChanged.event_type:
        return CareTeamChanged(episode_id=episode_id, primary_clinician="staff-7f3a", changed_at=T0)
    raise AssertionError(f"no sample for {event_type}")


D0 = T0.date()
UR_SAMPLES: dict[str, Any] = {
    AuthorizationChanged.event_type: lambda e: AuthorizationChanged(
        episode_id=e, authorization_id="au-1", revision=2, payer="carelon", level=CareLevel.IOP, unit="day",
        units_authorized=10, units_used=8, units_remaining=2, start_date=D0, end_date=D0 + timedelta(days=60),
        status="approved", review_type="concurrent", next_review_on=None, last_covered_day=None,
        projected_exhaustion_on=D0 + timedelta(days=3), review_due_on=D0 + timedelta(days=1),
        review_reason="exhaustion", changed_at=T0),
    AuthorizationReviewDue.event_type: lambda e: AuthorizationReviewDue(
        episode_id=e, authorization_id="au-1", payer="carelon", level=CareLevel.IOP, review_due_on=D0,
        reason="exhaustion", deadline=D0 + timedelta(days=3), units_remaining=2, detected_at=T0),
    AuthorizationUnitsLow.event_type: lambda e: AuthorizationUnitsLow(
        episode_id=e, authorization_id="au-1", payer="carelon", level=CareLevel.IOP, unit="day", units_remaining=4,
        units_scheduled=5, days=7, projected_exhaustion_on=D0 + timedelta(days=5), detected_at=T0),
    AuthorizationExhausted.event_type: lambda e: AuthorizationExhausted(
        episode_id=e, authorization_id="au-1", payer="carelon", level=CareLevel.IOP, unit="day", units_authorized=10,
        exhausted_on=D0, detected_at=T0),
    ServiceUnauthorized.event_type: lambda e: ServiceUnauthorized(
        episode_id=e, item="day", service_id=None, revision=1, service_date=D0, level=CareLevel.PHP, code="H0035",
        unit="day", reason="wrong_level", detected_at=T0),
    AuthorizationLevelMismatch.event_type: lambda e: AuthorizationLevelMismatch(
        episode_id=e, authorization_id="au-1", clinical_level=CareLevel.PHP, authorized_level=CareLevel.IOP,
        detected_at=T0),
    CertificationDue.event_type: lambda e: CertificationDue(
        episode_id=e, payer="medicare", due_on=D0, reason="initial", last_certified_on=None, min_hours_per_week=9,
        detected_at=T0),
    CertificationRecorded.event_type: lambda e: CertificationRecorded(
        episode_id=e, certification_id="ce-1", payer="medicare", certified_on=D0, hours_per_week=9,
        min_hours_per_week=9, next_due_on=D0 + timedelta(days=61), recorded_at=T0),
}  # fmt: skip
"""The authorizations service's events (issue 26)."""


def test_every_event_type_has_a_sample() -> None:
    assert set(EVENT_TYPES) == {
        "iop.assessment.completed",
        "iop.safety.alert_raised",
        "iop.safety.alert_acknowledged",
        "iop.safety.alert_escalated",
        "iop.drug_screen.recorded",
        "iop.consent.changed",
        "iop.measure.recorded",
        "iop.care_level.assigned",
        "iop.session.missed",
        "iop.attendance.rule_triggered",
        "iop.utilization.below_minimum",
        "iop.care_level.step_up_recommended",
        "iop.care_level.step_down_recommended",
        "iop.care_level.changed",
        "iop.schedule.changed",
        "iop.group.waitlisted",
        "iop.service.delivered",
        "iop.service_day.completed",
        "iop.episode.graduated",
        "iop.episode.discharged",
        "iop.notification.sent",
        "iop.notification.failed",
        "iop.alumni.enrolled",
        "iop.alumni.left",
        "iop.measure.due",
        "iop.measure.overdue",
        "iop.treatment_plan.signed",
        "iop.treatment_plan.review_due",
        "iop.treatment_plan.review_overdue",
        "iop.authorization.changed",
        "iop.authorization.review_due",
        "iop.authorization.units_low",
        "iop.authorization.exhausted",
        "iop.service.unauthorized",
        "iop.authorization.level_mismatch",
        "iop.certification.due",
        "iop.care_team.changed",
        "iop.treatment_plan.reviewed",
        "iop.certification.recorded",
    }
    for event_type, model in EVENT_TYPES.items():
        assert model.event_type == event_type
        assert type(make_data(event_type)) is model


def record_parts(event_type: str, **overrides: Any) -> tuple[dict[str, bytes], bytes]:
    """Headers (as a dict) and value of a valid record, for tampering."""
    record = to_kafka(new_event(make_data(event_type), source=SOURCE, time=T0))
    headers = dict(record.headers)
    assert len(headers) == len(record.headers)  # no duplicate header names
    return headers, record.value


def names_path(reason: str, path: str) -> bool:
    """The reason starts with the data field path (with or without the ``data.`` envelope prefix)."""
    return re.match(rf"^(data\.)?{re.escape(path)}: ", reason) is not None


def test_names_path_helper() -> None:
    assert names_path("data.a.b: x", "a.b")
    assert names_path("a.b: x", "a.b")
    assert not names_path("a.bc: x", "a.b")
    assert not names_path("x: a.b: y", "a.b")


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_round_trip_headers_key_and_value(event_type: str) -> None:
    model = EVENT_TYPES[event_type]
    data = make_data(event_type)
    event = new_event(data, source=SOURCE, time=T0)

    record = to_kafka(event)

    assert record.topic == event_type
    assert record.key == EPISODE.encode()
    headers = dict(record.headers)
    assert headers["ce_id"] == event.id.encode()
    assert headers["ce_source"] == SOURCE.encode()
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_type"] == event_type.encode()
    assert headers["ce_subject"] == EPISODE.encode() == record.key
    assert datetime.fromisoformat(headers["ce_time"].decode()) == T0
    assert headers["ce_dataschema"] == f"https://stepwise.invalid/schemas/{event_type}.v1.json".encode()
    assert headers["content-type"] == b"application/json"
    assert set(headers) == {
        "ce_id",
        "ce_source",
        "ce_specversion",
        "ce_type",
        "ce_subject",
        "ce_time",
        "ce_dataschema",
        "content-type",
    }
    # The value is the data alone (binary mode), not a structured-mode envelope.
    payload = json.loads(record.value)
    assert payload["episode_id"] == EPISODE
    assert payload["schema_version"] == 1
    assert "specversion" not in payload and "data" not in payload

    decoded = from_kafka(record.headers, record.value, model)

    assert decoded == event
    assert decoded.data == data
    assert type(decoded.data) is model
    assert decoded.time == T0
    assert decoded.subject == EPISODE


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_round_trip_accepts_header_mapping_and_str_values(event_type: str) -> None:
    record = to_kafka(new_event(make_data(event_type), source=SOURCE, time=T0))
    as_text = {name: value.decode() for name, value in record.headers}
    assert from_kafka(as_text, record.value, EVENT_TYPES[event_type]).data == make_data(event_type)


def test_new_event_envelope_defaults() -> None:
    before = datetime.now(UTC)
    event = new_event(make_data(SessionMissed.event_type), source=SOURCE)
    other = new_event(make_data(SessionMissed.event_type), source=SOURCE)
    assert event.specversion == "1.0"
    assert event.datacontenttype == CONTENT_TYPE
    assert event.type == "iop.session.missed"
    assert event.subject == EPISODE
    assert event.time >= before
    assert event.id != other.id
    assert event.dedup_key == f"{SOURCE}#{event.id}"


@pytest.mark.parametrize("header", ["ce_id", "ce_source", "ce_specversion", "ce_type", "ce_subject", "ce_time"])
def test_missing_ce_header(header: str) -> None:
    headers, value = record_parts(SessionMissed.event_type)
    del headers[header]
    with pytest.raises(MalformedEvent) as caught:
        from_kafka(headers, value, SessionMissed)
    assert caught.value.reason == f"missing CloudEvents header(s): {header}"
    assert str(caught.value) == caught.value.reason


def test_missing_several_ce_headers_are_all_named() -> None:
    headers, value = record_parts(SessionMissed.event_type)
    del headers["ce_id"], headers["ce_time"]
    with pytest.raises(MalformedEvent, match=r"^missing CloudEvents header\(s\): ce_id, ce_time$"):
        from_kafka(headers, value, SessionMissed)


def test_non_utf8_header_value_is_malformed() -> None:
    headers, value = record_parts(SessionMissed.event_type)
    headers["ce_source"] = b"\xff\xfe/stepwise"
    with pytest.raises(MalformedEvent) as caught:
        from_kafka(headers, value, SessionMissed)
    assert "ce_source" in caught.value.reason


def test_wrong_ce_type() -> None:
    headers, value = record_parts(SessionMissed.event_type)
    with pytest.raises(MalformedEvent) as caught:
        from_kafka(headers, value, CareLevelAssigned)
    assert caught.value.reason == "ce_type is 'iop.session.missed', expected 'iop.care_level.assigned'"


@pytest.mark.parametrize("value", [b"not json", b"{", b"\xff\xfe\x00garbage", b""])
def test_value_not_json(value: bytes) -> None:
    headers, _ = record_parts(SessionMissed.event_type)
    with pytest.raises(MalformedEvent, match=r"^value is not JSON: "):
        from_kafka(headers, value, SessionMissed)


def test_json_value_that_is_not_an_object_names_data() -> None:
    headers, _ = record_parts(SessionMissed.event_type)
    with pytest.raises(MalformedEvent, match=r"^(data|\(root\)): ") as caught:
        from_kafka(headers, b"[1, 2]", SessionMissed)
    assert "1, 2" not in caught.value.reason


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "application/cloudevents+json"])
def test_wrong_content_type(content_type: str) -> None:
    headers, value = record_parts(SessionMissed.event_type)
    headers["content-type"] = content_type.encode()
    with pytest.raises(MalformedEvent) as caught:
        from_kafka(headers, value, SessionMissed)
    assert caught.value.reason == f"content-type is {content_type!r}, expected 'application/json'"


def test_content_type_parameters_are_accepted() -> None:
    headers, value = record_parts(SessionMissed.event_type)
    headers["content-type"] = b"application/json; charset=utf-8"
    assert from_kafka(headers, value, SessionMissed).data == make_data(SessionMissed.event_type)


def test_a_record_without_a_content_type_is_taken_as_json() -> None:
    """CloudEvents' Kafka binding: ``content-type`` may be left out; Stepwise's data is JSON."""
    headers, value = record_parts(SessionMissed.event_type)
    del headers["content-type"]
    assert from_kafka(headers, value, SessionMissed).data == make_data(SessionMissed.event_type)


def test_wrong_specversion_names_the_attribute() -> None:
    headers, value = record_parts(SessionMissed.event_type)
    headers["ce_specversion"] = b"0.3"
    with pytest.raises(MalformedEvent, match=r"^specversion: "):
        from_kafka(headers, value, SessionMissed)


def test_bad_time_header_names_the_attribute() -> None:
    headers, value = record_parts(SessionMissed.event_type)
    headers["ce_time"] = b"2026-10-20T13:30:00"  # no offset: not an aware time
    with pytest.raises(MalformedEvent, match=r"^time: "):
        from_kafka(headers, value, SessionMissed)


@pytest.mark.parametrize(
    ("field", "bad_value", "path"),
    [
        ("consecutive_misses", 0, "consecutive_misses"),
        ("consecutive_misses", "SECRET-7731", "consecutive_misses"),
        ("detected", "SECRET-7731", "detected"),
        ("starts_at", "SECRET-7731", "starts_at"),
        ("session_id", None, "session_id"),
    ],
)
def test_data_failing_validation_names_path_not_value(field: str, bad_value: Any, path: str) -> None:
    headers, value = record_parts(SessionMissed.event_type)
    payload = json.loads(value)
    payload[field] = bad_value
    with pytest.raises(MalformedEvent) as caught:
        from_kafka(headers, json.dumps(payload).encode(), SessionMissed)
    reason = caught.value.reason
    assert names_path(reason, path), reason
    assert "; " not in reason  # exactly one problem
    assert "SECRET" not in reason
    assert "7731" not in reason


def test_nested_data_failing_validation_names_nested_path_not_value() -> None:
    headers, value = record_parts(AssessmentCompleted.event_type)
    payload = json.loads(value)
    payload["dimensions"]["emotional"] = 97531
    payload["instruments"][0]["total"] = "SECRET-7731"
    with pytest.raises(MalformedEvent) as caught:
        from_kafka(headers, json.dumps(payload).encode(), AssessmentCompleted)
    reason = caught.value.reason
    problems = reason.split("; ")
    assert len(problems) == 2
    assert names_path(problems[0], "dimensions.emotional"), reason
    assert names_path(problems[1], "instruments.0.total"), reason
    assert "97531" not in reason
    assert "SECRET" not in reason and "7731" not in reason


def test_missing_data_field_names_path() -> None:
    headers, value = record_parts(CareLevelAssigned.event_type)
    payload = json.loads(value)
    del payload["policy_version"]
    with pytest.raises(MalformedEvent, match=r"^(data\.)?policy_version: Field required$"):
        from_kafka(headers, json.dumps(payload).encode(), CareLevelAssigned)


def test_subject_must_match_data_episode_id() -> None:
    headers, value = record_parts(SessionMissed.event_type)
    headers["ce_subject"] = b"some-other-episode"
    with pytest.raises(MalformedEvent) as caught:
        from_kafka(headers, value, SessionMissed)
    assert caught.value.reason == "ce_subject does not match data.episode_id"


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_unsupported_schema_version(event_type: str) -> None:
    headers, value = record_parts(event_type)
    payload = json.loads(value)
    payload["schema_version"] = 2
    with pytest.raises(MalformedEvent) as caught:
        from_kafka(headers, json.dumps(payload).encode(), EVENT_TYPES[event_type])
    assert names_path(caught.value.reason, "schema_version"), caught.value.reason
    assert "; " not in caught.value.reason


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_unknown_data_fields_are_ignored(event_type: str) -> None:
    headers, value = record_parts(event_type)
    payload = json.loads(value)
    payload["added_in_a_later_minor_version"] = {"anything": [1, 2, 3]}
    if event_type == AssessmentCompleted.event_type:
        payload["dimensions"]["new_dimension"] = 4
        payload["rationale"][0]["weight"] = 0.5
    if event_type == CareLevelAssigned.event_type:
        payload["schedule"]["sessions"][0]["room"] = "B"
    decoded = from_kafka(headers, json.dumps(payload).encode(), EVENT_TYPES[event_type])
    assert decoded.data == make_data(event_type)
    assert "added_in_a_later_minor_version" not in decoded.data.model_dump()


def test_unknown_ce_extension_header_is_ignored() -> None:
    headers, value = record_parts(SessionMissed.event_type)
    headers["ce_traceparent"] = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert from_kafka(headers, value, SessionMissed).data == make_data(SessionMissed.event_type)


PII_NAMES = frozenset(
    {
        "name",
        "first_name",
        "last_name",
        "full_name",
        "email",
        "phone",
        "address",
        "date_of_birth",
        "dob",
        "birth",
        "birthdate",
        "diagnosis",
        "note",
        "notes",
    }
)
PII_WORDS = frozenset({"name", "email", "phone", "address", "dob", "birth", "diagnosis", "note", "notes"})


def suggests_pii(prop: str) -> bool:
    lowered = prop.lower()
    words = set(re.split(r"[^a-z0-9]+", lowered))
    return lowered in PII_NAMES or bool(words & PII_WORDS) or "birth" in lowered or "diagnos" in lowered


def property_names(schema: dict[str, Any]) -> set[str]:
    """Every property name in a JSON schema, however deeply nested (incl. $defs)."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            properties = node.get("properties")
            if isinstance(properties, dict):
                names.update(properties)
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(schema)
    return names


@pytest.mark.parametrize("prop", ["name", "first_name", "patient_email", "phone_number", "date_of_birth", "notes"])
def test_pii_detector_catches_pii_names(prop: str) -> None:
    assert suggests_pii(prop)


def test_pii_walker_sees_nested_defs() -> None:
    schema = {
        "properties": {"a": {"$ref": "#/$defs/X"}},
        "$defs": {"X": {"properties": {"inner": {"type": "string"}}}},
    }
    assert property_names(schema) == {"a", "inner"}


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_no_event_schema_has_a_pii_property(event_type: str) -> None:
    schema = EVENT_TYPES[event_type].model_json_schema()
    names = property_names(schema)
    # The walk really reaches nested models.
    expected_nested = {
        AssessmentCompleted.event_type: {"withdrawal", "instrument", "code"},
        CareLevelAssigned.event_type: {"timezone", "session_id", "ends_at", "kind", "group_id", "code"},
        SessionMissed.event_type: {"consecutive_misses"},
        SafetyAlertRaised.event_type: {"reasons", "level"},
        SafetyAlertAcknowledged.event_type: {"alert_id", "acknowledged_at"},
        SafetyAlertEscalated.event_type: {"alert_id", "level", "acknowledge_by"},
        DrugScreenRecorded.event_type: {"substance", "expected"},
        ConsentChanged.event_type: {"recipient_kind", "status"},
        MeasureRecorded.event_type: {"baseline_score", "classification", "recovered", "response"},
        StepUpRecommended.event_type: {"to_level", "code"},
        StepDownRecommended.event_type: {"to_level", "code"},
        CareLevelChanged.event_type: {"direction"},
        AttendanceRuleTriggered.event_type: {"rule_code", "code"},
        UtilizationBelowMinimum.event_type: {"hours_attended"},
        EpisodeGraduated.event_type: {"by"},
        EpisodeDischarged.event_type: {"reason_code"},
        NotificationSent.event_type: {"channel", "recipient_kind"},
        NotificationFailed.event_type: {"reason_code", "attempts"},
        AlumniEnrolled.event_type: {"check_in_days", "consent_id"},
        ScheduleChanged.event_type: {"session_id", "timezone", "reason"},
        GroupWaitlisted.event_type: {"group_ids", "position", "track"},
        ServiceDelivered.event_type: {"service_id", "revision", "code", "units", "attendance"},
        ServiceDayCompleted.event_type: {"service_ids", "per_diem_code", "services"},
        AlumniLeft.event_type: {"reason_code"},
        MeasureRecorded.event_type: {"classification", "baseline_score", "source"},
        MeasureDue.event_type: {"due_id", "reason", "window_closes_at"},
        MeasureOverdue.event_type: {"due_id", "reason", "window_closes_at"},
        TreatmentPlanSigned.event_type: {"version", "signed_at", "review_due_on"},
        TreatmentPlanReviewDue.event_type: {"review_id", "reason", "trigger_id", "due_on", "overdue_at"},
        TreatmentPlanReviewOverdue.event_type: {"review_id", "reason", "trigger_id", "due_on", "overdue_at"},
        AuthorizationChanged.event_type: {"authorization_id", "units_remaining", "review_reason"},
        AuthorizationReviewDue.event_type: {"review_due_on", "reason", "deadline"},
        AuthorizationUnitsLow.event_type: {"units_remaining", "units_scheduled"},
        AuthorizationExhausted.event_type: {"exhausted_on"},
        ServiceUnauthorized.event_type: {"item", "reason", "code"},
        AuthorizationLevelMismatch.event_type: {"clinical_level", "authorized_level"},
        CertificationDue.event_type: {"due_on", "min_hours_per_week"},
        CareTeamChanged.event_type: {"primary_clinician", "changed_at"},
        TreatmentPlanReviewed.event_type: {"settled_review_ids", "version", "outcome", "reviewed_at", "review_due_on"},
        CertificationRecorded.event_type: {"certification_id", "payer", "certified_on", "next_due_on"},
    }[event_type]
    assert expected_nested <= names
    assert "episode_id" in names
    assert sorted(name for name in names if suggests_pii(name)) == []


def test_envelope_schema_has_no_pii_property() -> None:
    for model in EVENT_TYPES.values():
        names = property_names(CloudEvent[model].model_json_schema())  # type: ignore[valid-type]
        assert {"id", "source", "subject", "time", "data"} <= names
        assert sorted(name for name in names if suggests_pii(name)) == []


ids = st.text(min_size=1, max_size=60)


@given(episode_id=ids, session_id=ids)
def test_arbitrary_ids_survive_the_round_trip(episode_id: str, session_id: str) -> None:
    for event_type, model in EVENT_TYPES.items():
        data = make_data(event_type, episode_id=episode_id, session_id=session_id)
        event = new_event(data, source=SOURCE, time=T0)
        record = to_kafka(event)
        assert record.key == episode_id.encode()
        assert dict(record.headers)["ce_subject"] == episode_id.encode()
        decoded = from_kafka(record.headers, record.value, model)
        assert decoded == event
        assert decoded.subject == episode_id
        assert decoded.data.episode_id == episode_id
        if isinstance(decoded.data, SessionMissed | ServiceDelivered):
            assert decoded.data.session_id == session_id
        if isinstance(decoded.data, ServiceDayCompleted):
            assert decoded.data.service_ids == [session_id]
        if isinstance(decoded.data, CareLevelAssigned):
            assert decoded.data.schedule is not None
            assert decoded.data.schedule.sessions[0].session_id == session_id


def test_an_event_types_data_schema_is_named_by_its_type_and_major_version() -> None:
    assert SessionMissed.dataschema() == "https://stepwise.invalid/schemas/iop.session.missed.v1.json"
    assert {model.dataschema() for model in EVENT_TYPES.values()} == {
        f"https://stepwise.invalid/schemas/{event_type}.v1.json" for event_type in EVENT_TYPES
    }


def test_the_time_header_is_rfc_3339_and_an_absent_attribute_is_no_header() -> None:
    data = make_data(SessionMissed.event_type)
    event = CloudEvent[SessionMissed](id="x1", source=SOURCE, type=data.event_type, subject=EPISODE,
                                      time=datetime(2026, 12, 1, 20, 38, tzinfo=UTC), data=data)  # fmt: skip
    headers = dict(to_kafka(event).headers)
    assert headers["ce_time"] == b"2026-12-01T20:38:00Z"
    assert "ce_dataschema" not in headers  # none given: left out, not "None"


def test_data_of_another_type_than_its_header_says_is_malformed() -> None:
    headers, _ = record_parts(SessionMissed.event_type)
    headers["ce_type"] = b"iop.attendance.reported"
    with pytest.raises(MalformedEvent) as caught:
        from_headers(headers, make_data(SessionMissed.event_type))
    assert caught.value.reason == "ce_type is 'iop.attendance.reported', expected 'iop.session.missed'"
