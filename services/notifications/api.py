"""notifications' HTTP API: the delivery log, safety alerts and their acknowledgement, opt-outs (and the SMS
provider's reply callback), alumni."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, RootModel

from services.common.dependencies import DependencyDown
from services.common.schemas import (
    V1_ERRORS,
    OnlyWith,
    RequestBody,
    beyond_schema,
    errors,
    response_example,
    union_examples,
)
from services.common.utc import TIME_RANGE, Rfc3339, UtcDatetime, utc_now
from stepwise_contract import AlertLevel, RecipientKind, SupportKind

from . import changes
from .deps import AlertReader, Clinician, MessagingDep, Reader, SmsProvider, Staff
from .domain.alumni import Enrolment, EnrolmentStatus, LeaveReason
from .domain.delivery import NotificationStatus
from .domain.opt_outs import RECIPIENT_PREFIX, OptOut, OptOutSource, reply_action
from .domain.safety import AlertStatus, SafetyAlert

router = APIRouter(prefix="/v1", tags=["notifications"], responses=V1_ERRORS)


class NotificationOut(BaseModel):
    """A delivery-log entry: what was sent to whom by kind, never the address or the text."""

    notification_id: str
    episode_id: str
    purpose: str
    recipient_kind: RecipientKind
    channel: str
    status: NotificationStatus
    attempts: int
    created_at: UtcDatetime
    sent_at: UtcDatetime | None
    not_before: UtcDatetime = Field(description="When it may next be sent (retries, quiet hours).")
    last_error: str | None
    cause_event_type: str


@router.get(
    "/notifications",
    summary="Delivery log, newest first: by episode, recipient kind, purpose, status and time",
    openapi_extra=beyond_schema(**TIME_RANGE),
)
async def list_notifications(
    messaging: MessagingDep,
    _: Reader,
    episode_id: str | None = None,
    recipient_kind: str | None = Query(default=None, examples=["patient"]),
    purpose: str | None = Query(default=None, examples=["session_reminder"]),
    status: NotificationStatus | None = None,
    since: Annotated[Rfc3339 | None, Query(description="created at or after")] = None,
    until: Annotated[Rfc3339 | None, Query(description="created before")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[NotificationOut]:
    found = await messaging.store.find(episode_id=episode_id, recipient_kind=recipient_kind, purpose=purpose,
                                       status=status, since=since, until=until, limit=limit)  # fmt: skip
    return [NotificationOut.model_validate(notification, from_attributes=True) for notification in found]


# Safety alerts: a page to the care team that a clinician acknowledges; one not acknowledged by its deadline
# goes to the on-call route.


class SafetyAlertOut(BaseModel):
    """A safety alert as notifications keeps it: its deadline, its escalation, who acknowledged it and when."""

    model_config = response_example(
        {"alert_id": "5b0f9a4e-3c1d-4e8a-9b7f-1a2b3c4d5e6f", "episode_id": "7d0c1f3e-4b0a-4a57-9c1e-2b8f6a1d0e42",
         "assessment_id": "0e9d8c7b-6a5f-4e3d-2c1b-0a9f8e7d6c5b", "level": "immediate", "reasons": ["cssrs_high_risk"],
         "raised_at": "2026-12-07T14:02:11Z", "acknowledge_by": "2026-12-07T14:17:11Z", "status": "acknowledged",
         "escalated_at": None, "acknowledged_at": "2026-12-07T14:06:40Z", "acknowledged_by": "dr.rivera"}
    )  # fmt: skip

    alert_id: str
    episode_id: str
    assessment_id: str
    level: AlertLevel
    reasons: list[str]
    raised_at: UtcDatetime
    acknowledge_by: UtcDatetime = Field(description="Not acknowledged by then, it goes to the on-call route.")
    status: AlertStatus
    escalated_at: UtcDatetime | None = Field(description="When it went to the on-call route; null if it did not.")
    acknowledged_at: UtcDatetime | None
    acknowledged_by: str | None = Field(
        description="Who acknowledged it: the person signed in (username or subject), or `token:<fingerprint>`."
    )


def _alert_out(alert: SafetyAlert) -> SafetyAlertOut:
    return SafetyAlertOut.model_validate(alert, from_attributes=True)


@router.get("/safety-alerts", summary="Safety alerts, newest first, by status and episode (audited)")
async def list_safety_alerts(
    messaging: MessagingDep,
    by: AlertReader,
    status_: Annotated[AlertStatus | None, Query(alias="status")] = None,
    episode_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[SafetyAlertOut]:
    found = await messaging.safety.alerts.find(status=status_, episode_id=episode_id, limit=limit)
    if found:
        await messaging.safety.audit.record(by, "read_safety_alerts", alert_ids=[alert.alert_id for alert in found])
    return [_alert_out(alert) for alert in found]


@router.post(
    "/safety-alerts/{alert_id}/acknowledge",
    responses=errors(404),
    summary="A clinician has the alert: who and when are recorded (audited), it is no longer escalated; "
    "acknowledged already, the first acknowledgement is the answer",
)
async def acknowledge_safety_alert(alert_id: str, messaging: MessagingDep, by: Clinician) -> SafetyAlertOut:
    acknowledged = await changes.acknowledge_alert(messaging, alert_id, by)
    if acknowledged is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such safety alert")
    return _alert_out(acknowledged[0])


# Opt-outs: a recipient asks for no more messages (safety messages to staff are never suppressed).


class PersonOptOutIn(RequestBody):
    """The patient, or a graduate from the alumni group (who then leaves it)."""

    episode_id: str = Field(min_length=1)
    recipient_kind: Literal["patient", "alumni"]
    consent_id: Annotated[
        None, OnlyWith("consent_only_for_supports", "consent_id goes only with family and designated supports")
    ] = None


class SupportOptOutIn(RequestBody):
    """A family member or designated support: the consent that names them says which one."""

    episode_id: str = Field(min_length=1)
    recipient_kind: SupportKind
    consent_id: str = Field(description="Whose consent: the one naming this support.")


class OptOutIn(RootModel[Annotated[PersonOptOutIn | SupportOptOutIn, Field(discriminator="recipient_kind")]]):
    """One of two shapes by ``recipient_kind``: a support is named by its consent (``consent_id``), the patient
    and an alumnus are not. The care team cannot opt out: its safety messages are never suppressed."""

    model_config = union_examples(
        {"episode_id": "7d0c1f3e-4b0a-4a57-9c1e-2b8f6a1d0e42", "recipient_kind": "patient"},
        {"episode_id": "7d0c1f3e-4b0a-4a57-9c1e-2b8f6a1d0e42", "recipient_kind": "family",
         "consent_id": "e4a7c1d9-2b5f-4e8a-a3c6-7f1d0b9e2a54"},
    )  # fmt: skip


class OptOutOut(BaseModel):
    opt_out_id: str
    episode_id: str
    recipient_kind: RecipientKind
    consent_id: str | None
    source: OptOutSource
    opted_out_at: UtcDatetime


def _opt_out_out(opt_out: OptOut) -> OptOutOut:
    return OptOutOut.model_validate(opt_out, from_attributes=True)


@router.post(
    "/opt-outs",
    status_code=status.HTTP_201_CREATED,
    summary="A recipient wants no more messages (an alumnus also leaves the alumni group); 200 if on record",
    description="For an episode intake has (asked there: 404 for one it does not have, 503 while it cannot say).",
    responses={200: {"description": "This recipient had opted out already."}, **errors(404, 503)},
)
async def opt_out(given: OptOutIn, response: Response, messaging: MessagingDep, _: Staff) -> OptOutOut:
    body = given.root
    try:
        known = await messaging.contacts.episode_known(body.episode_id)
    except DependencyDown as error:
        detail = f"cannot ask intake for the episode: {error}"
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail) from None
    if not known:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such episode at intake")
    recorded, added = await changes.opt_out(messaging, body.episode_id, body.recipient_kind, body.consent_id)
    if not added:
        response.status_code = status.HTTP_200_OK
    return _opt_out_out(recorded)


@router.get("/opt-outs", summary="Opt-outs recorded through the API, newest first")
async def list_opt_outs(
    messaging: MessagingDep, _: Reader, episode_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[OptOutOut]:  # fmt: skip
    return [
        _opt_out_out(opt_out)
        for opt_out in await messaging.opt_outs.recorded_by_staff(episode_id=episode_id, limit=limit)
    ]


@router.delete(
    "/opt-outs/{opt_out_id}",
    responses=errors(404),
    status_code=status.HTTP_204_NO_CONTENT,
    summary="The recipient wants messages again (from now on; an ended alumni enrolment stays ended)",
)
async def withdraw_opt_out(opt_out_id: str, messaging: MessagingDep, _: Staff) -> None:
    if not opt_out_id.startswith(RECIPIENT_PREFIX) or not await messaging.opt_outs.remove(opt_out_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such opt-out")


class InboundSms(RequestBody):
    """A text a recipient sent to the clinic's number, as the SMS provider forwards it."""

    model_config = ConfigDict(
        populate_by_name=True, json_schema_extra={"examples": [{"from": "+12025550123", "text": "STOP"}]}
    )

    sender: str = Field(alias="from", min_length=3, max_length=32, description="The number the text came from.")
    text: str = Field(max_length=1600)


