"""notifications' HTTP API: the delivery log, opt-outs (and the SMS provider's reply callback), alumni."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.common.auth import Principal, require_roles
from services.common.utc import UtcDatetime

from .handlers import Messaging
from .store import NotificationStore, OptOuts

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


@router.get(
    "/notifications", summary="Delivery log, newest first: by episode, recipient kind, purpose, status and time"
)
async def list_notifications(
    store: Annotated[NotificationStore, Depends(get_store)],
    _: Reader,
    episode_id: str | None = None,
    recipient_kind: str | None = Query(default=None, examples=["patient"]),
    purpose: str | None = Query(default=None, examples=["session_reminder"]),
    status: Literal["pending", "sent", "failed", "cancelled"] | None = None,
    since: Annotated[datetime | None, Query(description="created at or after")] = None,
    until: Annotated[datetime | None, Query(description="created before")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[NotificationOut]:
    filters = {"episode_id": episode_id, "recipient_kind": recipient_kind, "purpose": purpose, "status": status}
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


# Opt-outs: a recipient asks for no more messages (safety messages to staff are never suppressed).

Staff = Annotated[Principal, Depends(require_roles("clinician", "intake_staff", "admin", "integration"))]
SmsProvider = Annotated[Principal, Depends(require_roles("sms_provider"))]


def get_messaging(request: Request) -> Messaging:
    return request.app.state.messaging  # type: ignore[no-any-return]


def get_opt_outs(request: Request) -> OptOuts:
    return request.app.state.opt_outs  # type: ignore[no-any-return]


class OptOutIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"episode_id": "7d0c1f3e-4b0a-4a57-9c1e-2b8f6a1d0e42", "recipient_kind": "patient"}]
        },
    )

    episode_id: str = Field(min_length=1)
    recipient_kind: Literal["patient", "family", "designated_support", "alumni"] = Field(
        description="The care team cannot opt out: its safety messages are never suppressed."
    )
    consent_id: str | None = Field(default=None, description="For family and designated supports: whose consent.")

    @model_validator(mode="after")
    def _consent_for_supports(self) -> OptOutIn:
        if (self.recipient_kind in ("family", "designated_support")) != (self.consent_id is not None):
            raise ValueError("consent_id: required for family and designated supports, and only for them")
        return self


class OptOutOut(BaseModel):
    opt_out_id: str
    episode_id: str
    recipient_kind: str
    consent_id: str | None
    source: Literal["api"]
    opted_out_at: UtcDatetime


def _opt_out_out(document: dict[str, Any]) -> OptOutOut:
    return OptOutOut(opt_out_id=document["_id"], **{k: document[k] for k in ("episode_id", "recipient_kind",
                     "consent_id", "source", "opted_out_at")})  # fmt: skip


@router.post(
    "/opt-outs",
    status_code=status.HTTP_201_CREATED,
    summary="A recipient wants no more messages (an alumnus also leaves the alumni group); 200 if on record",
    responses={200: {"description": "This recipient had opted out already."}},
)
async def opt_out(
    body: OptOutIn,
    response: Response,
    opt_outs: Annotated[OptOuts, Depends(get_opt_outs)],
    messaging: Annotated[Messaging, Depends(get_messaging)],
    _: Staff,
) -> OptOutOut:
    key = OptOuts.recipient_key(body.episode_id, body.recipient_kind, body.consent_id)
    document, added = await opt_outs.add(key, {**body.model_dump(), "source": "api"})
    await messaging.store.cancel_pending(_recipient_query(body), "the recipient opted out")
    if body.recipient_kind == "alumni":
        await messaging.end_alumni_enrolment(body.episode_id, "opted_out")
    if not added:
        response.status_code = status.HTTP_200_OK
    return _opt_out_out(document)


def _recipient_query(body: OptOutIn) -> dict[str, Any]:
    query: dict[str, Any] = {"episode_id": body.episode_id, "recipient_kind": body.recipient_kind}
    return query | ({"consent_id": body.consent_id} if body.consent_id else {})


@router.get("/opt-outs", summary="Opt-outs recorded through the API, newest first")
async def list_opt_outs(
    opt_outs: Annotated[OptOuts, Depends(get_opt_outs)], _: Reader, episode_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[OptOutOut]:  # fmt: skip
    query: dict[str, Any] = {"source": "api"} | ({"episode_id": episode_id} if episode_id else {})
    return [_opt_out_out(document) for document in await opt_outs.find(query, limit)]


@router.delete(
    "/opt-outs/{opt_out_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="The recipient wants messages again (from now on; an ended alumni enrolment stays ended)",
)
async def withdraw_opt_out(opt_out_id: str, opt_outs: Annotated[OptOuts, Depends(get_opt_outs)], _: Staff) -> None:
    if not opt_out_id.startswith("recipient:") or not await opt_outs.remove(opt_out_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such opt-out")


STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
START_WORDS = frozenset({"START", "UNSTOP", "YES", "OPTIN"})


class InboundSms(BaseModel):
    """A text a recipient sent to the clinic's number, as the SMS provider forwards it."""

    model_config = ConfigDict(
        populate_by_name=True, json_schema_extra={"examples": [{"from": "+15550100", "text": "STOP"}]}
    )

    sender: str = Field(alias="from", min_length=3, max_length=32, description="The number the text came from.")
    text: str = Field(max_length=1600)


