"""The clinic's messaging rules as data: who is told what, for which event, on which channels, and when.

Loaded from a YAML file (NOTIFICATIONS_POLICY_FILE; default ``policy/default.yaml``). A file that cannot
be used stops the service at start-up with an error naming the file and the field.
"""

from __future__ import annotations

from datetime import date, time
from pathlib import Path
from typing import Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.common.policy_file import PolicyError, load_policy_file
from stepwise_contract import Channel, ConsentScope, SessionKind, WeekdayName

DEFAULT_POLICY_FILE = Path(__file__).resolve().parent.parent / "policy" / "default.yaml"

Audience = Literal["patient", "care_team", "supports", "ur_team"]

CHANNELS_FOR: dict[Audience, frozenset[Channel]] = {
    "patient": frozenset({"email", "sms"}),
    "supports": frozenset({"email", "sms"}),
    "care_team": frozenset({"email", "webhook"}),
    "ur_team": frozenset({"email"}),
}
"""The care team is reached at the clinic's mailbox and on-call webhook, the utilization-review desk at its mailbox;
people at their own email or phone."""

PURPOSE = r"^[a-z][a-z0-9_]*$"


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _unique(values: list[str], what: str) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError(f"{what} are listed twice")
    return values


class MessageRule(Rule):
    """One message an event causes: its purpose (also the template name), audience and channels."""

    purpose: str = Field(pattern=PURPOSE)
    to: Audience
    channels: list[Channel] = Field(min_length=1)
    consent_scope: ConsentScope | None = Field(
        default=None, description="Supports only: what a consent naming them must allow."
    )
    urgent: bool = Field(default=False, description="Care team only: never delayed by quiet hours or opt-outs.")
    session_kinds: list[SessionKind] | None = Field(
        default=None,
        description="For an event with a calendar: only its sessions of these kinds that it booked or cancelled "
        "(session_change) are told of, and the message goes only when there is one (e.g. supports hear of a "
        "family session booked).",
    )
    session_change: Literal["booked", "cancelled"] = Field(
        default="booked",
        description="With session_kinds: the sessions of those kinds a new calendar booked (not in the calendar "
        "it replaced), or those it cancelled (in that calendar, still ahead, gone from this one).",
    )

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        _unique(list(self.channels), "channels")
        if not set(self.channels) <= CHANNELS_FOR[self.to]:
            allowed = ", ".join(sorted(CHANNELS_FOR[self.to]))
            raise ValueError(f"channels: {self.to} can be reached by {allowed} only")
        if (self.to == "supports") != (self.consent_scope is not None):
            raise ValueError("consent_scope: required for supports, and only for them")
        if self.urgent and self.to != "care_team":
            raise ValueError("urgent: only messages to the care team are urgent")
        if self.session_change != "booked" and self.session_kinds is None:
            raise ValueError("session_change: only with session_kinds")
        return self


class SessionReminders(Rule):
    """Reminders to the patient before each scheduled session."""

    purpose: str = Field(default="session_reminder", pattern=PURPOSE)
    hours_before: list[float] = Field(min_length=1, description="One reminder per entry, before the session starts.")
    channels: list[Channel] = Field(min_length=1)

    @field_validator("hours_before")
    @classmethod
    def _positive(cls, hours: list[float]) -> list[float]:
        if any(h <= 0 or h > 24 * 14 for h in hours):
            raise ValueError("each must be more than 0 and at most 336 hours (two weeks)")
        if len(set(hours)) != len(hours):
            raise ValueError("hours are listed twice")
        return sorted(hours, reverse=True)

    @field_validator("channels")
    @classmethod
    def _patient_channels(cls, channels: list[Channel]) -> list[Channel]:
        return _patient_channels(channels)


