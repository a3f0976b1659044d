"""Drawing authorizations down, and projecting when their units run out. Pure.

What counts: a day with a per-diem code (``iop.service_day.completed``) against ``day`` units; a delivered service
with a code (``iop.service.delivered``) against ``session`` (one each) and ``hour`` units (its minutes). Each is
counted against the first approved authorization (earliest start, then earliest end) whose dates, level and codes
cover it and that has units left. Only the highest revision of a service or a day counts (a voided service counts
nothing), so corrections and redeliveries change nothing twice.

The projection runs the same allocation over what is counted and then the calendar's sessions not yet counted, as
if each were attended: the day an authorization's last unit goes is its projected exhaustion.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from stepwise_contract import AuthorizationUnit, CareLevel, UnauthorizedReason

from .model import Authorization, Coverage

EPSILON = 1e-9


@dataclass(frozen=True)
class Item:
    """Something an authorization's units pay for: a day, a service, or a session the calendar schedules."""

    kind: str  # "day" | "service" | "scheduled"
    key: str
    revision: int
    on: date
    level: CareLevel
    code: str | None
    """None for a scheduled session: any code of the authorization (it has none before it happens)."""
    hours: float

    def units(self, unit: AuthorizationUnit) -> float:
        return round(self.hours, 4) if unit == "hour" else 1.0


@dataclass
class Allocation:
    used: dict[str, float] = field(default_factory=dict)
    exhausted_on: dict[str, date] = field(default_factory=dict)
    unauthorized: list[tuple[Item, AuthorizationUnit, UnauthorizedReason]] = field(default_factory=list)


def counted_items(coverage: Coverage, unit: AuthorizationUnit) -> list[Item]:
    """What is counted against ``unit``: days with a per-diem code, or delivered services with a code."""
    if unit == "day":
        return [Item("day", key, day.revision, day.service_date, day.level, day.per_diem_code, 0.0)
                for key, day in coverage.days.items() if day.per_diem_code]  # fmt: skip
    return [Item("service", service.service_id, service.revision, service.service_date, service.level, service.code,
                 service.minutes / 60)
            for service in coverage.services.values() if service.status == "delivered" and service.code]  # fmt: skip


def scheduled_items(coverage: Coverage, unit: AuthorizationUnit, today: date) -> list[Item]:
    """The calendar's sessions from ``today`` on that nothing counted yet (for days: one per date)."""
    if coverage.ended:
        return []
    counted_days = {key for key, day in coverage.days.items() if day.per_diem_code}
    counted_sessions = {service.session_id for service in coverage.services.values()}
    ahead = [session for session in coverage.calendar if session.local_date >= today]
    if unit == "day":
        by_date = {s.local_date: s for s in ahead if s.local_date.isoformat() not in counted_days}
        return [Item("scheduled", d.isoformat(), 0, d, s.level, None, s.hours) for d, s in sorted(by_date.items())]
    return [Item("scheduled", s.session_id, 0, s.local_date, s.level, None, s.hours)
            for s in ahead if s.session_id not in counted_sessions]  # fmt: skip


def covers(authorization: Authorization, item: Item) -> bool:
    return (authorization.in_dates(item.on) and authorization.level == item.level
            and (item.code is None or item.code in authorization.codes))  # fmt: skip


def allocate(authorizations: Sequence[Authorization], unit: AuthorizationUnit, items: Iterable[Item]) -> Allocation:
    """Count ``items`` (in date order) against the approved authorizations of ``unit``; those none covers are
    unauthorized, with the reason."""
    of_unit = [a for a in authorizations if a.unit == unit]
    approved = sorted((a for a in of_unit if a.approved), key=lambda a: (a.start_date, a.end_date, a.authorization_id))
    allocation = Allocation(used={a.authorization_id: 0.0 for a in approved})
    for item in sorted(items, key=lambda i: (i.on, i.kind == "scheduled", i.key)):
        units = item.units(unit)
        taker = next((a for a in approved if covers(a, item) and _room(a, allocation, units)), None)
        if taker is None:
            allocation.unauthorized.append((item, unit, unauthorized_reason(of_unit, item)))
            continue
        allocation.used[taker.authorization_id] += units
        limit = taker.units_authorized
        if limit is not None and allocation.used[taker.authorization_id] >= limit - EPSILON:
            allocation.exhausted_on.setdefault(taker.authorization_id, item.on)
    return allocation


def _room(authorization: Authorization, allocation: Allocation, units: float) -> bool:
    limit = authorization.units_authorized
    return limit is None or allocation.used[authorization.authorization_id] + units <= limit + EPSILON


def unauthorized_reason(authorizations: Sequence[Authorization], item: Item) -> UnauthorizedReason:
    """The first thing that fails, in the order a coordinator checks: dates, level, code, approval, units."""
    in_dates = [a for a in authorizations if a.in_dates(item.on)]
    if not in_dates:
        return "outside_dates"
    at_level = [a for a in in_dates if a.level == item.level]
    if not at_level:
        return "wrong_level"
    coded = [a for a in at_level if item.code is None or item.code in a.codes]
    if not coded:
        return "code_not_covered"
    if not any(a.approved for a in coded):
        return "not_approved"
    return "no_units_left"


@dataclass(frozen=True)
class DrawDown:
    """Each authorization's units used, when it was used up, when it will be, and what no authorization covers."""

    used: dict[str, float]
    exhausted_on: dict[str, date]
    projected_exhaustion_on: dict[str, date]
    unauthorized: list[tuple[Item, AuthorizationUnit, UnauthorizedReason]]
    scheduled_soon: dict[str, float]
    """Units each authorization would pay for in the calendar's next days (``soon`` of ``draw_down``)."""


def draw_down(coverage: Coverage, today: date, soon_days: int) -> DrawDown:
    used: dict[str, float] = {}
    exhausted: dict[str, date] = {}
    projected: dict[str, date] = {}
    unauthorized: list[tuple[Item, AuthorizationUnit, UnauthorizedReason]] = []
    soon: dict[str, float] = {}
    for unit in sorted({a.unit for a in coverage.authorizations}):
        counted = counted_items(coverage, unit)
        actual = allocate(coverage.authorizations, unit, counted)
        used |= actual.used
        exhausted |= actual.exhausted_on
        unauthorized += actual.unauthorized
        ahead = scheduled_items(coverage, unit, today)
        projected |= allocate(coverage.authorizations, unit, [*counted, *ahead]).exhausted_on
        window = [item for item in ahead if item.on < today + timedelta(days=soon_days)]
        soon |= _scheduled_per_authorization(coverage.authorizations, unit, window)
    return DrawDown(used, exhausted, projected, unauthorized, soon)


def _scheduled_per_authorization(
    authorizations: Sequence[Authorization], unit: AuthorizationUnit, items: Sequence[Item]
) -> dict[str, float]:
    totals: dict[str, float] = {}
    for authorization in authorizations:
        if authorization.unit == unit and authorization.approved:
            totals[authorization.authorization_id] = sum(i.units(unit) for i in items if covers(authorization, i))
    return totals
