"""care_plan's HTTP API: read a care plan, record attendance."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict

from services.common.auth import Principal, require_roles
from services.common.utc import utc_now
from stepwise_contract import new_event

from .domain.care_plan import AttendanceRecord, AttendanceStatus, CarePlan, CarePlanError, record_attendance
from .settings import SOURCE
from .store import CarePlanStore

router = APIRouter(prefix="/v1", tags=["care plan"])

Reader = Annotated[Principal, Depends(require_roles("clinician", "intake_staff", "integration", "admin"))]
Recorder = Annotated[Principal, Depends(require_roles("clinician", "intake_staff", "integration"))]

ERROR_STATUS = {"unknown_session": status.HTTP_404_NOT_FOUND, "plan_not_active": status.HTTP_409_CONFLICT}


def get_store(request: Request) -> CarePlanStore:
    return request.app.state.store  # type: ignore[no-any-return]


Store = Annotated[CarePlanStore, Depends(get_store)]


class AttendanceIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"status": "missed"}]})

    status: AttendanceStatus


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
    for _attempt in range(5):
        stored = await store.get(episode_id)
        if stored is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no care plan for this episode")
        try:
            attendance, missed = record_attendance(stored.plan, session_id, body.status, utc_now())
        except CarePlanError as error:
            raise HTTPException(ERROR_STATUS[error.code], str(error)) from None
        event = new_event(missed, source=SOURCE) if missed else None
        if attendance is stored.plan.attendance or await store.record_attendance(stored, attendance, event):
            return AttendanceOut(episode_id=episode_id, session_id=session_id, attendance=attendance[session_id])
    raise HTTPException(status.HTTP_409_CONFLICT, "care plan changed concurrently; retry")
