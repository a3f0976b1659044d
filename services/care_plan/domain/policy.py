"""The care-plan policy: rules as data a clinic can change, validated at load with clear errors."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from services.common.policy_file import load_policy_file
from stepwise_contract import PROGRAMS, CareLevel, Program, SessionKind, Track, WeekdayName

from .attendance_rules import MissedSessionPolicy
from .measures import MeasurePolicy
from .stepping import SteppingPolicy
from .treatment_plan import TreatmentPlanPolicy

DEFAULT_POLICY_FILE = Path(__file__).resolve().parent.parent / "policy" / "default.yaml"
CUSTOM_CALENDAR = "custom"
"""The group id a custom calendar's sessions carry in their ids (``custom-{yyyymmdd}``): no group may take it."""


def _clock_time(value: object) -> object:
    # YAML 1.1 reads an unquoted 18:00 as the integer 1080 (sexagesimal); never take a number for a time.
    if isinstance(value, int) and not isinstance(value, bool):
        hours, minutes = divmod(value, 60)
        if 0 <= hours < 24:
            return time(hours, minutes)
        raise ValueError('must be a clock time such as "18:00"')
    return value


ClockTime = Annotated[
    time,
    BeforeValidator(_clock_time),
    PlainSerializer(lambda value: value.strftime("%H:%M"), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^\d{2}:\d{2}$", "examples": ["09:00"]}),
]
"""A local clock time, ``HH:MM`` (the clinic's zone): no offset, so not JSON Schema's ``time``."""


Units = Literal["per_session", "per_15_minutes"]


class BillingCode(BaseModel):
    """A code a session kind is reported under, from ``min_minutes`` attended (time-based codes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(min_length=1, max_length=20)
    min_minutes: int = Field(default=0, ge=0)


class SessionKindPolicy(BaseModel):
    """One kind of session: the length of an appointment of it and how it is coded (codes are data; no fees)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    minutes: int = Field(ge=5, le=720, description="Default length of an appointment of this kind.")
    codes: list[BillingCode] = Field(min_length=1, description="The first whose min_minutes is met, longest first.")
    units: Units = Field(default="per_session", description="per_session, or per_15_minutes (the 8-minute rule).")

    @model_validator(mode="after")
    def _longest_first(self) -> SessionKindPolicy:
        ordered = sorted(self.codes, key=lambda code: -code.min_minutes)
        if ordered != self.codes:
            object.__setattr__(self, "codes", ordered)
        return self


class PerDiem(BaseModel):
    """The level's per-diem code, for a day with at least ``min_hours`` of services."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(min_length=1, max_length=20)
    min_hours: float = Field(default=0, ge=0, le=24)


class LevelSchedule(BaseModel):
    """A level of care: how many weeks its calendar runs, and its per-diem code.

    ``weekdays``, ``hours_per_session`` and ``tracks`` are the older way of giving a level its calendar:
    a policy without ``groups`` gets one group per level and track from them, without a capacity.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    weeks: int = Field(ge=1, le=52)
    per_diem: PerDiem | None = None
    weekdays: list[WeekdayName] | None = Field(default=None, min_length=1)
    hours_per_session: float | None = Field(default=None, gt=0, le=12)
    tracks: dict[Track, ClockTime] | None = None


class ProgramGroup(BaseModel):
    """A group that meets on fixed weekdays at a fixed time; plans of its level and track join it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    group_id: str = Field(
        pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$",
        max_length=40,
        examples=["iop-am"],
        description="Lowercase words joined by hyphens; not 'custom' (the sessions of a custom calendar).",
    )
    name: str = Field(min_length=1, max_length=100, examples=["IOP morning group"])
    level: CareLevel
    track: Track
    programs: list[Program] = Field(
        min_length=1, description="The programs whose plans may join (adult, adolescent): each group says which."
    )
    weekdays: list[WeekdayName] = Field(min_length=1)
    starts_at: ClockTime
    minutes: int = Field(ge=15, le=720)
    kind: SessionKind = "group"
    capacity: int | None = Field(default=None, ge=1, le=500, description="Members at most; null for no limit.")
    closures: list[date] = Field(default_factory=list, description="Days this group does not meet (and the clinic's).")

    @field_validator("group_id")
    @classmethod
    def _not_reserved(cls, group_id: str) -> str:
        if group_id == CUSTOM_CALENDAR:
            raise ValueError(f"{CUSTOM_CALENDAR!r} names the sessions of a custom calendar: choose another id")
        return group_id

    @property
    def days_per_week(self) -> int:
        return len(set(self.weekdays))

    @property
    def weekly_hours(self) -> float:
        return self.days_per_week * self.minutes / 60


class GraduationRules(BaseModel):
    """What a clinician's graduation needs without a stated reason."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_attended_sessions: dict[CareLevel, int] = Field(
        default_factory=lambda: {CareLevel.OP: 4, CareLevel.IOP: 12, CareLevel.PHP: 10},
        description="By the level it graduates from: sessions attended or late in the episode; fewer need a "
        "reason. A level not listed has no minimum.",
    )

    @model_validator(mode="after")
    def _counts(self) -> GraduationRules:
        for level, count in self.min_attended_sessions.items():
            if not 0 <= count <= 500:
                raise ValueError(f"min_attended_sessions.{level.value}: {count} is not between 0 and 500 sessions")
        return self


