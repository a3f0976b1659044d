"""Safety alerts as a page (pure: no I/O, no clock): a clinician acknowledges each one by its deadline, or it
goes to the on-call route, once.

The care team hears of an alert at once (the policy's ``safety_alert`` message). notifications keeps the alert
with its deadline: an immediate alert ``SAFETY_ACK_SECONDS`` after it was raised, a same-day one by the policy
(``safety_alerts.same_day``). One not acknowledged by then is escalated: a page to the on-call route
(``ON_CALL_PHONE`` by SMS, ``ON_CALL_WEBHOOK_URL``) and ``iop.safety.alert_escalated``. An acknowledgement is
recorded whenever it comes, before or after the escalation; it names the person here, never in an event.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo

from stepwise_contract import (
    WEEKDAYS,
    AlertLevel,
    Channel,
    SafetyAlertAcknowledged,
    SafetyAlertEscalated,
    SafetyAlertRaised,
)

from .messages import PlannedNotification, notification_id
from .policy import SameDayDeadline

AlertStatus = Literal["open", "acknowledged"]

ESCALATION = "safety_escalation"
"""The purpose of the page to the on-call route (also its template name). It goes to the care team's on-call
arm, so its recipient kind is ``care_team``; the dispatcher routes it by this purpose."""
ON_CALL_CHANNELS: tuple[Channel, ...] = ("sms", "webhook")

CARE_TEAM_ROUTE, ON_CALL_ROUTE, UR_TEAM_ROUTE = "care_team", "on_call", "ur_team"
"""The names readiness gives a missing route (``/health/ready`` ``problems``)."""


@dataclass(frozen=True)
class SafetyAlert:
    alert_id: str
    episode_id: str
    assessment_id: str
    level: AlertLevel
    reasons: list[str]
    raised_at: datetime
    acknowledge_by: datetime
    """The deadline: not acknowledged by then, the alert goes to the on-call route."""
    status: AlertStatus = "open"
    escalated_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    """Who acknowledged it: the person signed in, or a static token's fingerprint (never in an event)."""
    acknowledged_as: str | None = None
    """The role they acknowledged it in."""


@dataclass(frozen=True)
class Deadlines:
    """When an alert must be acknowledged: an immediate one within ``immediate``, a same-day one by the policy."""

    immediate: timedelta
    same_day: SameDayDeadline
    clinic_zone: str

    def acknowledge_by(self, level: AlertLevel, raised_at: datetime) -> datetime:
        if level == "immediate":
            return (raised_at + self.immediate).astimezone(UTC)
        return same_day_deadline(raised_at, self.same_day, self.same_day.timezone or self.clinic_zone)


def same_day_deadline(raised_at: datetime, rule: SameDayDeadline, zone_name: str) -> datetime:
    """Within ``within_hours`` and by closing time, whichever is first, when raised while the clinic is open;
    otherwise ``when_closed_within_minutes`` after it was raised (nobody is there to acknowledge it)."""
    zone = ZoneInfo(zone_name)
    local = raised_at.astimezone(zone)
    hours = rule.hours.get(WEEKDAYS[local.weekday()])
    if hours is not None and local.date() not in rule.closures:
        opens = datetime.combine(local.date(), hours.opens, tzinfo=zone)
        closes = datetime.combine(local.date(), hours.closes, tzinfo=zone)
        if opens <= local < closes:
            return min(raised_at + timedelta(hours=rule.within_hours), closes).astimezone(UTC)
    return (raised_at + timedelta(minutes=rule.when_closed_within_minutes)).astimezone(UTC)


def track(raised: SafetyAlertRaised, deadlines: Deadlines) -> SafetyAlert:
    """The alert as notifications keeps it: open, with its deadline."""
    return SafetyAlert(
        alert_id=raised.alert_id,
        episode_id=raised.episode_id,
        assessment_id=raised.assessment_id,
        level=raised.level,
        reasons=list(raised.reasons),
        raised_at=raised.raised_at.astimezone(UTC),
        acknowledge_by=deadlines.acknowledge_by(raised.level, raised.raised_at),
    )


def acknowledge(
    alert: SafetyAlert, by: str, role: str, now: datetime
) -> tuple[SafetyAlert, SafetyAlertAcknowledged] | None:
    """A clinician has it (escalated or not); None when it was acknowledged already (the first one stands)."""
    if alert.status == "acknowledged":
        return None
    acknowledged = replace(alert, status="acknowledged", acknowledged_at=now, acknowledged_by=by, acknowledged_as=role)
    return acknowledged, SafetyAlertAcknowledged(episode_id=alert.episode_id, alert_id=alert.alert_id,
                                                 acknowledged_at=now)  # fmt: skip


