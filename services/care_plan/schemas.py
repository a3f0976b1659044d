"""What care_plan's HTTP API takes and answers: its request and response models (its OpenAPI document), and its
refusals (``ERRORS``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Body, Query, status
from pydantic import (
    BaseModel,
    Field,
    RootModel,
    StrictFloat,
    StrictInt,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from services.common.domain_errors import ErrorTable
from services.common.schemas import (
    OnlyWith,
    RequestBody,
    component,
    request_examples,
    response_example,
    union_examples,
)
from services.common.utc import IsoDate, Rfc3339
from stepwise_contract import (
    WEEKDAYS,
    CareLevel,
    DischargeReason,
    MeasureReason,
    ScheduledSession,
    ServiceDelivered,
    SessionKind,
    SheetEntry,
    Track,
    Weekday,
    WeekdayName,
)

from .changes import SheetLine
from .domain.model import AttendanceRecord, AttendanceStatus, CarePlanError, DueMeasure
from .domain.policy import CarePolicy, ProgramGroup

ERRORS = ErrorTable(
    CarePlanError,
    statuses={
        "no_care_plan": status.HTTP_404_NOT_FOUND,
        "no_group": status.HTTP_404_NOT_FOUND,
        "no_group_session": status.HTTP_404_NOT_FOUND,
        "unknown_session": status.HTTP_404_NOT_FOUND,
        "unknown_recommendation": status.HTTP_404_NOT_FOUND,
        "plan_not_active": status.HTTP_409_CONFLICT,
        "recommendation_closed": status.HTTP_409_CONFLICT,
        "recorded_differently": status.HTTP_409_CONFLICT,
        "overlapping_session": status.HTTP_409_CONFLICT,
        "no_family_consent": status.HTTP_409_CONFLICT,
        "session_not_started": status.HTTP_409_CONFLICT,
        "no_group_for_track": status.HTTP_409_CONFLICT,
        "wrong_program": status.HTTP_409_CONFLICT,
        "appointment_too_far": status.HTTP_409_CONFLICT,
        "too_many_appointments": status.HTTP_409_CONFLICT,
        "consent_unchecked": status.HTTP_503_SERVICE_UNAVAILABLE,
        "no_treatment_plan": status.HTTP_404_NOT_FOUND,
        "version_changed": status.HTTP_409_CONFLICT,
        "plan_not_signed": status.HTTP_409_CONFLICT,
        "too_many_versions": status.HTTP_409_CONFLICT,
    },
    fields={  # the rules on one request field: a 422 naming the field, with the code as its ``type``
        "notice_without_excuse": ("body", "notice_given_at"),
        "below_minimum_hours": ("body",),  # weekdays and hours_per_session together
        "unknown_track": ("body", "track"),
        "minutes_without_attendance": ("body", "minutes"),
        "minutes_over_session": ("body", "minutes"),
        "unknown_kind": ("body", "kind"),
        "appointment_in_past": ("body", "starts_at"),
        "service_range": ("query", "until"),
    },
)
"""care_plan's refusals as HTTP answers, registered by the common app (services/common/domain_errors.py)."""


NOTICE_WITHOUT_EXCUSE = OnlyWith("notice_without_excuse", "notice_given_at goes only with an excused absence")
MINUTES_WITHOUT_ATTENDANCE = OnlyWith("minutes_without_attendance", "minutes go only with attended or late")
Minutes = Annotated[StrictInt, Field(ge=0, le=720, description="Minutes attended, when not the whole session.")]


class AttendedIn(RequestBody):
    """Attended or late, with the minutes attended when not the whole session."""

    status: Literal["attended", "late"]
    minutes: Minutes | None = None
    notice_given_at: Annotated[None, NOTICE_WITHOUT_EXCUSE] = None


class ExcusedIn(RequestBody):
    """An excused absence, with when the patient gave notice."""

    status: Literal["excused"]
    notice_given_at: Rfc3339 | None = None
    minutes: Annotated[None, MINUTES_WITHOUT_ATTENDANCE] = None


class MissedIn(RequestBody):
    status: Literal["missed"]
    notice_given_at: Annotated[None, NOTICE_WITHOUT_EXCUSE] = None
    minutes: Annotated[None, MINUTES_WITHOUT_ATTENDANCE] = None


class AttendanceIn(RootModel[Annotated[AttendedIn | ExcusedIn | MissedIn, Field(discriminator="status")]]):
    """One of three shapes by ``status``: ``notice_given_at`` only with excused, ``minutes`` only with attended
    or late."""

    model_config = union_examples(
        {"status": "missed"},
        {"status": "excused", "notice_given_at": "2026-11-20T09:00:00Z"},
        {"status": "late", "minutes": 150},
    )


