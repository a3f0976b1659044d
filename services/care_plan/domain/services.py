"""Services delivered: each attended (or late) session is a billable service, coded by the policy; a day
whose sessions all have a record rolls up under the level's per-diem code. Pure.

What was published is kept in the plan (``services``, ``service_days``); after any change the expected
lines are compared with it and only a difference is published, as the next revision: a correction is
always a new revision (a service corrected to a miss is ``voided``), never a silent change.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from zoneinfo import ZoneInfo

from stepwise_contract import CareLevel, EventData, ScheduledSession, ServiceDayCompleted, ServiceDelivered

from .model import AttendanceRecord, CarePlan, DeliveredService, ServiceDay
from .policy import CarePolicy, SessionKindPolicy

_ATTENDED = ("attended", "late")


def billing_code(kind: SessionKindPolicy, minutes: int) -> tuple[str | None, int]:
    """The code of the first rule whose minimum the minutes reach (longest first), and its units.

    per_15_minutes counts units by the 8-minute rule: one per full 15 minutes, one more for 8 or more left."""
    code = next((rule.code for rule in kind.codes if minutes >= rule.min_minutes), None)
    if code is None:
        return None, 0
    if kind.units == "per_session":
        return code, 1
    full, rest = divmod(minutes, 15)
    units = full + (1 if rest >= 8 else 0)
    return (code, units) if units else (None, 0)


def level_at(plan: CarePlan, moment: datetime) -> CareLevel:
    """The episode's level at ``moment``: the last level period begun by then (the first if none)."""
    level = plan.level_history[0].level if plan.level_history else plan.level
    for period in plan.level_history:
        if period.since <= moment:
            level = period.level
    return level


def _minutes(session: ScheduledSession, record: AttendanceRecord) -> int:
    whole = round((session.ends_at - session.starts_at).total_seconds() / 60)
    return whole if record.minutes is None else record.minutes


def expected_service(
    plan: CarePlan, session: ScheduledSession, record: AttendanceRecord, policy: CarePolicy, zone: ZoneInfo
) -> DeliveredService:
    """The service line of a recorded session (status voided for a miss or an excused absence)."""
    kind = policy.session_kinds.get(session.kind)
    attended = record.status in _ATTENDED
    minutes = _minutes(session, record) if attended else 0
    code, units = billing_code(kind, minutes) if kind is not None and attended else (None, 0)
    return DeliveredService(
        revision=1,
        status="delivered" if attended else "voided",
        session_id=session.session_id,
        kind=session.kind,
        group_id=session.group_id,
        service_date=session.starts_at.astimezone(zone).date(),
        minutes=minutes,
        code=code,
        units=units,
        level=level_at(plan, session.starts_at),
        attendance=record.status,
    )


def _same(a: DeliveredService | ServiceDay, b: DeliveredService | ServiceDay) -> bool:
    """The same line or day, whatever its revision and whenever it was published."""
    return a.model_dump(exclude={"revision", "recorded_at"}) == b.model_dump(exclude={"revision", "recorded_at"})


def review_services(plan: CarePlan, policy: CarePolicy, now: datetime) -> tuple[CarePlan, list[EventData]]:
    """Publish the service lines and day roll-ups that are new or changed since last published.

    A plan stored before services were reported (``services_tracked`` false) takes what its attendance says
    as already reported (revision 0), publishing nothing: its history is not billed again."""
    if plan.schedule is None:
        return plan, []
    zone = ZoneInfo(plan.schedule.timezone)
    services = dict(plan.services)
    events: list[EventData] = []
    calendar = {session.session_id for session in plan.schedule.sessions}
    for session in plan.schedule.sessions:
        record = plan.attendance.get(session.session_id)
        if record is not None:
            _publish(services, expected_service(plan, session, record, policy, zone), events, plan, now)
    for gone in [line for sid, line in services.items() if sid not in calendar and line.status == "delivered"]:
        # recorded ahead, then taken off the calendar (a new level or calendar): it never took place
        voided = gone.model_copy(update={"status": "voided", "minutes": 0, "code": None, "units": 0})
        _publish(services, voided, events, plan, now)
    days, day_events = _days(plan, services, policy, zone, now)
    if not plan.services_tracked:
        baseline = {"services": services, "service_days": days, "services_tracked": True}
        return plan.model_copy(update=baseline), []
    if not events and not day_events:
        return plan, []
    return plan.model_copy(update={"services": services, "service_days": days}), [*events, *day_events]


