from __future__ import annotations

import re
from datetime import time
from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr, field_validator, model_validator

from services.common.phones import DEFAULT_REGION, PhoneRegion
from services.common.settings import ClinicZone, ServiceSettings

from .domain.policy import DEFAULT_POLICY_FILE

E164 = re.compile(r"\+[1-9]\d{6,14}")


class NotificationsSettings(ServiceSettings):
    SECRETS: ClassVar[tuple[str, ...]] = (
        *ServiceSettings.SECRETS,
        "intake_token",
        "webhook_secret",
        "smtp_password",
        "sms_provider_token",
        "contact_hash_key",
    )

    notifications_port: int = 8003
    notifications_db: str = Field(default="stepwise_notifications", description="This service's own MongoDB database.")

    @property
    def database_name(self) -> str:
        return self.notifications_db

    smtp_host: str = "localhost"
    smtp_port: int = 1025
    smtp_from: str = "Care team <care-team@clinic.example>"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = 10.0
    intake_url: str = Field(
        default="http://localhost:8001", description="Where contact data is looked up at send time."
    )
    intake_token: SecretStr = Field(
        default=SecretStr(""), description="Bearer token with the 'notifications' role at intake."
    )
    care_team_email: str | None = Field(
        default=None,
        description="Care team mailbox: safety alerts, day or night, and every message to the care team. This or "
        "CARE_TEAM_WEBHOOK_URL is required: without either the service is not ready.",
    )
    ur_team_email: str | None = Field(
        default=None,
        description="The utilization-review mailbox: reviews due, units low, exhausted authorizations and services no "
        "authorization covers. Required while the policy has a rule for it (`to: ur_team`): without it the service "
        "is not ready.",
    )
    care_team_webhook_url: str | None = Field(
        default=None, description="On-call system to call for safety alerts (signed webhook)."
    )
    on_call_phone: str | None = Field(
        default=None,
        description="The on-call clinician's number (E.164, e.g. +12025550123), texted through the SMS provider when "
        "a safety alert is not acknowledged in time. This or ON_CALL_WEBHOOK_URL is required: without either the "
        "service is not ready.",
    )
    on_call_webhook_url: str | None = Field(
        default=None, description="Paging system called (signed webhook) when a safety alert is not acknowledged."
    )
    safety_ack_seconds: float = Field(
        default=900.0,
        gt=0,
        le=86_400,
        description="An immediate safety alert not acknowledged this long after it was raised goes to the on-call "
        "route.",
    )
    console_base_url: str | None = Field(
        default=None,
        description="Where staff open Stepwise's console; a page links to <CONSOLE_BASE_URL>/safety-alerts/<alert id>.",
    )
    webhook_secret: SecretStr = Field(
        default=SecretStr(""), description="Shared secret for webhook signatures (HMAC-SHA256)."
    )
    quiet_hours_start: time = Field(default=time(21, 0), description="Non-urgent messages wait from this local time…")
    quiet_hours_end: time = Field(default=time(8, 0), description="…until this one (equal times: no quiet hours).")
    dispatch_poll_seconds: float = Field(default=1.0, gt=0)
    dispatch_idle_poll_seconds: float = Field(
        default=5.0,
        gt=0,
        description="The longest wait between two dispatcher or escalation passes that find nothing (each empty pass "
        "doubles the wait from DISPATCH_POLL_SECONDS): messages due when stored are sent at once; one due later, or "
        "left by another instance, waits this long at most for a pass.",
    )
    dispatch_lease_seconds: float = Field(default=30.0, gt=0)
    dispatch_concurrency: int = Field(
        default=8, ge=1, description="Messages sent at once per channel, in each lane (urgent, routine)."
    )
    dispatch_retry_hours: float = Field(
        default=72.0, gt=0, description="How long a message is retried through transient failures before it fails."
    )
    dispatch_retry_max_seconds: float = Field(default=60.0, gt=0, description="The longest wait between two attempts.")
    clinic_timezone: ClinicZone = Field(default="America/New_York", description="Zone for times in messages.")
    templates_dir: str | None = Field(default=None, description="A folder whose templates override the defaults.")
    notifications_policy_file: Path = Field(
        default=DEFAULT_POLICY_FILE, description="Who is told what, when and how (YAML)."
    )
    sms_provider_url: str | None = Field(
        default=None, description="The SMS provider's send endpoint (JSON POST); unset: no SMS is planned."
    )
    sms_provider_token: SecretStr = Field(default=SecretStr(""), description="Bearer token for the SMS provider.")
    sms_from: str = Field(default="", description="The clinic's sending number or sender id.")
    contact_hash_key: SecretStr = Field(
        default=SecretStr(""),
        description="Secret key for the keyed hash under which numbers that replied STOP are kept (never the number).",
    )
    clinic_phone_region: PhoneRegion = DEFAULT_REGION

    @field_validator(
        "care_team_email", "ur_team_email", "care_team_webhook_url", "on_call_webhook_url", "console_base_url"
    )
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        """An empty value (compose passes an unset variable as one) is no value."""
        return (value or "").strip() or None

    @field_validator("on_call_phone")
    @classmethod
    def _international_number(cls, value: str | None) -> str | None:
        number = "".join((value or "").split())
        if not number:
            return None
        if not E164.fullmatch(number):
            raise ValueError("ON_CALL_PHONE: an international number with its country code, e.g. +12025550123")
        return number

    @model_validator(mode="after")
    def _sms_needs_a_hash_key(self) -> NotificationsSettings:
        if self.sms_provider_url and not self.contact_hash_key:
            raise ValueError("CONTACT_HASH_KEY: required when SMS_PROVIDER_URL is set (opt-outs are kept under it)")
        return self

    @model_validator(mode="after")
    def _webhook_needs_a_secret(self) -> NotificationsSettings:
        for variable, url in (("CARE_TEAM_WEBHOOK_URL", self.care_team_webhook_url),
                              ("ON_CALL_WEBHOOK_URL", self.on_call_webhook_url)):  # fmt: skip
            if url and not self.webhook_secret.get_secret_value().strip():
                raise ValueError(f"WEBHOOK_SECRET: required when {variable} is set (webhooks are signed with it)")
        return self


CONSUMER_GROUP = "stepwise.notifications"

SOURCE = "/stepwise/notifications"
