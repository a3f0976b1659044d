"""Events the authorizations service consumes: what happens on each is one function, listed in ``EVENT_HANDLERS``.

Each goes through ``changes.change_coverage`` with the event's source + id as its dedup key, so a redelivery
changes nothing; a correction of a service or a day is a higher revision, kept in place of the one before."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from services.common.consumer import EventHandlers, Subscription
from stepwise_contract import (
    CareLevelAssigned,
    CareLevelChanged,
    CloudEvent,
    EpisodeDischarged,
    EpisodeGraduated,
    ScheduleChanged,
    ServiceDayCompleted,
    ServiceDelivered,
)

from .changes import Desk, change_coverage
from .domain.coverage import count_day, count_service, end_episode, plan_calendar
from .domain.model import Coverage


async def on_service_delivered(event: CloudEvent[ServiceDelivered], desk: Desk) -> None:
    data = event.data
    await change_coverage(desk, event.subject, lambda c, _now: (count_service(c, data), None), event.dedup_key)


async def on_service_day_completed(event: CloudEvent[ServiceDayCompleted], desk: Desk) -> None:
    data = event.data
    await change_coverage(desk, event.subject, lambda c, _now: (count_day(c, data), None), event.dedup_key)


async def on_care_level_assigned(event: CloudEvent[CareLevelAssigned], desk: Desk) -> None:
    data = event.data

    def decide(coverage: Coverage, _now: datetime) -> tuple[Coverage, None]:
        return plan_calendar(coverage, data.level, data.schedule if data.status == "active" else None), None

    # An episode's first event here, nearly always: its coverage is inserted at once (one round trip).
    await change_coverage(desk, event.subject, decide, event.dedup_key, likely_new=True)


async def on_care_level_changed(event: CloudEvent[CareLevelChanged], desk: Desk) -> None:
    data = event.data
    zone = ZoneInfo(data.schedule.timezone if data.schedule else desk.rules.timezone)

    def decide(coverage: Coverage, _now: datetime) -> tuple[Coverage, None]:
        schedule = data.schedule if data.status == "active" else None
        return plan_calendar(coverage, data.to_level, schedule, data.changed_at.astimezone(zone).date()), None

    await change_coverage(desk, event.subject, decide, event.dedup_key)


async def on_schedule_changed(event: CloudEvent[ScheduleChanged], desk: Desk) -> None:
    data = event.data
    await change_coverage(desk, event.subject, lambda c, _now: (plan_calendar(c, data.level, data.schedule), None),
                          event.dedup_key)  # fmt: skip


async def on_episode_ended(event: CloudEvent[EpisodeGraduated | EpisodeDischarged], desk: Desk) -> None:
    await change_coverage(desk, event.subject, lambda c, _now: (end_episode(c), None), event.dedup_key)


EVENT_HANDLERS: EventHandlers = {
    ServiceDelivered: Subscription(on_service_delivered, "A session attended (or a correction of it) is drawn from "
                                   "the session or hour authorization that covers it, or said unauthorized."),
    ServiceDayCompleted: Subscription(on_service_day_completed, "A per-diem day (or a correction of it) is drawn "
                                      "from the day authorization that covers it, or said unauthorized."),
    CareLevelAssigned: Subscription(on_care_level_assigned, "The clinical level and the calendar the "
                                    "authorizations are projected over."),
    CareLevelChanged: Subscription(on_care_level_changed, "A step up or down: the new level (a mismatch with the "
                                   "authorized one is said) and the calendar from then on."),
    ScheduleChanged: Subscription(on_schedule_changed, "The calendar the authorizations are projected over."),
    EpisodeGraduated: Subscription(on_episode_ended, "The episode is over: nothing more is scheduled or due."),
    EpisodeDischarged: Subscription(on_episode_ended, "The episode is over: nothing more is scheduled or due."),
}  # fmt: skip