def escalate(alert: SafetyAlert, now: datetime) -> tuple[SafetyAlert, SafetyAlertEscalated] | None:
    """Past its deadline and still open: the alert goes to the on-call route, once; None otherwise."""
    if alert.status != "open" or alert.escalated_at is not None or now < alert.acknowledge_by:
        return None
    escalated = SafetyAlertEscalated(episode_id=alert.episode_id, alert_id=alert.alert_id, level=alert.level,
                                     acknowledge_by=alert.acknowledge_by, escalated_at=now)  # fmt: skip
    return replace(alert, escalated_at=now), escalated


def console_link(console_base_url: str | None, alert_id: str) -> str:
    """Where staff open the alert (CONSOLE_BASE_URL); empty without a console."""
    if not console_base_url:
        return ""
    return f"{console_base_url.rstrip('/')}/safety-alerts/{quote(alert_id, safe='')}"


def page_ids(alert_id: str) -> list[str]:
    """The notification ids of an alert's pages to the on-call route, one per channel."""
    return [notification_id(ESCALATION, alert_id, channel) for channel in ON_CALL_CHANNELS]


def pages(alert: SafetyAlert, channels: frozenset[Channel], console_base_url: str | None) -> list[PlannedNotification]:
    """The escalation's pages to the on-call route, one per channel. Their text is generic: the alert id, its
    level, the deadline and a link, never the episode, the patient or the reasons."""
    context = {"alert_id": alert.alert_id, "level": alert.level, "acknowledge_by": alert.acknowledge_by.isoformat(),
               "console_url": console_link(console_base_url, alert.alert_id)}  # fmt: skip
    return [
        PlannedNotification(
            notification_id=page_id,
            episode_id=alert.episode_id,
            purpose=ESCALATION,
            recipient_kind="care_team",
            channel=channel,
            context=context,
            urgent=True,
        )
        for channel, page_id in zip(ON_CALL_CHANNELS, page_ids(alert.alert_id), strict=True)
        if channel in channels
    ]


@dataclass(frozen=True)
class StaffRoutes:
    """How the clinic's staff are reached (settings): the care team's mailbox and webhook, the on-call number
    (texted through the SMS provider) and webhook."""

    care_team_email: str | None
    care_team_webhook_url: str | None
    on_call_phone: str | None = None
    on_call_webhook_url: str | None = None
    sms: bool = False
    """An SMS provider is configured (the on-call number is texted through it)."""
    ur_team_email: str | None = None
    """The utilization-review mailbox (``UR_TEAM_EMAIL``)."""
    ur_purposes: frozenset[str] = frozenset()
    """The purposes of the policy's messages to the UR mailbox (``to: ur_team``), routed there."""

    def care_team(self) -> dict[Channel, str | None]:
        return {"email": self.care_team_email, "webhook": self.care_team_webhook_url}

    def on_call(self) -> dict[Channel, str | None]:
        return {"sms": self.on_call_phone if self.sms else None, "webhook": self.on_call_webhook_url}

    def ur_team(self) -> dict[Channel, str | None]:
        return {"email": self.ur_team_email}

    def of(self, purpose: str) -> tuple[str, dict[Channel, str | None]]:
        """The route a staff message of ``purpose`` takes: (its name, the address per channel)."""
        if purpose == ESCALATION:
            return ON_CALL_ROUTE, self.on_call()
        if purpose in self.ur_purposes:
            return UR_TEAM_ROUTE, self.ur_team()
        return CARE_TEAM_ROUTE, self.care_team()

    def channels(self, route: str) -> frozenset[Channel]:
        """The channels a route's messages are planned on: those configured; with none, every one of the route's,
        so that each waits (readiness says why) and goes once the clinic configures it."""
        routes = {ON_CALL_ROUTE: self.on_call, UR_TEAM_ROUTE: self.ur_team}
        addresses = routes.get(route, self.care_team)()
        configured = frozenset(channel for channel, address in addresses.items() if address)
        return configured or frozenset(addresses)

    def problems(self) -> dict[str, str]:
        """Each route that reaches nobody, and what to set: the service is not ready while one does."""
        found = {}
        if not any(self.care_team().values()):
            found[CARE_TEAM_ROUTE] = ("no route: set CARE_TEAM_EMAIL and/or CARE_TEAM_WEBHOOK_URL; safety alerts and "
                                      "every message to the care team wait until one is set")  # fmt: skip
        if not any(self.on_call().values()):
            found[ON_CALL_ROUTE] = (
                "no route: ON_CALL_PHONE is set but no SMS provider (SMS_PROVIDER_URL); set that, or "
                "ON_CALL_WEBHOOK_URL"
                if self.on_call_phone
                else "no route: set ON_CALL_PHONE (texted through SMS_PROVIDER_URL) and/or ON_CALL_WEBHOOK_URL"
            ) + "; safety alerts not acknowledged in time wait until one is set"
        if self.ur_purposes and not self.ur_team_email:
            found[UR_TEAM_ROUTE] = ("no route: set UR_TEAM_EMAIL; reviews due, units low, exhausted authorizations and "
                                    "unauthorized services wait until it is set")  # fmt: skip
        return found
