"""notifications' HTTP API: the delivery log, safety alerts and their acknowledgement, opt-outs (and the SMS
provider's reply callback), alumni.

HTTP only: parse the request, call the change (``changes.py``) or read the store; a change's refusal is answered
by its code (``schemas.ERRORS``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Query, Response, status

from services.common.domain_errors import ServiceRouter
from services.common.schemas import V1_ERRORS, beyond_schema, errors
from services.common.utc import TIME_RANGE, Rfc3339

from . import changes
from .deps import AlertReader, Clinician, MessagingDep, Reader, SmsProvider, Staff
from .domain.alumni import EnrolmentStatus
from .domain.delivery import NotificationStatus
from .domain.safety import AlertStatus
from .schemas import (
    ERRORS,
    AlumniEnrolmentOut,
    InboundSms,
    InboundSmsOut,
    NotificationOut,
    OptOutIn,
    OptOutOut,
    SafetyAlertOut,
    alert_out,
    enrolment_out,
    opt_out_out,
)

router = ServiceRouter(prefix="/v1", tags=["notifications"], responses=V1_ERRORS, error_table=ERRORS)


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
    return [alert_out(alert) for alert in found]


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
    return alert_out(acknowledged[0])


# Opt-outs: a recipient asks for no more messages (safety messages to staff are never suppressed).


@router.post(
    "/opt-outs",
    status_code=status.HTTP_201_CREATED,
    summary="A recipient wants no more messages (an alumnus also leaves the alumni group); 200 if on record",
    description="For an episode intake has (asked there: 404 for one it does not have, 503 while it cannot say).",
    responses={200: {"description": "This recipient had opted out already."}, **errors(404, 503)},
)
async def opt_out(given: OptOutIn, response: Response, messaging: MessagingDep, _: Staff) -> OptOutOut:
    body = given.root
    recorded, added = await changes.record_opt_out(messaging, body.episode_id, body.recipient_kind, body.consent_id)
    if not added:
        response.status_code = status.HTTP_200_OK
    return opt_out_out(recorded)


@router.get("/opt-outs", summary="Opt-outs recorded through the API, newest first")
async def list_opt_outs(
    messaging: MessagingDep, _: Reader, episode_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[OptOutOut]:  # fmt: skip
    return [
        opt_out_out(opt_out)
        for opt_out in await messaging.opt_outs.recorded_by_staff(episode_id=episode_id, limit=limit)
    ]


@router.delete(
    "/opt-outs/{opt_out_id}",
    responses=errors(404),
    status_code=status.HTTP_204_NO_CONTENT,
    summary="The recipient wants messages again (from now on; an ended alumni enrolment stays ended)",
)
async def withdraw_opt_out(opt_out_id: str, messaging: MessagingDep, _: Staff) -> None:
    await changes.withdraw_opt_out(messaging, opt_out_id)


@router.post(
    "/sms/inbound",
    summary="The SMS provider's callback for replies: STOP (and the usual synonyms) opts the number out, START in",
)
async def inbound_sms(body: InboundSms, messaging: MessagingDep, _: SmsProvider) -> InboundSmsOut:
    return InboundSmsOut(action=await changes.reply_by_sms(messaging, body.sender, body.text))


# Alumni: graduates who joined the alumni group.


@router.get("/alumni", summary="Alumni enrolments, newest first, by status")
async def list_alumni(
    messaging: MessagingDep, _: Reader,
    status_: Annotated[EnrolmentStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AlumniEnrolmentOut]:  # fmt: skip
    return [enrolment_out(enrolment) for enrolment in await messaging.alumni.find(status=status_, limit=limit)]


@router.get(
    "/alumni/{episode_id}", responses=errors(404), summary="The alumni enrolment that followed an episode's graduation"
)
async def alumni_enrolment(episode_id: str, messaging: MessagingDep, _: Reader) -> AlumniEnrolmentOut:
    enrolment = await messaging.alumni.get(episode_id)
    if enrolment is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no alumni enrolment for this episode")
    return enrolment_out(enrolment)
