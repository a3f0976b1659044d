"""What care_plan's API reads: program groups with their members and waitlist, a group session as its members'
calendars have it, and the session's roster. Reads only: changes go through ``changes.py``."""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from services.common.utc import utc_now
from stepwise_contract import ScheduledSession

from .domain.groups import meetings
from .domain.measures import upcoming
from .domain.model import CarePlan, CarePlanError, PlanVersion
from .domain.policy import CarePolicy, ProgramGroup
from .domain.treatment_plan import next_periodic_due_on, progress
from .schemas import (
    GroupOut,
    MeasuresDueOut,
    RecentSession,
    RosterLine,
    ServiceOut,
    ServicesPage,
    SessionRoster,
    UpcomingMeasure,
    Waiting,
)
from .schemas_plan import PlanVersionOut, TreatmentPlanOut
from .store import CarePlanStore, WaitingPlan

RECENT = timedelta(days=14)
"""How far back a roster line shows a member's sessions."""
UPCOMING = 6
"""How many of a group's next sessions it shows."""
SESSION_DAY = "%Y%m%d"
"""How a group session's id names its day: ``<group_id>-20261207``."""
SERVICE_DAYS = 92
"""The most days one ``GET /v1/services`` covers (a quarter): a longer rebuild asks quarter by quarter."""
SERVICE_RANGE = f"until is on or after since, at most {SERVICE_DAYS - 1} days on"


async def plan(store: CarePlanStore, episode_id: str) -> CarePlan:
    """The episode's plan; ``no_care_plan`` (404) before one was made."""
    stored = await store.get(episode_id)
    if stored is None:
        raise CarePlanError("no_care_plan", "no care plan for this episode (yet)")
    return stored.plan


def program_group(policy: CarePolicy, group_id: str) -> ProgramGroup:
    group = policy.group(group_id)
    if group is None:
        raise CarePlanError("no_group", f"no group {group_id!r}")
    return group


async def group_meeting(
    group_id: str, session_id: str, store: CarePlanStore, policy: CarePolicy, timezone: str
) -> tuple[ScheduledSession, list[CarePlan]]:
    """A group session and its members' plans; ``no_group`` or ``no_group_session`` (404)."""
    found = await meeting(program_group(policy, group_id), session_id, store, policy, timezone)
    if found is None:
        raise CarePlanError("no_group_session", f"group {group_id!r} has no session {session_id!r}")
    return found


async def groups(store: CarePlanStore, policy: CarePolicy, timezone: str) -> list[GroupOut]:
    waitlisted = await store.waitlisted()
    return [await group_out(group, store, policy, timezone, waitlisted) for group in policy.groups]


async def group_out(
    group: ProgramGroup, store: CarePlanStore, policy: CarePolicy, timezone: str, waitlisted: list[WaitingPlan]
) -> GroupOut:
    """The group: who is in it and who waits for it (in order), places left, its next sessions."""
    members = sorted(await store.member_ids(group.group_id))
    waiting = [w for w in waitlisted if group.group_id in w.place.group_ids]
    waitlist = [Waiting(episode_id=w.episode_id, since=w.place.since, position=n)
                for n, w in enumerate(waiting, start=1)]  # fmt: skip
    today = utc_now().astimezone(ZoneInfo(timezone)).date()
    upcoming = meetings(group, timezone, today, today + timedelta(days=28), policy.closures)
    left = None if group.capacity is None else max(group.capacity - len(members), 0)
    next_sessions = [s for s in upcoming if s.ends_at > utc_now()][:UPCOMING]
    return GroupOut(group=group, members=members, places_left=left, waitlist=waitlist, next_sessions=next_sessions)


async def meeting(
    group: ProgramGroup, session_id: str, store: CarePlanStore, policy: CarePolicy, timezone: str
) -> tuple[ScheduledSession, list[CarePlan]] | None:
    """The group's session of that id, as its members' calendars have it (or, before anyone has it, as the
    group meets that day), and its roster: the active plans with it on their calendar, and any plan with a
    record of it. None when the group has no such session."""
    plans = [plan for plan in await store.roster(session_id)
             if plan.status == "active" or session_id in plan.attendance]  # fmt: skip
    calendars = (plan.schedule.sessions for plan in plans if plan.schedule)
    found = [
        s for sessions in calendars for s in sessions if (s.session_id, s.group_id) == (session_id, group.group_id)
    ]
    day = None if found else session_day(group, session_id)
    if day is not None:
        found = [s for s in meetings(group, timezone, day, day, policy.closures) if s.session_id == session_id]
    return (found[0], plans) if found else None