SESSION_KIND = component("SessionKind", {"description": "A session kind of the care-plan policy."})


def policy_components(policy: CarePolicy) -> dict[str, dict[str, Any]]:
    """The parts of the OpenAPI document the loaded policy fixes at start: the session kinds it has."""
    kinds = sorted(policy.session_kinds)
    return {"SessionKind": {"type": "string", "enum": kinds, "description": "A session kind of the care-plan policy."}}


class AppointmentIn(RequestBody):
    """An own session on the plan's calendar; a family session needs a consent in force naming a support."""

    model_config = request_examples(
        {"kind": "individual", "starts_at": "2026-12-08T14:00:00-05:00"},
        {"kind": "family", "starts_at": "2026-12-10T17:00:00-05:00", "minutes": 60},
    )

    kind: Annotated[SessionKind, Field(json_schema_extra=SESSION_KIND)]
    starts_at: Rfc3339 = Field(description="Ahead of now (`appointment_in_past` otherwise).")
    minutes: StrictInt | None = Field(
        default=None, ge=5, le=720, description="Default: the kind's length in the policy."
    )


class AttendanceOut(BaseModel):
    episode_id: str
    session_id: str
    attendance: AttendanceRecord


class DecisionIn(RequestBody):
    model_config = request_examples({"decision": "accept"}, {"decision": "decline", "reason": "payer review pending"})

    decision: Literal["accept", "decline"]
    reason: str | None = Field(default=None, max_length=500, description="Stays in care_plan; never in an event.")


WEEKDAY_FULL_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
"""How the contract's ``WeekdayName`` also takes the days (any case, spaces around aside)."""


def _any_case(word: str) -> str:
    return "".join(f"[{letter.upper()}{letter}]" for letter in word)


WEEKDAY_IN = WithJsonSchema(
    {
        "anyOf": [
            {"type": "string", "enum": list(WEEKDAYS)},
            {
                "type": "string",
                "pattern": r"^\s*(?:" + "|".join(_any_case(day) for day in (*WEEKDAYS, *WEEKDAY_FULL_NAMES)) + r")\s*$",
                "description": "Also spelled out, in any case: Monday, TUESDAY.",
            },
        ]
    }
)


class ScheduleIn(RequestBody):
    """A custom calendar from now on, checked against the level's minimum weekly hours."""

    model_config = request_examples(
        {"track": "evening", "weekdays": ["mon", "tue", "thu"], "hours_per_session": 3, "weeks": 6}
    )

    track: Track
    weekdays: list[Annotated[WeekdayName, WEEKDAY_IN]] = Field(
        min_length=1, max_length=len(WEEKDAYS), json_schema_extra={"uniqueItems": True}, description="Each day once."
    )
    hours_per_session: StrictFloat = Field(gt=0, le=12)
    weeks: StrictInt = Field(ge=1, le=52)

    @field_validator("weekdays")
    @classmethod
    def _each_once(cls, value: list[Weekday]) -> list[Weekday]:
        if len(set(value)) != len(value):  # twice would count its hours twice
            raise PydanticCustomError("weekday_twice", "name each weekday once")
        return value


class MovedOut(BaseModel):
    """An endpoint that moved (for one release): where to go instead."""

    model_config = response_example({"detail": "payers' authorizations moved to the authorizations service",
                                     "location": "POST /v1/episodes/{episode_id}/authorizations on the authorizations "
                                     "service"})  # fmt: skip

    detail: str
    location: str


class AuthorizationIn(RequestBody):
    """What the route gone since issue 26 took (kept so that a client sending it hears where it moved)."""

    model_config = request_examples({"level": "IOP", "authorized_through": "2027-01-31", "reference": "PA-2026-118"})

    level: CareLevel
    authorized_through: IsoDate
    reference: str = Field(min_length=1, max_length=100)


class CareTeamIn(RequestBody):
    model_config = request_examples({"primary_clinician": "7f3a9c1e-staff", "display_name": "Dr. Rivera"})

    primary_clinician: str = Field(
        min_length=1, max_length=200, description="The clinician's subject (`sub`) at the clinic's identity provider."
    )
    display_name: str = Field(min_length=1, max_length=200, description="The name staff know the clinician by.")


class DischargeIn(RequestBody):
    model_config = request_examples({"reason_code": "non_attendance"})

    reason_code: DischargeReason


GRADUATE_EXAMPLES: tuple[dict[str, str], ...] = ({}, {"reason": "moving away: care continues with a local OP"})


