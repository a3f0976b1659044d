"""Reads that shape the projection into what the API answers: the caseload, worklists, timeline, census."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.common.mongo import Document
from services.common.utc import utc_now

from .domain import worklists
from .domain.worklists import FLAG_OF, ROWS, WORKLISTS, Row
from .store import CaseloadStore, holding

LIST_LIMIT = 500


@dataclass
class Caseload:
    store: CaseloadStore
    zone: ZoneInfo
    missed_threshold: int

    def today(self) -> date:
        return utc_now().astimezone(self.zone).date()

    async def rows(self, query: Document, limit: int = LIST_LIMIT) -> list[Row]:
        now = utc_now()
        views = await self.store.find(query, limit)
        return [worklists.caseload_row(view, now, self.zone, self.missed_threshold) for view in views]

    async def counts(self) -> dict[str, int]:
        counts = {name: await self.store.count({"flags": holding(flag)}) for name, flag in FLAG_OF.items()}
        return {"today": await self.store.count({"session_days": holding(self.today().isoformat())})} | counts

    async def worklist(self, name: str, day: date | None = None) -> list[Row]:
        if name == "today":
            day = day or self.today()
            views = await self.store.find({"session_days": holding(day.isoformat())})
            return worklists.today_rows(views, day, self.zone)
        return ROWS[name](await self.store.find({"flags": holding(FLAG_OF[name])}))

    async def census(self, day: date, since: date | None, until: date | None) -> Row:
        def midnight(of: date) -> datetime:
            return datetime.combine(of, time(), self.zone)

        start, end = midnight(since or day), midnight((until or day) + timedelta(days=1))
        views = await self.store.in_care_between(min(start, midnight(day)), max(end, midnight(day + timedelta(days=1))))
        return worklists.census(views, day, start, end, self.zone)


def episode_ids(rows: list[Row]) -> list[str]:
    """Every episode a worklist's rows name (a session's members too)."""
    found: list[str] = []
    for row in rows:
        found += [row["episode_id"]] if "episode_id" in row else [m["episode_id"] for m in row.get("members", [])]
    return sorted(set(found))


def with_names(rows: list[Row], names: dict[str, dict[str, Any]]) -> list[Row]:
    """The rows with each episode's patient's name and birth date (for this answer only)."""

    def named(entry: Row) -> Row:
        person = names.get(entry["episode_id"], {})
        return entry | {"name": person.get("name"), "date_of_birth": person.get("date_of_birth")}

    out = []
    for row in rows:
        if "members" in row:
            out.append(row | {"members": [named(member) for member in row["members"]]})
        else:
            out.append(named(row))
    return out


__all__ = ["WORKLISTS", "Caseload", "episode_ids", "with_names"]
