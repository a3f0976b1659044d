"""Building coverage for the pure tests: authorizations, services and days as care_plan reports them, a calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from services.authorizations.domain.coverage import Rules, count_day, count_service, plan_calendar
from services.authorizations.domain.model import Authorization, Coverage
from services.authorizations.domain.policy import load_policy
from stepwise_contract import CareLevel, Schedule, ScheduledSession, ServiceDayCompleted, ServiceDelivered

EPISODE = "episode-1"
ZONE = "America/New_York"
NOW = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)  # Tuesday 1 December 2026, 15:00 in New York
TODAY = date(2026, 12, 1)
POLICY = load_policy()
RULES = Rules(POLICY, lead_business_days=2, units_low_days=7, timezone=ZONE)


def authorization(
    authorization_id: str = "a1",
    *,
    level: str = "IOP",
    unit: str = "day",
    units: float | None = 10,
    start: date = date(2026, 11, 2),
    end: date = date(2027, 1, 29),
    status: str = "approved",
    payer: str = "carelon",
    next_review_on: date | None = None,
    last_covered_day: date | None = None,
) -> Authorization:
    return Authorization.model_validate({
        "authorization_id": authorization_id, "payer": payer, "authorization_number": "PA-SECRET-1", "level": level,
        "codes": POLICY.codes(CareLevel(level)), "unit": unit, "units_authorized": units, "start_date": start,
        "end_date": end, "status": status, "review_type": "initial", "next_review_on": next_review_on,
        "last_covered_day": last_covered_day,
    })  # fmt: skip


def coverage(*authorizations: Authorization) -> Coverage:
    return Coverage(episode_id=EPISODE, authorizations=list(authorizations))


def day(on: date, revision: int = 1, level: str = "IOP", code: str | None = "H0015") -> ServiceDayCompleted:
    return ServiceDayCompleted(episode_id=EPISODE, service_date=on, revision=revision, level=CareLevel(level),
                               services=1, minutes=180, service_ids=[f"iop-am-{on:%Y%m%d}"], per_diem_code=code,
                               completed_at=NOW)  # fmt: skip


def service(
    on: date, revision: int = 1, status: str = "delivered", minutes: int = 180, level: str = "IOP", code: str = "90853"
) -> ServiceDelivered:
    return ServiceDelivered.model_validate({
        "episode_id": EPISODE, "service_id": f"iop-am-{on:%Y%m%d}", "revision": revision, "status": status,
        "session_id": f"iop-am-{on:%Y%m%d}", "kind": "group", "group_id": "iop-am", "service_date": on,
        "minutes": minutes, "code": code, "units": 1, "level": level,
        "attendance": "attended" if status == "delivered" else "missed", "recorded_at": NOW,
    })  # fmt: skip


def schedule(days: list[date], hours: float = 3.0) -> Schedule:
    zone = ZoneInfo(ZONE)
    sessions = []
    for on in days:
        starts = datetime.combine(on, time(9, 0), zone)
        sessions.append(ScheduledSession(session_id=f"iop-am-{on:%Y%m%d}", starts_at=starts,
                                         ends_at=starts + timedelta(hours=hours), group_id="iop-am"))  # fmt: skip
    return Schedule(timezone=ZONE, track="morning", days_per_week=5, hours_per_session=hours, weeks=8,
                    sessions=sessions)  # fmt: skip


def weekdays(start: date, count: int, skip: frozenset[date] = frozenset()) -> list[date]:
    """``count`` weekdays from ``start`` on, leaving out ``skip``."""
    found: list[date] = []
    on = start
    while len(found) < count:
        if on.weekday() < 5 and on not in skip:
            found.append(on)
        on += timedelta(days=1)
    return found


def with_days(c: Coverage, days: list[date], level: str = "IOP") -> Coverage:
    for on in days:
        c = count_day(c, day(on, level=level))
    return c


def with_services(c: Coverage, days: list[date]) -> Coverage:
    for on in days:
        c = count_service(c, service(on))
    return c


def with_calendar(c: Coverage, days: list[date], level: str = "IOP") -> Coverage:
    return plan_calendar(c, CareLevel(level), schedule(days))
