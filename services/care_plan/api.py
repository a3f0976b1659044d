"""care_plan's HTTP API: the care plan, attendance, decisions on recommendations, schedule, authorization,
graduation and discharge."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Literal, TypeVar

from fastapi import APIRouter, HTTPException, status
from pydantic import AwareDatetime, BaseModel, Field

from services.common.schemas import V1_ERRORS, errors, request_examples
from stepwise_contract import CareLevel, DischargeReason, Track, WeekdayName

from .changes import Decision, change_plan, record_session_attendance
from .deps import Authorizer, Clinician, Policy, Reader, Recorder, Store
from .domain.care_plan import discharge, graduate, set_calendar, settle_recommendation
from .domain.model import AttendanceRecord, AttendanceStatus, Authorization, CarePlan, CarePlanError, StepRecommendation
from .domain.policy import CarePolicy
from .store import CarePlanStore

router = APIRouter(prefix="/v1", tags=["care plan"], responses=V1_ERRORS)
T = TypeVar("T")

ERROR_STATUS = {
    "no_care_plan": status.HTTP_404_NOT_FOUND,
    "unknown_session": status.HTTP_404_NOT_FOUND,
    "unknown_recommendation": status.HTTP_404_NOT_FOUND,
    "plan_not_active": status.HTTP_409_CONFLICT,
    "recommendation_closed": status.HTTP_409_CONFLICT,
    "notice_without_excuse": status.HTTP_422_UNPROCESSABLE_CONTENT,
    "below_minimum_hours": status.HTTP_422_UNPROCESSABLE_CONTENT,
    "unknown_track": status.HTTP_422_UNPROCESSABLE_CONTENT,
}


class AttendanceIn(BaseModel):
    model_config = request_examples(
        {"status": "missed"}, {"status": "excused", "notice_given_at": "2026-11-20T09:00:00Z"}
    )

    status: AttendanceStatus
    notice_given_at: AwareDatetime | None = None


class AttendanceOut(BaseModel):
    episode_id: str
    session_id: str
    attendance: AttendanceRecord


class DecisionIn(BaseModel):
    model_config = request_examples({"decision": "accept"}, {"decision": "decline", "reason": "payer review pending"})

    decision: Literal["accept", "decline"]
    reason: str | None = Field(default=None, max_length=500, description="Stays in care_plan; never in an event.")


class ScheduleIn(BaseModel):
    """A custom calendar from now on, checked against the level's minimum weekly hours."""

    model_config = request_examples(
        {"track": "evening", "weekdays": ["mon", "tue", "thu"], "hours_per_session": 3, "weeks": 6}
    )

    track: Track
    weekdays: list[WeekdayName] = Field(min_length=1)
    hours_per_session: float = Field(gt=0, le=12)
    weeks: int = Field(ge=1, le=52)


class AuthorizationIn(BaseModel):
    model_config = request_examples({"level": "IOP", "authorized_through": "2027-01-31", "reference": "PA-2026-118"})

    level: CareLevel
    authorized_through: date
    reference: str = Field(min_length=1, max_length=100)


class DischargeIn(BaseModel):
    model_config = request_examples({"reason_code": "non_attendance"})

    reason_code: DischargeReason


async def _change(
    store: CarePlanStore, policy: CarePolicy, episode_id: str, decide: Callable[[CarePlan, datetime], Decision[T]]
) -> T:
    try:
        result = await change_plan(store, policy, episode_id, decide)
    except CarePlanError as error:
        raise HTTPException(ERROR_STATUS[error.code], str(error)) from None
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
)
async def post_attendance(
    episode_id: str, session_id: str, body: AttendanceIn, store: Store, policy: Policy, _: Recorder
) -> AttendanceOut:
    try:
        record = await record_session_attendance(
            store, policy, episode_id, session_id, body.status, body.notice_given_at
        )
    except CarePlanError as error:
        raise HTTPException(ERROR_STATUS[error.code], str(error)) from None
    assert record is not None
    return AttendanceOut(episode_id=episode_id, session_id=session_id, attendance=record)


@router.post(
    "/episodes/{episode_id}/recommendations/{recommendation_id}/decision",
    responses=errors(404, 409),
    summary="A clinician accepts or declines a step-up / step-down recommendation",
    description="Accepting moves the episode to the recommended level with a new calendar from now on and "
    "publishes `iop.care_level.changed`.",
)
async def decide_recommendation(
    episode_id: str, recommendation_id: str, body: DecisionIn, store: Store, policy: Policy, _: Clinician
) -> StepRecommendation:
    def decide(plan: CarePlan, now: datetime) -> Decision[StepRecommendation]:
        accept = body.decision == "accept"
        return settle_recommendation(plan, recommendation_id, accept, body.reason, policy, now)

    return await _change(store, policy, episode_id, decide)


@router.put(
    "/episodes/{episode_id}/care-plan/schedule",
    responses=errors(404, 409),
    summary="Set a custom calendar from now on (publishes iop.schedule.changed)",
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
)
async def graduate_episode(episode_id: str, store: Store, policy: Policy, _: Clinician) -> CarePlan:
    def decide(plan: CarePlan, now: datetime) -> Decision[CarePlan]:
        ended, event = graduate(plan, now, by="clinician")
        return ended, [event], ended

    return await _change(store, policy, episode_id, decide)


@router.post(
    "/episodes/{episode_id}/discharge", responses=errors(404, 409), summary="Discharge the episode with a reason code"
)
async def discharge_episode(episode_id: str, body: DischargeIn, store: Store, policy: Policy, _: Clinician) -> CarePlan:
    def decide(plan: CarePlan, now: datetime) -> Decision[CarePlan]:
        ended, event = discharge(plan, now, body.reason_code)
        return ended, [event], ended

    return await _change(store, policy, episode_id, decide)