def session_day(group: ProgramGroup, session_id: str) -> date | None:
    """The day a session id of the group names, if it names one."""
    try:
        return datetime.strptime(session_id.removeprefix(f"{group.group_id}-"), SESSION_DAY).date()
    except ValueError:
        return None


def roster(group_id: str, session: ScheduledSession, plans: list[CarePlan]) -> SessionRoster:
    lines = [_roster_line(plan, session) for plan in plans]
    return SessionRoster(group_id=group_id, session=session, members=sorted(lines, key=lambda line: line.episode_id))


def _roster_line(plan: CarePlan, session: ScheduledSession) -> RosterLine:
    assert plan.schedule is not None
    recent = [
        RecentSession(session_id=s.session_id, kind=s.kind, starts_at=s.starts_at,
                      status=record.status if (record := plan.attendance.get(s.session_id)) else None)
        for s in plan.schedule.sessions
        if session.starts_at - RECENT <= s.starts_at < session.starts_at
    ]  # fmt: skip
    return RosterLine(
        episode_id=plan.episode_id,
        attendance=plan.attendance.get(session.session_id),
        last_two_weeks=recent,
        attended_last_two_weeks=sum(1 for r in recent if r.status in ("attended", "late")),
        missed_last_two_weeks=sum(1 for r in recent if r.status == "missed"),
    )


def not_on_sheet(plans: list[CarePlan], session_id: str, listed: Collection[str]) -> list[str]:
    """The active members with no record of the session whom the sheet does not list (it records no one it does
    not list)."""
    return sorted(
        plan.episode_id
        for plan in plans
        if plan.status == "active" and plan.episode_id not in listed and session_id not in plan.attendance
    )


def measures_due(plan: CarePlan, policy: CarePolicy) -> MeasuresDueOut:
    """The plan's due measures as held, and the next ones the policy will ask for."""
    later = [
        UpcomingMeasure(instruments=list(ask.instruments), reason=ask.reason, due_on=ask.window.due_on,
                        window_opens_at=ask.window.opens_at, window_closes_at=ask.window.closes_at)
        for ask in upcoming(plan, policy.measures, policy.closures, utc_now())
    ]  # fmt: skip
    return MeasuresDueOut(episode_id=plan.episode_id, measures=plan.measures, upcoming=later)


def treatment_plan(plan: CarePlan, policy: CarePolicy) -> TreatmentPlanOut:
    """The treatment plan as GET answers it: the current version with each instrument-tied objective's progress
    (from the episode's measures), the history, the reviews; ``no_treatment_plan`` (404) before one was put."""
    treatment = plan.treatment
    if treatment is None or not treatment.versions:
        raise CarePlanError("no_treatment_plan", "no treatment plan for this episode (yet)")
    current, in_force = treatment.versions[-1], treatment.in_force
    status = "draft" if in_force is None else "signed" if in_force is current else "revision_unsigned"
    return TreatmentPlanOut(
        episode_id=plan.episode_id,
        status=status,
        current=_with_progress(current, plan),
        in_force_version=in_force.version if in_force else None,
        versions=treatment.versions,
        reviews=treatment.reviews,
        reviews_due=treatment.reviews_due,
        next_review_due_on=next_periodic_due_on(plan, policy.treatment_plan, policy.closures),
    )


def _with_progress(version: PlanVersion, plan: CarePlan) -> PlanVersionOut:
    out = PlanVersionOut.model_validate(version.model_dump())
    for objective in (o for problem in out.problems for goal in problem.goals for o in goal.objectives):
        if objective.target is not None:
            objective.progress, objective.scores = progress(objective.target, plan.inputs)
    return out


async def services_delivered(
    store: CarePlanStore, since: date, until: date, after: str | None, limit: int
) -> ServicesPage:
    """Every published service (its latest revision) on a day from ``since`` to ``until`` (the clinic's dates, both
    included), of up to ``limit`` episodes after ``after``, by episode id: a subscriber that missed events rebuilds
    what it holds of those days from it, page by page."""
    days = (until - since).days + 1
    if not 1 <= days <= SERVICE_DAYS:
        raise CarePlanError("service_range", SERVICE_RANGE)
    found = await store.services_on([since + timedelta(days=n) for n in range(days)], after, limit)
    services = [ServiceOut(episode_id=episode.episode_id, service_id=line.session_id, **line.model_dump())
                for episode in found for line in sorted(episode.services, key=lambda line: (line.service_date,
                                                                                           line.session_id))
                if line.revision and since <= line.service_date <= until]  # fmt: skip
    return ServicesPage(services=services, next_after=found[-1].episode_id if len(found) == limit else None)
