"""Caseload's HTTP models."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field

from services.common.schemas import RequestBody, request_examples
from services.common.utc import IsoDate

WorklistName = Literal[
    "today", "safety_alerts", "missed_sessions", "recommendations", "measures_due", "plan_reviews",
    "authorizations", "failed_messages",
]  # fmt: skip


class CaseloadOut(BaseModel):
    episodes: list[dict[str, Any]] = Field(description="One row per episode: level, status, group, flags …; "
                                           "`name` and `date_of_birth` with `names=true`.")  # fmt: skip


class WorklistOut(BaseModel):
    worklist: WorklistName
    date: dt.date | None = Field(default=None, description="The day of `today`.")
    rows: list[dict[str, Any]]


class TimelineOut(BaseModel):
    episode_id: str
    entries: list[dict[str, Any]] = Field(description="type, time, summary; oldest first.")
    next_offset: int | None = Field(description="The offset of the next page; null on the last.")


class SearchIn(RequestBody):
    model_config = request_examples({"name": "alex exa"}, {"date_of_birth": "1990-04-01"})

    name: str | None = Field(default=None, max_length=200)
    date_of_birth: IsoDate | None = None
