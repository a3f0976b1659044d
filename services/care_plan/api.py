"""care_plan's HTTP API: the care plan, attendance, appointments, decisions on recommendations, schedule,
authorization, graduation and discharge; program groups, a group session's roster and its attendance sheet."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Body, HTTPException, status
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

from services.common.dependencies import DependencyDown
from services.common.errors import invalid_input
from services.common.schemas import (
    V1_ERRORS,
    WHOLE_NUMBERS,
    OnlyWith,
    RequestBody,
    beyond_schema,
    component,
    errors,
    request_examples,
    union_examples,
)
from services.common.utc import TIME_RANGE, IsoDate, Rfc3339, utc_now
from stepwise_contract import (
    FAMILY_SESSION,
    WEEKDAYS,
    CareLevel,
    DischargeReason,
    ScheduledSession,
    SessionKind,
    SheetEntry,
    Track,
    Weekday,
    WeekdayName,
)

from .changes import Decision, change_plan, change_plan_placed, hold_place, record_session_attendance, record_sheet
from .deps import Authorizer, Clinician, ClinicZone, Consents, Policy, Reader, Recorder, Store
from .domain.care_plan import discharge, graduate_by_clinician, set_calendar, settle_recommendation
from .domain.groups import Placement, Waitlisted, book_appointment, cancel_appointment, change_track, meetings
from .domain.model import AttendanceRecord, AttendanceStatus, Authorization, CarePlan, CarePlanError, StepRecommendation
from .domain.policy import CarePolicy, ProgramGroup
from .store import CarePlanStore, WaitingPlan

router = APIRouter(prefix="/v1", tags=["care plan"], responses=V1_ERRORS)
T = TypeVar("T")

ERROR_STATUS = {
    "no_care_plan": status.HTTP_404_NOT_FOUND,
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
}
FIELD_AT_FAULT: dict[str, tuple[str, ...]] = {
    "notice_without_excuse": ("body", "notice_given_at"),
    "below_minimum_hours": ("body",),  # weekdays and hours_per_session together
    "unknown_track": ("body", "track"),
    "minutes_without_attendance": ("body", "minutes"),
    "minutes_over_session": ("body", "minutes"),
    "unknown_kind": ("body", "kind"),
    "appointment_in_past": ("body", "starts_at"),
}
"""The rules on one request field: a 422 naming the field, with the code as its ``type``."""


def _refused(error: CarePlanError, at_fault: Mapping[str, tuple[str, ...]] = FIELD_AT_FAULT) -> Exception:
    if error.field:  # the domain names the request field at fault
        return invalid_input(error.field, str(error), error.code)
    if error.code in at_fault:
        return invalid_input(at_fault[error.code], str(error), error.code)
    return HTTPException(ERROR_STATUS[error.code], str(error))


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


class AuthorizationIn(RequestBody):
    model_config = request_examples({"level": "IOP", "authorized_through": "2027-01-31", "reference": "PA-2026-118"})

    level: CareLevel
    authorized_through: IsoDate
    reference: str = Field(min_length=1, max_length=100)


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


async def _change(
    store: CarePlanStore,
    policy: CarePolicy,
    episode_id: str,
    decide: Callable[[CarePlan, datetime], Decision[T]],
    at_fault: Mapping[str, tuple[str, ...]] = FIELD_AT_FAULT,
) -> T:
    try:
        result = await change_plan(store, policy, episode_id, decide)
    except CarePlanError as error:
        raise _refused(error, at_fault) from None
    assert result is not None  # None only for an already-applied event
    return result


@router.get(
    "/episodes/{episode_id}/care-plan",
    responses=errors(404),
    summary="The episode's care plan: level, calendar, attendance, history",
)
async def get_care_plan(episode_id: str, store: Store, _: Reader) -> CarePlan:
    stored = await store.get(episode_id)
    if stored is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no care plan for this episode (yet)")
    return stored.plan


@router.post(
    "/episodes/{episode_id}/sessions/{session_id}/attendance",
    responses=errors(404, 409),
    summary="Record attendance of a scheduled session; a miss publishes iop.session.missed",
    description="Attended, late and missed are recorded once the session has begun (409 before, naming its "
    "start); an excused absence may be recorded ahead.",
    openapi_extra=beyond_schema(
        minutes_over_session="`minutes` are no more than the session lasts", **WHOLE_NUMBERS, **TIME_RANGE
    ),
)
async def post_attendance(
    episode_id: str, session_id: str, body: AttendanceIn, store: Store, policy: Policy, _: Recorder
) -> AttendanceOut:
    attendance = body.root
    try:
        done = await record_session_attendance(
            store, policy, episode_id, session_id, attendance.status, attendance.notice_given_at,
            minutes=attendance.minutes,
        )  # fmt: skip
    except CarePlanError as error:
        raise _refused(error) from None
    assert done is not None
    return AttendanceOut(episode_id=episode_id, session_id=session_id, attendance=done.record)


@router.post(
    "/episodes/{episode_id}/appointments",
    status_code=status.HTTP_201_CREATED,
    responses=errors(404, 409, 503),
    summary="Book an individual, family or other own session (publishes iop.schedule.changed)",
    description="A family session is booked only while a consent in force names a family member or support "
    "(checked at intake; notifications checks it again before telling them).",
    openapi_extra=beyond_schema(appointment_in_past="`starts_at` is ahead of now", **WHOLE_NUMBERS, **TIME_RANGE),
)
async def book(
    episode_id: str, body: AppointmentIn, store: Store, policy: Policy, consents: Consents, _: Clinician
) -> ScheduledSession:
    if body.kind == FAMILY_SESSION:
        try:
            found = await consents.family_consent(episode_id)
        except DependencyDown as error:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"cannot check consent: {error}") from None
        if not found:
            message = "no consent in force names a family member or support for appointments: record one at intake"
            raise HTTPException(ERROR_STATUS["no_family_consent"], message)

    def decide(plan: CarePlan, now: datetime) -> Decision[ScheduledSession]:
        booked, changed, session_id = book_appointment(plan, body.kind, body.starts_at, body.minutes, policy, now)
        return booked, [changed], next(a for a in booked.appointments if a.session_id == session_id)

    return await _change(store, policy, episode_id, decide)


@router.delete(
    "/episodes/{episode_id}/appointments/{session_id}",
    responses=errors(404, 409),
    summary="Cancel an own session that has not begun (publishes iop.schedule.changed)",
    openapi_extra=beyond_schema(appointment_in_past="the appointment (`session_id`) has not begun and has no record"),
)
async def cancel(episode_id: str, session_id: str, store: Store, policy: Policy, _: Clinician) -> CarePlan:
    def decide(plan: CarePlan, now: datetime) -> Decision[CarePlan]:
        updated, changed = cancel_appointment(plan, session_id, now)
        return updated, [changed], updated

    begun = {"appointment_in_past": ("path", "session_id")}  # the appointment named has begun or has a record
    return await _change(store, policy, episode_id, decide, begun)


@router.post(
    "/episodes/{episode_id}/recommendations/{recommendation_id}/decision",
    responses=errors(404, 409),
    summary="A clinician accepts or declines a step-up / step-down recommendation",
    description="Accepting moves the episode to the recommended level with a new calendar from now on and "
    "publishes `iop.care_level.changed`; accepting a referral out (`refer_out`) discharges the episode with "
    "reason `referred_out` (`iop.episode.discharged`).",
)
async def decide_recommendation(
    episode_id: str, recommendation_id: str, body: DecisionIn, store: Store, policy: Policy, by: Clinician
) -> StepRecommendation:
    accept = body.decision == "accept"
    stored = await store.get(episode_id)
    target = (
        next((r for r in stored.plan.recommendations if r.recommendation_id == recommendation_id), None)
        if stored
        else None
    )
    placement: Placement | None = None
    if stored and target and accept and target.status == "open" and target.to_level in policy.offered_levels:
        track = stored.plan.schedule.track if stored.plan.schedule else policy.default_track
        placement = await hold_place(store, policy, episode_id, target.to_level, track, stored.plan.program)

    def decide(plan: CarePlan, now: datetime) -> Decision[StepRecommendation]:
        return settle_recommendation(plan, recommendation_id, accept, body.reason, policy, now, placement, by.who)

    if placement is None:
        return await _change(store, policy, episode_id, decide)
    return await _change_placed(store, policy, episode_id, placement, decide)


async def _change_placed(
    store: CarePlanStore,
    policy: CarePolicy,
    episode_id: str,
    placement: Placement,
    decide: Callable[[CarePlan, datetime], Decision[T]],
) -> T:
    try:
        result = await change_plan_placed(store, policy, episode_id, placement, decide)
    except CarePlanError as error:
        raise _refused(error) from None
    assert result is not None
    return result


@router.put(
    "/episodes/{episode_id}/track",
    responses=errors(404, 409),
    summary="Change the episode's track: the plan moves to a group of it (publishes iop.schedule.changed)",
    description="From now on the plan follows the first group of its level, the new track and its program with "
    "room (or waits for one); its past and its own appointments stay. Published as `iop.schedule.changed` with "
    "reason `track_changed`. The same track changes nothing; 409 when no group of the level and track takes the "
    "plan's program.",
)
async def set_track(episode_id: str, body: TrackIn, store: Store, policy: Policy, _: Clinician) -> CarePlan:
    stored = await store.get(episode_id)
    plan = stored.plan if stored else None
    placement: Placement | None = None
    moving = plan and plan.status == "active" and plan.schedule and plan.schedule.track != body.track
    if plan and moving and policy.groups_for(plan.level, body.track, plan.program):
        placement = await hold_place(store, policy, episode_id, plan.level, body.track, plan.program)

    def decide(current: CarePlan, now: datetime) -> Decision[CarePlan]:
        # No place held: the plan has that track already, has ended, or no group of the track takes its
        # program; the rule says which (its waitlist stand-in is never used).
        held = placement or Waitlisted([], current.level, body.track, position=1)
        moved, events = change_track(current, body.track, held, policy, now)
        return moved, events, moved

    if placement is None:
        return await _change(store, policy, episode_id, decide)
    return await _change_placed(store, policy, episode_id, placement, decide)


@router.put(
    "/episodes/{episode_id}/care-plan/schedule",
    responses=errors(404, 409),
    summary="Set a custom calendar from now on (publishes iop.schedule.changed)",
    openapi_extra=beyond_schema(
        below_minimum_hours="the weekdays times `hours_per_session` reach the plan's level's minimum weekly hours",
        unknown_track="a group of the plan's level meets on `track`",
        weekday_twice="each weekday once, however it is written (`mon` and `Monday` are one day)",
        **WHOLE_NUMBERS,
    ),
)
async def set_schedule(episode_id: str, body: ScheduleIn, store: Store, policy: Policy, _: Clinician) -> CarePlan:
    def decide(plan: CarePlan, now: datetime) -> Decision[CarePlan]:
        updated, changed = set_calendar(
            plan, body.track, body.weekdays, body.hours_per_session, body.weeks, policy, now
        )
        return updated, [changed], updated

    return await _change(store, policy, episode_id, decide)


@router.put(
    "/episodes/{episode_id}/authorization",
    responses=errors(404, 409),
    summary="Record the payer-authorized level (kept apart from the clinical level)",
)
async def set_authorization(
    episode_id: str, body: AuthorizationIn, store: Store, policy: Policy, _: Authorizer
) -> CarePlan:
    def decide(plan: CarePlan, _now: datetime) -> Decision[CarePlan]:
        updated = plan.model_copy(update={"authorization": Authorization(**body.model_dump())})
        return updated, [], updated

    return await _change(store, policy, episode_id, decide)


@router.post(
    "/episodes/{episode_id}/graduate",
    responses=errors(404, 409),
    summary="A clinician graduates the episode; ends timers and calendar",
    description="Below the level's minimum of sessions attended (the policy's "
    "`graduation.min_attended_sessions`), only with a `reason` (a 422 naming it otherwise).",
    openapi_extra=beyond_schema(
        reason_required="a `reason` below the level's minimum of sessions attended (graduation.min_attended_sessions)"
    ),
)
async def graduate_episode(
    episode_id: str, store: Store, policy: Policy, by: Clinician, body: OptionalGraduateIn = None
) -> CarePlan:
    reason = body.reason if body else None

    def decide(plan: CarePlan, now: datetime) -> Decision[CarePlan]:
        ended, event = graduate_by_clinician(plan, policy, now, by.who, reason)
        return ended, [event], ended

    return await _change(store, policy, episode_id, decide)


@router.post(
    "/episodes/{episode_id}/discharge", responses=errors(404, 409), summary="Discharge the episode with a reason code"
)
async def discharge_episode(
    episode_id: str, body: DischargeIn, store: Store, policy: Policy, by: Clinician
) -> CarePlan:
    def decide(plan: CarePlan, now: datetime) -> Decision[CarePlan]:
        ended, event = discharge(plan, now, body.reason_code, by.who)
        return ended, [event], ended

    return await _change(store, policy, episode_id, decide)


# --- program groups ----------------------------------------------------------------------------------------

groups = APIRouter(prefix="/v1/groups", tags=["groups"], responses=V1_ERRORS)
RECENT = timedelta(days=14)
UPCOMING = 6


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


class SheetOut(BaseModel):
    group_id: str
    session_id: str
    lines: list[SheetLineOut] = Field(description="Per line of the sheet: what was stored, or why not.")
    not_on_sheet: list[str] = Field(
        description="Members with no record for the session who were not on the sheet: each is counted missed "
        "(no record) after the session's end and the grace period, unless recorded by then."
    )


def _group(policy: CarePolicy, group_id: str) -> ProgramGroup:
    group = policy.group(group_id)
    if group is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no group {group_id!r}")
    return group


async def _meeting(
    group: ProgramGroup, session_id: str, store: CarePlanStore, policy: CarePolicy, timezone: str
) -> tuple[ScheduledSession, list[CarePlan]]:
    """The group's session of that id, as its members' calendars have it (or, before anyone has it, as the
    group meets that day), and its roster: the active plans with it on their calendar, and any plan with a
    record of it."""
    plans = [plan for plan in await store.roster(session_id)
             if plan.status == "active" or session_id in plan.attendance]  # fmt: skip
    calendars = (plan.schedule.sessions for plan in plans if plan.schedule)
    found = [
        s for sessions in calendars for s in sessions if (s.session_id, s.group_id) == (session_id, group.group_id)
    ]
    if not found:
        try:
            day = datetime.strptime(session_id.removeprefix(f"{group.group_id}-"), "%Y%m%d").date()
        except ValueError:
            day = None
        found = [s for s in (meetings(group, timezone, day, day, policy.closures) if day else [])
                 if s.session_id == session_id]  # fmt: skip
    if not found:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"group {group.group_id!r} has no session {session_id!r}")
    return found[0], plans


async def _group_out(
    group: ProgramGroup, store: CarePlanStore, policy: CarePolicy, timezone: str, waitlisted: list[WaitingPlan]
) -> GroupOut:
    members = sorted(await store.member_ids(group.group_id))
    waiting = [w for w in waitlisted if group.group_id in w.place.group_ids]
    waitlist = [Waiting(episode_id=w.episode_id, since=w.place.since, position=n)
                for n, w in enumerate(waiting, start=1)]  # fmt: skip
    today = utc_now().astimezone(ZoneInfo(timezone)).date()
    upcoming = meetings(group, timezone, today, today + timedelta(days=28), policy.closures)
    left = None if group.capacity is None else max(group.capacity - len(members), 0)
    next_sessions = [s for s in upcoming if s.ends_at > utc_now()][:UPCOMING]
    return GroupOut(group=group, members=members, places_left=left, waitlist=waitlist, next_sessions=next_sessions)


@groups.get("", summary="The program groups, with members, places left and waitlist")
async def list_groups(store: Store, policy: Policy, timezone: ClinicZone, _: Reader) -> list[GroupOut]:
    waitlisted = await store.waitlisted()
    return [await _group_out(group, store, policy, timezone, waitlisted) for group in policy.groups]


@groups.get(
    "/{group_id}", responses=errors(404), summary="A program group: members, places left, waitlist, next sessions"
)
async def get_group(group_id: str, store: Store, policy: Policy, timezone: ClinicZone, _: Reader) -> GroupOut:
    return await _group_out(_group(policy, group_id), store, policy, timezone, await store.waitlisted())


@groups.get(
    "/{group_id}/sessions/{session_id}",
    responses=errors(404),
    summary="A group session's roster: each member's record for it and attendance in the two weeks before",
)
async def session_roster(
    group_id: str, session_id: str, store: Store, policy: Policy, timezone: ClinicZone, _: Reader
) -> SessionRoster:
    session, roster = await _meeting(_group(policy, group_id), session_id, store, policy, timezone)
    lines = [_roster_line(plan, session) for plan in roster]
    return SessionRoster(group_id=group_id, session=session, members=sorted(lines, key=lambda line: line.episode_id))


def _roster_line(plan: CarePlan, session: ScheduledSession) -> RosterLine:
    assert plan.schedule is not None
    recent = [
        RecentSession(session_id=s.session_id, kind=s.kind, starts_at=s.starts_at,
                      status=record.status if (record := plan.attendance.get(s.session_id)) else None)
        for s in plan.schedule.sessions
        if session.starts_at - RECENT <= s.starts_at < session.starts_at
    ]  # fmt: skip
    return RosterLine(
        episode_id=plan.episode_id,
        attendance=plan.attendance.get(session.session_id),
        last_two_weeks=recent,
        attended_last_two_weeks=sum(1 for r in recent if r.status in ("attended", "late")),
        missed_last_two_weeks=sum(1 for r in recent if r.status == "missed"),
    )


@groups.post(
    "/{group_id}/sessions/{session_id}/attendance",
    responses=errors(404),
    summary="Record a group session's whole sheet: one line per member, each stored through its plan",
    openapi_extra=beyond_schema(**WHOLE_NUMBERS, **TIME_RANGE),
    description="Each line is stored (or found unchanged) on its member's plan, or refused with a code: "
    "`not_a_member` (no such plan, or the session is not on its calendar), `recorded_differently` (staff "
    "recorded another status already: correct it on the episode), `listed_twice`, `plan_not_active`, "
    "`notice_without_excuse`, `minutes_without_attendance`, `minutes_over_session`, `session_not_started` "
    "(attended, late or missed before the session began; an excused absence may be recorded ahead). The others "
    "are stored all "
    "the same; sending the same sheet again changes nothing. Misses publish `iop.session.missed`, attendance "
    "`iop.service.delivered`.",
)
async def post_sheet(
    group_id: str, session_id: str, body: SheetIn, store: Store, policy: Policy, timezone: ClinicZone, _: Recorder
) -> SheetOut:
    roster = (await _meeting(_group(policy, group_id), session_id, store, policy, timezone))[1]
    lines = await record_sheet(store, policy, group_id, session_id, body.attendance)
    listed = {line.episode_id for line in body.attendance}  # the sheet records no one it does not list
    missing = sorted(
        plan.episode_id
        for plan in roster
        if plan.status == "active" and plan.episode_id not in listed and session_id not in plan.attendance
    )
    out = [
        SheetLineOut(
            episode_id=line.episode_id,
            outcome="unchanged" if line.outcome == "applied_before" else line.outcome,
            attendance=line.record,
            code=line.code,
            detail=line.detail,
        )
        for line in lines
    ]
    return SheetOut(group_id=group_id, session_id=session_id, lines=out, not_on_sheet=missing)
