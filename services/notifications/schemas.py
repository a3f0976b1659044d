"""What notifications' HTTP API takes and answers: its request and response models (its OpenAPI document), and
its refusals (``ERRORS``)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import status
from pydantic import BaseModel, ConfigDict, Field, RootModel

from services.common.domain_errors import ErrorTable
from services.common.schemas import OnlyWith, RequestBody, response_example, union_examples
from services.common.utc import UtcDatetime
from stepwise_contract import AlertLevel, RecipientKind, SupportKind

from .changes import NotificationsError
from .domain.alumni import Enrolment, EnrolmentStatus, LeaveReason
from .domain.delivery import NotificationStatus
from .domain.opt_outs import OptOut, OptOutSource
from .domain.safety import AlertStatus, SafetyAlert

ERRORS = ErrorTable(
    NotificationsError,
    statuses={
        "unknown_episode": status.HTTP_404_NOT_FOUND,
        "unknown_opt_out": status.HTTP_404_NOT_FOUND,
        "intake_unavailable": status.HTTP_503_SERVICE_UNAVAILABLE,
    },
)
"""notifications' refusals as HTTP answers, registered by the common app (services/common/domain_errors.py)."""


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


def alert_out(alert: SafetyAlert) -> SafetyAlertOut:
    return SafetyAlertOut.model_validate(alert, from_attributes=True)


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


def opt_out_out(opt_out: OptOut) -> OptOutOut:
    return OptOutOut.model_validate(opt_out, from_attributes=True)


class InboundSms(RequestBody):
    """A text a recipient sent to the clinic's number, as the SMS provider forwards it."""

    model_config = ConfigDict(
        populate_by_name=True, json_schema_extra={"examples": [{"from": "+12025550123", "text": "STOP"}]}
    )

    sender: str = Field(alias="from", min_length=3, max_length=32, description="The number the text came from.")
    text: str = Field(max_length=1600)


class InboundSmsOut(BaseModel):
    action: Literal["opted_out", "opted_in", "ignored"]


class AlumniEnrolmentOut(BaseModel):
    episode_id: str
    status: EnrolmentStatus
    consent_id: str
    graduated_at: UtcDatetime
    enrolled_at: UtcDatetime
    left_at: UtcDatetime | None
    left_reason: LeaveReason | None


def enrolment_out(enrolment: Enrolment) -> AlumniEnrolmentOut:
    return AlumniEnrolmentOut.model_validate(enrolment, from_attributes=True)