class GraduateIn(RequestBody):
    """Optional: a reason, needed below the level's minimum of attended sessions (the care-plan policy's
    ``graduation.min_attended_sessions``)."""

    model_config = request_examples(*GRADUATE_EXAMPLES)

    reason: str | None = Field(
        default=None, min_length=1, max_length=500, description="Stays in care_plan (end_note); never in an event."
    )


OptionalGraduateIn = Annotated[GraduateIn | None, Body(examples=GRADUATE_EXAMPLES)]
"""No body at all is a graduation without a reason."""


class TrackIn(RequestBody):
    """The patient's track from now on: the plan moves to a group of it."""

    model_config = request_examples({"track": "evening"})

    track: Track


# --- program groups ----------------------------------------------------------------------------------------


class Waiting(BaseModel):
    episode_id: str
    since: datetime
    position: int


class GroupOut(BaseModel):
    """A program group: its definition (from the policy), who is in it and who waits, its next sessions."""

    group: ProgramGroup
    members: list[str] = Field(description="Episode ids of the active plans in the group.")
    places_left: int | None = Field(description="Null for a group without a capacity.")
    waitlist: list[Waiting]
    next_sessions: list[ScheduledSession]


class RecentSession(BaseModel):
    session_id: str
    kind: str
    starts_at: datetime
    status: AttendanceStatus | None


class RosterLine(BaseModel):
    episode_id: str
    attendance: AttendanceRecord | None = Field(description="This session's record, if any yet.")
    last_two_weeks: list[RecentSession] = Field(description="The member's sessions in the 14 days before this one.")
    attended_last_two_weeks: int
    missed_last_two_weeks: int


class SessionRoster(BaseModel):
    """The day's sheet: who is expected in a group session, and how each has attended (pseudonymous)."""

    group_id: str
    session: ScheduledSession
    members: list[RosterLine]


class SheetLineIn(SheetEntry, RequestBody):
    """One member's line on the sheet (the contract's ``SheetEntry``, refusing fields it does not declare; minutes
    a JSON integer). A line's rules are answered per line (its ``outcome``), not as a 422."""

    notice_given_at: Rfc3339 | None = Field(
        default=None, description="For an excused absence: when the patient gave notice."
    )
    minutes: Minutes | None = None


class SheetIn(RequestBody):
    model_config = request_examples(
        {
            "attendance": [
                {"episode_id": "3f1c…", "status": "attended"},
                {"episode_id": "9ab2…", "status": "late", "minutes": 150},
                {"episode_id": "c7d4…", "status": "excused", "notice_given_at": "2026-12-07T07:30:00-05:00"},
            ]
        }
    )

    attendance: list[SheetLineIn] = Field(min_length=1, max_length=500)


class SheetLineOut(BaseModel):
    episode_id: str
    outcome: Literal["recorded", "unchanged", "rejected"]
    attendance: AttendanceRecord | None = None
    code: str | None = Field(default=None, examples=["not_a_member", "recorded_differently", "listed_twice"])
    detail: str | None = None

    @classmethod
    def of(cls, line: SheetLine) -> SheetLineOut:
        outcome = "unchanged" if line.outcome == "applied_before" else line.outcome
        return cls(episode_id=line.episode_id, outcome=outcome, attendance=line.record, code=line.code,
                   detail=line.detail)  # fmt: skip


class SheetOut(BaseModel):
    group_id: str
    session_id: str
    lines: list[SheetLineOut] = Field(description="Per line of the sheet: what was stored, or why not.")
    not_on_sheet: list[str] = Field(
        description="Members with no record for the session who were not on the sheet: each is counted missed "
        "(no record) after the session's end and the grace period, unless recorded by then."
    )


class UpcomingMeasure(BaseModel):
    """A measure the policy asks for next: its window has not opened yet."""

    instruments: list[str]
    reason: MeasureReason
    due_on: IsoDate
    window_opens_at: Rfc3339
    window_closes_at: Rfc3339


class MeasuresDueOut(BaseModel):
    """The episode's due measures: those whose window opened, with what became of each (``due``, ``overdue``,
    ``missed``, ``done``), and those still to come."""

    episode_id: str
    measures: list[DueMeasure]
    upcoming: list[UpcomingMeasure]


class ServiceOut(ServiceDelivered):
    """An episode's service as last published (``iop.service.delivered``, its latest revision)."""

    recorded_at: datetime | None = Field(  # type: ignore[assignment]
        description="When this revision was published; null for one published before care_plan kept the time."
    )


PageSize = Annotated[int, Query(ge=1, le=200, description="Episodes per page.")]


class ServicesPage(BaseModel):
    """Services delivered on the days asked, by episode; ``next_after`` asks for the next page (null: the last)."""

    services: list[ServiceOut]
    next_after: str | None = Field(description="Pass as `after` for the next page; null when this page is the last.")
