"""notifications' HTTP API: the delivery log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from services.common.auth import Principal, require_roles
from services.common.utc import UtcDatetime

from .store import NotificationStore

router = APIRouter(prefix="/v1", tags=["notifications"])

Reader = Annotated[Principal, Depends(require_roles("clinician", "intake_staff", "admin", "integration"))]


def get_store(request: Request) -> NotificationStore:
    return request.app.state.store  # type: ignore[no-any-return]


class NotificationOut(BaseModel):
    """A delivery-log entry: what was sent to whom by kind, never the address or the text."""

    notification_id: str
    episode_id: str
    purpose: str
    recipient_kind: str
    channel: str
    status: Literal["pending", "sent", "failed", "cancelled"]
    attempts: int
    created_at: UtcDatetime
    sent_at: UtcDatetime | None
    not_before: UtcDatetime = Field(description="When it may next be sent (retries, quiet hours).")
    last_error: str | None
    cause_event_type: str


@router.get("/notifications", summary="Delivery log, newest first: by episode, recipient kind, status and time")
async def list_notifications(
    store: Annotated[NotificationStore, Depends(get_store)],
    _: Reader,
    episode_id: str | None = None,
    recipient_kind: str | None = Query(default=None, examples=["patient"]),
    status: Literal["pending", "sent", "failed", "cancelled"] | None = None,
    since: Annotated[datetime | None, Query(description="created at or after")] = None,
    until: Annotated[datetime | None, Query(description="created before")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[NotificationOut]:
    filters = {"episode_id": episode_id, "recipient_kind": recipient_kind, "status": status}
    query: dict[str, object] = {key: value for key, value in filters.items() if value}
    window = {op: moment for op, moment in {"$gte": since, "$lt": until}.items() if moment}
    if window:
        query["created_at"] = window
    return [
        NotificationOut(
            notification_id=doc["_id"],
            episode_id=doc["episode_id"],
            purpose=doc["purpose"],
            recipient_kind=doc["recipient_kind"],
            channel=doc["channel"],
            status=doc["status"],
            attempts=doc["attempts"],
            created_at=doc["created_at"],
            sent_at=doc["sent_at"] if doc["status"] == "sent" else None,
            not_before=doc["next_attempt_at"],
            last_error=doc["last_error"] or None,
            cause_event_type=doc["cause"]["event_type"],
        )
        for doc in await store.find(query, limit)
    ]
