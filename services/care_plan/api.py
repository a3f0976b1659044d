"""care_plan's HTTP API: the care plan, attendance, appointments, decisions on recommendations, schedule,
graduation and discharge; program groups, a group session's roster and its attendance sheet.

HTTP only: parse the request, call the change (``changes.py``) or the read (``queries.py``); a change's refusal
is answered by its code (``schemas.ERRORS``)."""

from __future__ import annotations

from fastapi import status

from services.common.domain_errors import ServiceRouter
from services.common.schemas import V1_ERRORS, WHOLE_NUMBERS, beyond_schema, errors
from services.common.utc import TIME_RANGE, IsoDate
from stepwise_contract import ScheduledSession

from . import changes, queries, schemas
from .deps import Clinician, ClinicZone, Consents, Integration, Policy, Reader, Recorder, Store
from .domain.model import CarePlan, StepRecommendation
from .schemas import (
    ERRORS,
    AppointmentIn,
    AttendanceIn,
    AttendanceOut,
    DecisionIn,
    DischargeIn,
    GroupOut,
    MeasuresDueOut,
    OptionalGraduateIn,
    PageSize,
    ScheduleIn,
    ServicesPage,
    SessionRoster,
    SheetIn,
    SheetLineOut,
    SheetOut,
    TrackIn,
)

router = ServiceRouter(prefix="/v1", tags=["care plan"], responses=V1_ERRORS, error_table=ERRORS)
groups = ServiceRouter(prefix="/v1/groups", tags=["groups"], responses=V1_ERRORS, error_table=ERRORS)
policy_components = schemas.policy_components


@router.get(
    "/episodes/{episode_id}/care-plan",
    responses=errors(404),
    summary="The episode's care plan: level, calendar, attendance, history",
)
async def get_care_plan(episode_id: str, store: Store, _: Reader) -> CarePlan:
    return await queries.plan(store, episode_id)


@router.get(
    "/episodes/{episode_id}/measures-due",
    responses=errors(404),
    summary="The episode's due measures: each window opened and what became of it (due, overdue, missed, done, "
    "cancelled), and the next ones",
)
async def get_measures_due(episode_id: str, store: Store, policy: Policy, _: Reader) -> MeasuresDueOut:
    return queries.measures_due(await queries.plan(store, episode_id), policy)


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
    done = await changes.record_for_episode(store, policy, episode_id, session_id, attendance.status,
                                            attendance.notice_given_at, attendance.minutes)  # fmt: skip
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
    return await changes.book_appointment(store, policy, consents, episode_id, body.kind, body.starts_at, body.minutes)


@router.delete(
    "/episodes/{episode_id}/appointments/{session_id}",
    responses=errors(404, 409),
    summary="Cancel an own session that has not begun (publishes iop.schedule.changed)",
    openapi_extra=beyond_schema(appointment_in_past="the appointment (`session_id`) has not begun and has no record"),
)
async def cancel(episode_id: str, session_id: str, store: Store, policy: Policy, _: Clinician) -> CarePlan:
    return await changes.cancel_appointment(store, policy, episode_id, session_id)


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
    return await changes.decide_recommendation(
        store, policy, episode_id, recommendation_id, accept, body.reason, by.who
    )


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
    return await changes.change_track(store, policy, episode_id, body.track)


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
    return await changes.set_schedule(
        store, policy, episode_id, body.track, body.weekdays, body.hours_per_session, body.weeks
    )


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
    return await changes.graduate(store, policy, episode_id, by.who, body.reason if body else None)


@router.post(
    "/episodes/{episode_id}/discharge", responses=errors(404, 409), summary="Discharge the episode with a reason code"
)
async def discharge_episode(
    episode_id: str, body: DischargeIn, store: Store, policy: Policy, by: Clinician
) -> CarePlan:
    return await changes.discharge(store, policy, episode_id, body.reason_code, by.who)


@router.get("/services", summary="Services delivered on the days asked, at their latest "
            "revision (what `iop.service.delivered` said last): for a subscriber that rebuilds",
            openapi_extra=beyond_schema(service_range=queries.SERVICE_RANGE))  # fmt: skip
async def list_services(store: Store, _: Integration, since: IsoDate, until: IsoDate, after: str | None = None,
                        limit: PageSize = 50) -> ServicesPage:  # fmt: skip
    return await queries.services_delivered(store, since, until, after, limit)


# --- program groups ----------------------------------------------------------------------------------------


@groups.get("", summary="The program groups, with members, places left and waitlist")
async def list_groups(store: Store, policy: Policy, timezone: ClinicZone, _: Reader) -> list[GroupOut]:
    return await queries.groups(store, policy, timezone)


@groups.get(
    "/{group_id}", responses=errors(404), summary="A program group: members, places left, waitlist, next sessions"
)
async def get_group(group_id: str, store: Store, policy: Policy, timezone: ClinicZone, _: Reader) -> GroupOut:
    return await queries.group_out(
        queries.program_group(policy, group_id), store, policy, timezone, await store.waitlisted()
    )


@groups.get(
    "/{group_id}/sessions/{session_id}",
    responses=errors(404),
    summary="A group session's roster: each member's record for it and attendance in the two weeks before",
)
async def session_roster(
    group_id: str, session_id: str, store: Store, policy: Policy, timezone: ClinicZone, _: Reader
) -> SessionRoster:
    session, plans = await queries.group_meeting(group_id, session_id, store, policy, timezone)
    return queries.roster(group_id, session, plans)


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
    "are stored all the same; sending the same sheet again changes nothing. Misses publish `iop.session.missed`, "
    "attendance `iop.service.delivered`.",
)
async def post_sheet(
    group_id: str, session_id: str, body: SheetIn, store: Store, policy: Policy, timezone: ClinicZone, _: Recorder
) -> SheetOut:
    roster = (await queries.group_meeting(group_id, session_id, store, policy, timezone))[1]
    lines = await changes.record_sheet(store, policy, group_id, session_id, body.attendance)
    missing = queries.not_on_sheet(roster, session_id, {line.episode_id for line in body.attendance})
    out = [SheetLineOut.of(line) for line in lines]
    return SheetOut(group_id=group_id, session_id=session_id, lines=out, not_on_sheet=missing)