class InboundSmsOut(BaseModel):
    action: Literal["opted_out", "opted_in", "ignored"]


@router.post(
    "/sms/inbound",
    summary="The SMS provider's callback for replies: STOP (and the usual synonyms) opts the number out, START in",
)
async def inbound_sms(
    body: InboundSms, opt_outs: Annotated[OptOuts, Depends(get_opt_outs)], _: SmsProvider
) -> InboundSmsOut:
    word = body.text.strip().upper().rstrip(".!")
    key = opt_outs.number_key(body.sender)
    if word in STOP_WORDS:
        await opt_outs.add(key, {"source": "sms_reply"})
        return InboundSmsOut(action="opted_out")
    if word in START_WORDS:
        await opt_outs.remove(key)
        return InboundSmsOut(action="opted_in")
    return InboundSmsOut(action="ignored")  # free text is not read here: staff are not watching this number


# Alumni: graduates who joined the alumni group.


class AlumniEnrolmentOut(BaseModel):
    episode_id: str
    status: Literal["enrolled", "left"]
    consent_id: str
    graduated_at: UtcDatetime
    enrolled_at: UtcDatetime
    left_at: UtcDatetime | None
    left_reason: Literal["opted_out", "new_episode", "consent_withdrawn"] | None


def _enrolment_out(document: dict[str, Any]) -> AlumniEnrolmentOut:
    left = document["status"] == "left"
    return AlumniEnrolmentOut(
        episode_id=document["_id"],
        status=document["status"],
        consent_id=document["consent_id"],
        graduated_at=document["graduated_at"],
        enrolled_at=document["enrolled_at"],
        left_at=document["left_at"] if left else None,
        left_reason=document["left_reason"] if left else None,
    )


@router.get("/alumni", summary="Alumni enrolments, newest first, by status")
async def list_alumni(
    messaging: Annotated[Messaging, Depends(get_messaging)], _: Reader,
    status_: Annotated[Literal["enrolled", "left"] | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AlumniEnrolmentOut]:  # fmt: skip
    query = {"status": status_} if status_ else {}
    return [_enrolment_out(document) for document in await messaging.alumni.find(query, limit)]


@router.get("/alumni/{episode_id}", summary="The alumni enrolment that followed an episode's graduation")
async def alumni_enrolment(
    episode_id: str, messaging: Annotated[Messaging, Depends(get_messaging)], _: Reader
) -> AlumniEnrolmentOut:
    document = await messaging.alumni.get(episode_id)
    if document is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no alumni enrolment for this episode")
    return _enrolment_out(document)
