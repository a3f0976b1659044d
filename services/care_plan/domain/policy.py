"""The care-plan policy: rules as data a clinic can change, validated at load with clear errors."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from services.common.policy_file import load_policy_file
from stepwise_contract import CareLevel, Program, Track, WeekdayName

from .attendance_rules import MissedSessionPolicy
from .stepping import SteppingPolicy

DEFAULT_POLICY_FILE = Path(__file__).resolve().parent.parent / "policy" / "default.yaml"


def _clock_time(value: object) -> object:
    # YAML 1.1 reads an unquoted 18:00 as the integer 1080 (sexagesimal); never take a number for a time.
    if isinstance(value, int) and not isinstance(value, bool):
        hours, minutes = divmod(value, 60)
        if 0 <= hours < 24:
            return time(hours, minutes)
        raise ValueError('must be a clock time such as "18:00"')
    return value


ClockTime = Annotated[time, BeforeValidator(_clock_time)]


class LevelSchedule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    weekdays: list[WeekdayName] = Field(min_length=1)
    hours_per_session: float = Field(gt=0, le=12)
    weeks: int = Field(ge=1, le=52)
    tracks: dict[Track, ClockTime]

    @property
    def weekly_hours(self) -> float:
        return len(set(self.weekdays)) * self.hours_per_session


class CarePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(min_length=1)
    offered_levels: list[CareLevel] = Field(min_length=1)
    default_track: Track
    levels: dict[CareLevel, LevelSchedule]
    min_weekly_hours: dict[CareLevel, dict[Program, float]] = Field(default_factory=dict)
    closures: list[date] = Field(default_factory=list, description="Days the clinic holds no sessions.")
    no_show_grace_minutes: int = Field(
        default=30, ge=0, le=1440, description="After a session's end, how long until no record means missed."
    )
    missed_sessions: MissedSessionPolicy = Field(default_factory=MissedSessionPolicy)
    stepping: SteppingPolicy = Field(default_factory=SteppingPolicy)

    @model_validator(mode="after")
    def _consistent(self) -> CarePolicy:
        for level in self.offered_levels:
            schedule = self.levels.get(level)
            if schedule is None:
                raise ValueError(f"levels.{level.value}: an offered level needs a schedule")
            if self.default_track not in schedule.tracks:
                raise ValueError(f"levels.{level.value}.tracks: has no {self.default_track!r} track")
            for program, minimum in self.min_weekly_hours.get(level, {}).items():
                if schedule.weekly_hours < minimum:
                    raise ValueError(
                        f"levels.{level.value}: {schedule.weekly_hours:g} h/week is below the "
                        f"{minimum:g} h/week minimum for {program} programs"
                    )
        return self


def load_policy(path: Path = DEFAULT_POLICY_FILE) -> CarePolicy:
    return load_policy_file(path, CarePolicy, "care-plan policy")