def _publish(
    services: dict[str, DeliveredService],
    line: DeliveredService,
    events: list[EventData],
    plan: CarePlan,
    now: datetime,
) -> None:
    """Keep ``line`` as the session's service and say so, unless it is what was said last (or says nothing)."""
    published = services.get(line.session_id)
    if published is None and line.status == "voided":
        return  # nothing was delivered, nothing to correct
    if published is not None and _same(published, line):
        return
    revision = _next_revision(published, plan)
    services[line.session_id] = line.model_copy(update={"revision": revision, "recorded_at": now if revision else None})
    if revision:
        events.append(_delivered(plan.episode_id, services[line.session_id], now))


def _days(
    plan: CarePlan, services: dict[str, DeliveredService], policy: CarePolicy, zone: ZoneInfo, now: datetime
) -> tuple[dict[date, ServiceDay], list[EventData]]:
    """The day roll-ups to keep, and the events of those new or changed since last published."""
    assert plan.schedule is not None
    by_day: dict[date, list[ScheduledSession]] = defaultdict(list)
    for session in plan.schedule.sessions:
        by_day[session.starts_at.astimezone(zone).date()].append(session)
    days = dict(plan.service_days)
    events: list[EventData] = []
    for day in sorted({*by_day, *days}):
        rolled = _day_changed(plan, by_day.get(day, []), services, days.get(day), policy)
        if rolled is None:
            continue
        days[day] = rolled
        if rolled.revision:
            events.append(ServiceDayCompleted(episode_id=plan.episode_id, service_date=day, completed_at=now,
                                              **rolled.model_dump()))  # fmt: skip
    return days, events


def _day_changed(
    plan: CarePlan,
    sessions: list[ScheduledSession],
    services: dict[str, DeliveredService],
    published: ServiceDay | None,
    policy: CarePolicy,
) -> ServiceDay | None:
    """The day's roll-up at its next revision; None while one of its sessions has no record (the day is not
    over for billing), for a day with nothing delivered nor published, or when it is what was published."""
    if any(session.session_id not in plan.attendance for session in sessions):
        return None
    lines = [services[s.session_id] for s in sessions if s.session_id in services]
    delivered = [line for line in lines if line.status == "delivered"]
    if not delivered and published is None:
        return None
    rolled = _roll_up(_day_level(plan, sessions, published), delivered, policy)
    if published is not None and _same(published, rolled):
        return None
    return rolled.model_copy(update={"revision": _next_revision(published, plan)})


def _day_level(plan: CarePlan, sessions: list[ScheduledSession], published: ServiceDay | None) -> CareLevel:
    """The level at the day's first session; with none left (every session of the day left the calendar, so
    the day is corrected to no services), the level it was published at."""
    if sessions:
        return level_at(plan, min(s.starts_at for s in sessions))
    assert published is not None
    return published.level


def _roll_up(level: CareLevel, delivered: list[DeliveredService], policy: CarePolicy) -> ServiceDay:
    """The day's services under the level's per-diem code, when they reach its minimum hours."""
    minutes = sum(line.minutes for line in delivered)
    per_diem = policy.levels[level].per_diem if level in policy.levels else None
    code = per_diem.code if per_diem and delivered and minutes >= per_diem.min_hours * 60 else None
    return ServiceDay(revision=1, level=level, services=len(delivered), minutes=minutes,
                      service_ids=[line.session_id for line in delivered], per_diem_code=code)  # fmt: skip


def _next_revision(published: DeliveredService | ServiceDay | None, plan: CarePlan) -> int:
    """The revision to publish next; 0 for a plan whose history is taken as reported (nothing published)."""
    if not plan.services_tracked:
        return 0
    return published.revision + 1 if published else 1


def _delivered(episode_id: str, line: DeliveredService, now: datetime) -> ServiceDelivered:
    fields = line.model_dump(exclude={"recorded_at"})
    return ServiceDelivered(episode_id=episode_id, service_id=line.session_id, recorded_at=now, **fields)