def _default_session_kinds() -> dict[str, SessionKindPolicy]:
    """The session kinds of the bundled policy file: their one definition."""
    raw = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    return {kind: SessionKindPolicy.model_validate(entry) for kind, entry in raw["session_kinds"].items()}


class CarePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(min_length=1)
    offered_levels: list[CareLevel] = Field(min_length=1)
    default_track: Track
    levels: dict[CareLevel, LevelSchedule]
    session_kinds: dict[SessionKind, SessionKindPolicy] = Field(
        default_factory=_default_session_kinds,
        min_length=1,
        description="Default: the bundled policy's kinds (a policy written before session kinds loads as it was).",
    )
    groups: list[ProgramGroup] = Field(default_factory=list)
    min_weekly_hours: dict[CareLevel, dict[Program, float]] = Field(default_factory=dict)
    closures: list[date] = Field(default_factory=list, description="Days the clinic holds no sessions.")
    no_show_grace_minutes: int = Field(
        default=30, ge=0, le=1440, description="After a session's end, how long until no record means missed."
    )
    missed_sessions: MissedSessionPolicy = Field(default_factory=MissedSessionPolicy)
    stepping: SteppingPolicy = Field(default_factory=SteppingPolicy)
    measures: MeasurePolicy = Field(default_factory=MeasurePolicy)
    graduation: GraduationRules = Field(default_factory=GraduationRules)
    treatment_plan: TreatmentPlanPolicy = Field(default_factory=TreatmentPlanPolicy)

    @model_validator(mode="after")
    def _consistent(self) -> CarePolicy:
        if not self.groups:
            object.__setattr__(self, "groups", _groups_of_levels(self.levels))
        elif any(level.weekdays or level.tracks or level.hours_per_session for level in self.levels.values()):
            raise ValueError("levels: weekdays, hours_per_session and tracks are set by groups; remove them")
        ids = [group.group_id for group in self.groups]
        if len(ids) != len(set(ids)):
            raise ValueError("groups: each group_id once")
        for group in self.groups:
            self._check_group(group)
        for level in self.offered_levels:
            if level not in self.levels:
                raise ValueError(f"levels.{level.value}: an offered level needs an entry")
            for program in PROGRAMS:
                if not self.groups_for(level, self.default_track, program):
                    raise ValueError(f"groups: {level.value} has no {self.default_track} group for {program} programs")
        return self

    def _check_group(self, group: ProgramGroup) -> None:
        if group.kind not in self.session_kinds:
            raise ValueError(f"groups.{group.group_id}.kind: {group.kind!r} is not in session_kinds")
        if group.level not in self.levels:
            raise ValueError(f"groups.{group.group_id}.level: {group.level.value} has no entry in levels")
        if group.level not in self.offered_levels:
            return  # a level referred out holds no sessions here
        for program in group.programs:
            minimum = self.min_weekly_hours.get(group.level, {}).get(program, 0.0)
            if group.weekly_hours < minimum:
                raise ValueError(
                    f"groups.{group.group_id}: {group.weekly_hours:g} h/week is below the "
                    f"{minimum:g} h/week minimum for {group.level.value} {program} programs"
                )

    def groups_for(self, level: CareLevel, track: Track, program: Program) -> list[ProgramGroup]:
        """The groups a plan of this level, track and program may join, in the policy's order."""
        return [g for g in self.groups if (g.level, g.track) == (level, track) and program in g.programs]

    def group(self, group_id: str) -> ProgramGroup | None:
        return next((group for group in self.groups if group.group_id == group_id), None)


def _groups_of_levels(levels: dict[CareLevel, LevelSchedule]) -> list[ProgramGroup]:
    """One group per level and track, from a policy written before groups (no capacity: nobody waits)."""
    groups = []
    for level, schedule in levels.items():
        if not (schedule.weekdays and schedule.hours_per_session and schedule.tracks):
            raise ValueError(f"levels.{level.value}: give weekdays, hours_per_session and tracks, or list groups")
        for track, starts_at in schedule.tracks.items():
            groups.append(
                ProgramGroup(
                    group_id=f"{level.value.lower()}-{track}",
                    name=f"{level.value} {track} group",
                    level=level,
                    track=track,
                    weekdays=list(schedule.weekdays),
                    starts_at=starts_at,
                    minutes=round(schedule.hours_per_session * 60),
                    programs=list(PROGRAMS),  # as before groups: every program meets together; list groups to part them
                )
            )
    return groups


def load_policy(path: Path = DEFAULT_POLICY_FILE) -> CarePolicy:
    return load_policy_file(path, CarePolicy, "care-plan policy")
