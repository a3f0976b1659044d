"""care_plan's HTTP API: read a care plan, record attendance."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import AwareDatetime, BaseModel, ConfigDict

from services.common.auth import Principal, require_roles

from .attendance import record_session_attendance
from .domain.care_plan import AttendanceRecord, AttendanceStatus, CarePlan, CarePlanError
from .store import CarePlanStore

router = APIRouter(prefix="/v1", tags=["care plan"])

Reader = Annotated[Principal, Depends(require_roles("clinician", "intake_staff", "integration", "admin"))]
Recorder = Annotated[Principal, Depends(require_roles("clinician", "intake_staff", "integration"))]

ERROR_STATUS = {
    "no_care_plan": status.HTTP_404_NOT_FOUND,
    "unknown_session": status.HTTP_404_NOT_FOUND,
    "plan_not_active": status.HTTP_409_CONFLICT,
    "notice_without_excuse": status.HTTP_422_UNPROCESSABLE_CONTENT,
}


def get_store(request: Request) -> CarePlanStore:
    return request.app.state.store  # type: ignore[no-any-return]


Store = Annotated[CarePlanStore, Depends(get_store)]


class AttendanceIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"status": "missed"}, {"status": "excused", "notice_given_at": "2026-11-20T09:00:00Z"}]
        },
    )

    status: AttendanceStatus
    notice_given_at: AwareDatetime | None = None


class AttendanceOut(BaseModel):
    episode_id: str
    session_id: str
    attendance: AttendanceRecord


@router.get("/episodes/{episode_id}/care-plan", summary="The episode's care level, session calendar and attendance")
async def get_care_plan(episode_id: str, store: Store, _: Reader) -> CarePlan:
    stored = await store.get(episode_id)
    if stored is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no care plan for this episode (yet)")
    return stored.plan


@router.post(
    "/episodes/{episode_id}/sessions/{session_id}/attendance",
    summary="Record attendance of a scheduled session; a miss publishes iop.session.missed",
)
async def post_attendance(
    episode_id: str, session_id: str, body: AttendanceIn, store: Store, _: Recorder
) -> AttendanceOut:
    try:
        record = await record_session_attendance(store, episode_id, session_id, body.status, body.notice_given_at)
    except CarePlanError as error:
        raise HTTPException(ERROR_STATUS[error.code], str(error)) from None
    return AttendanceOut(episode_id=episode_id, session_id=session_id, attendance=record)