class AlumniMeetings(Rule):
    """The weekly alumni meeting graduates are reminded of."""

    weekday: WeekdayName
    starts_at: time = Field(description="Local start time of the meeting.")
    timezone: str | None = Field(default=None, description="The meeting's zone; default: the clinic's.")
    remind_hours_before: float = Field(gt=0, le=72)
    weeks: int = Field(ge=1, le=260, description="How many weekly reminders follow graduation.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str | None) -> str | None:
        return _known_zone(zone)


class AlumniProgram(Rule):
    """After graduation, with a consent naming the alumni group: enrolment, a welcome, meetings, check-ins."""

    consent_scope: ConsentScope = "alumni_program"
    channels: list[Channel] = Field(min_length=1)
    welcome: bool = True
    check_in_days: list[int] = Field(description="Check-ins, in days after graduation.")
    check_in_time: time = Field(default=time(10, 0), description="Local time of day the check-ins go out.")
    meetings: AlumniMeetings | None = None

    @field_validator("check_in_days")
    @classmethod
    def _days(cls, days: list[int]) -> list[int]:
        if any(d < 1 or d > 3660 for d in days):
            raise ValueError("each must be between 1 and 3660 days")
        if len(set(days)) != len(days):
            raise ValueError("days are listed twice")
        return sorted(days)

    @field_validator("channels")
    @classmethod
    def _patient_channels(cls, channels: list[Channel]) -> list[Channel]:
        return _patient_channels(channels)


def _known_zone(zone: str | None) -> str | None:
    if zone is not None:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {zone!r}") from None
    return zone


def _patient_channels(channels: list[Channel]) -> list[Channel]:
    _unique(list(channels), "channels")
    if not set(channels) <= CHANNELS_FOR["patient"]:
        raise ValueError("patients can be reached by email, sms only")
    return channels


class OpeningHours(Rule):
    opens: time
    closes: time

    @model_validator(mode="after")
    def _opens_before_closing(self) -> Self:
        if self.opens >= self.closes:
            raise ValueError("opens: must be before closes (the same day)")
        return self


class SameDayDeadline(Rule):
    """By when a same-day safety alert must be acknowledged before it goes to the on-call route: within
    ``within_hours`` of being raised and by the clinic's closing time that day, whichever is first; raised while
    the clinic is closed (outside its hours, a day not listed, a closure), within ``when_closed_within_minutes``."""

    within_hours: float = Field(gt=0, le=24)
    hours: dict[WeekdayName, OpeningHours] = Field(description="Opening hours by weekday; a day not listed is closed.")
    closures: list[date] = Field(default_factory=list, description="Days the clinic is closed.")
    when_closed_within_minutes: float = Field(ge=0, le=24 * 60)
    timezone: str | None = Field(default=None, description="The zone of these hours; default CLINIC_TIMEZONE.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str | None) -> str | None:
        return _known_zone(zone)


class SafetyAlertPolicy(Rule):
    """Safety alerts are acknowledged by a clinician; one not acknowledged by its deadline is escalated. An
    immediate alert's deadline is a setting (SAFETY_ACK_SECONDS); a same-day alert's is this."""

    same_day: SameDayDeadline


class NotificationPolicy(Rule):
    version: str = Field(min_length=1)
    events: dict[str, list[MessageRule]]
    session_reminders: SessionReminders | None = None
    alumni: AlumniProgram | None = None
    safety_alerts: SafetyAlertPolicy

    def rules_for(self, event_type: str) -> list[MessageRule]:
        return self.events.get(event_type, [])

    def ur_purposes(self) -> frozenset[str]:
        """The purposes of messages to the utilization-review mailbox: staff messages routed by their purpose."""
        return frozenset(rule.purpose for rules in self.events.values() for rule in rules if rule.to == "ur_team")

    @model_validator(mode="after")
    def _ur_purposes_are_their_own(self) -> NotificationPolicy:
        others = {rule.purpose for rules in self.events.values() for rule in rules if rule.to != "ur_team"}
        shared = sorted(self.ur_purposes() & others)
        if shared:
            raise ValueError(f"purpose {shared[0]}: a message to ur_team has a purpose of its own (it is routed by it)")
        return self

    def templates(self) -> set[tuple[str, Channel]]:
        """Every (purpose, channel) a message may be rendered for: each needs a template."""
        needed = {
            (rule.purpose, channel) for rules in self.events.values() for rule in rules for channel in rule.channels
        }
        if self.session_reminders:
            needed |= {(self.session_reminders.purpose, c) for c in self.session_reminders.channels}
        if self.alumni:
            purposes = ["alumni_check_in"] + (["alumni_welcome"] if self.alumni.welcome else [])
            purposes += ["alumni_meeting"] if self.alumni.meetings else []
            needed |= {(purpose, c) for purpose in purposes for c in self.alumni.channels}
        return {(purpose, channel) for purpose, channel in needed if channel != "webhook"}


def load_policy(path: Path, known_events: frozenset[str]) -> NotificationPolicy:
    """Read the policy; ``known_events`` are those the service can turn into messages."""
    policy = load_policy_file(path, NotificationPolicy, "notifications policy")
    unknown = sorted(set(policy.events) - known_events)
    if unknown:
        raise PolicyError(
            f"{path}: invalid notifications policy: events.{unknown[0]}: not an event notifications can "
            f"turn into messages (one of {', '.join(sorted(known_events))})"
        )
    return policy