class InboundSmsOut(BaseModel):
    action: Literal["opted_out", "opted_in", "ignored"]


@router.post(
    "/sms/inbound",
    summary="The SMS provider's callback for replies: STOP (and the usual synonyms) opts the number out, START in",
)
async def inbound_sms(body: InboundSms, messaging: MessagingDep, _: SmsProvider) -> InboundSmsOut:
    opt_outs = messaging.opt_outs
    key = opt_outs.number_key(body.sender)
    action = reply_action(body.text)
    if action == "opt_out":
        await opt_outs.add(OptOut(key, "sms_reply", utc_now()))
        return InboundSmsOut(action="opted_out")
    if action == "opt_in":
        await opt_outs.remove(key)
        return InboundSmsOut(action="opted_in")
    return InboundSmsOut(action="ignored")  # free text is not read here: staff are not watching this number


# Alumni: graduates who joined the alumni group.


class AlumniEnrolmentOut(BaseModel):
    episode_id: str
    status: EnrolmentStatus
    consent_id: str
    graduated_at: UtcDatetime
    enrolled_at: UtcDatetime
    left_at: UtcDatetime | None
    left_reason: LeaveReason | None


def _enrolment_out(enrolment: Enrolment) -> AlumniEnrolmentOut:
    return AlumniEnrolmentOut.model_validate(enrolment, from_attributes=True)


@router.get("/alumni", summary="Alumni enrolments, newest first, by status")
async def list_alumni(
    messaging: MessagingDep, _: Reader,
    status_: Annotated[EnrolmentStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AlumniEnrolmentOut]:  # fmt: skip
    return [_enrolment_out(enrolment) for enrolment in await messaging.alumni.find(status=status_, limit=limit)]


@router.get(
    "/alumni/{episode_id}", responses=errors(404), summary="The alumni enrolment that followed an episode's graduation"
)
async def alumni_enrolment(episode_id: str, messaging: MessagingDep, _: Reader) -> AlumniEnrolmentOut:
    enrolment = await messaging.alumni.get(episode_id)
    if enrolment is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no alumni enrolment for this episode")
    return _enrolment_out(enrolment)
