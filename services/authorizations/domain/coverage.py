"""What an episode's coverage learns from care_plan's events, and what it says after each change. Pure.

``settle`` is run after every change (an event, a person's decision, the daily timer): it draws the authorizations
down, projects them, and decides what to publish. An authorization's view (``iop.authorization.changed``) is
published when it differs from the one last published; every other signal once per key (``said``): a review due,
units low and exhaustion once per revision of the authorization, an unauthorized service or day once per revision of
it, a level mismatch once per clinical level, a certification once per due date.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from stepwise_contract import (
    AuthorizationChanged,
    AuthorizationExhausted,
    AuthorizationLevelMismatch,
    AuthorizationReviewDue,
    AuthorizationUnitsLow,
    CareLevel,
    CertificationDue,
    CertificationRecorded,
    EventData,
    Schedule,
    ServiceDayCompleted,
    ServiceDelivered,
    ServiceUnauthorized,
)

from .drawdown import EPSILON, DrawDown, draw_down
from .model import Authorization, CalendarSession, Certification, CountedDay, CountedService, Coverage, ReviewEntry
from .policy import UrPolicy
from .review_due import CertificationDue as Due
from .review_due import business_days_before, certifications_due, lead_days, review_due


@dataclass(frozen=True)
class Rules:
    """What decisions read besides the coverage: the policy and the service's settings."""

    policy: UrPolicy
    lead_business_days: int
    units_low_days: int
    timezone: str

    def today(self, now: datetime) -> date:
        return now.astimezone(ZoneInfo(self.timezone)).date()


# --- what care_plan's events say ------------------------------------------------------------------------------


def count_service(coverage: Coverage, data: ServiceDelivered) -> Coverage:
    """Keep the highest revision of the service (a redelivery or an older revision changes nothing)."""
    kept = coverage.services.get(data.service_id)
    if kept is not None and kept.revision >= data.revision:
        return coverage
    service = CountedService(service_id=data.service_id, revision=data.revision, status=data.status,
                             session_id=data.session_id, service_date=data.service_date, level=data.level,
                             code=data.code, minutes=data.minutes)  # fmt: skip
    return coverage.model_copy(update={"services": {**coverage.services, data.service_id: service}})


def count_day(coverage: Coverage, data: ServiceDayCompleted) -> Coverage:
    key = data.service_date.isoformat()
    kept = coverage.days.get(key)
    if kept is not None and kept.revision >= data.revision:
        return coverage
    day = CountedDay(service_date=data.service_date, revision=data.revision, level=data.level,
                     per_diem_code=data.per_diem_code)  # fmt: skip
    return coverage.model_copy(update={"days": {**coverage.days, key: day}})


def calendar_of(level: CareLevel, schedule: Schedule) -> list[CalendarSession]:
    zone = ZoneInfo(schedule.timezone)
    return [CalendarSession(session_id=s.session_id, local_date=s.starts_at.astimezone(zone).date(),
                            hours=(s.ends_at - s.starts_at).total_seconds() / 3600, level=level)
            for s in schedule.sessions]  # fmt: skip


def plan_calendar(
    coverage: Coverage, level: CareLevel, schedule: Schedule | None, from_day: date | None = None
) -> Coverage:
    """The episode's clinical level and calendar: the whole calendar (``from_day`` None), or the sessions before
    ``from_day`` kept and the new ones from then on. No schedule: referred out, nothing more is scheduled."""
    kept = [s for s in coverage.calendar if from_day is not None and s.local_date < from_day]
    new = calendar_of(level, schedule) if schedule else []
    new = [s for s in new if from_day is None or s.local_date >= from_day]
    return coverage.model_copy(update={"clinical_level": level, "calendar": kept + new, "ended": schedule is None})


def end_episode(coverage: Coverage) -> Coverage:
    """Graduated or discharged: nothing more is scheduled, and no review is due."""
    return coverage.model_copy(update={"ended": True})


# --- what follows ---------------------------------------------------------------------------------------------


def settle(coverage: Coverage, now: datetime, rules: Rules) -> tuple[Coverage, list[EventData]]:
    today = rules.today(now)
    drawn = draw_down(coverage, today, rules.units_low_days)
    said, published = list(coverage.said), dict(coverage.published)
    events: list[EventData] = []

    def say(key: str, event: EventData) -> None:
        if key not in said:
            said.append(key)
            events.append(event)

    reviews: list[ReviewEntry] = []
    for authorization in coverage.authorizations:
        view, entry = _view(coverage, authorization, drawn, today, now, rules)
        seen = view.model_dump_json(exclude={"changed_at"})
        if published.get(authorization.authorization_id) != seen:
            published[authorization.authorization_id] = seen
            events.append(view)
        if entry is not None:
            reviews.append(entry)
            if entry.review_due_on <= today:
                say(f"review_due|{authorization.authorization_id}|{authorization.revision}",
                    _review_due(coverage.episode_id, entry, now))  # fmt: skip
        for key, signal in _units_signals(coverage.episode_id, authorization, view, drawn, now, rules):
            say(key, signal)
    for key, signal in _unauthorized(coverage.episode_id, drawn, now):
        say(key, signal)
    for key, signal in [*_mismatch(coverage, today, now), *_certifications(coverage, today, now, rules)]:
        say(key, signal)
    reviews.sort(key=lambda entry: (entry.review_due_on, entry.authorization_id))
    settled = coverage.model_copy(update={"said": said, "published": published, "reviews": reviews})
    return settled, events


def views(coverage: Coverage, now: datetime, rules: Rules) -> list[tuple[AuthorizationChanged, ReviewEntry | None]]:
    """Each authorization as of ``now``: its draw-down, projection and review due (what the API answers)."""
    today = rules.today(now)
    drawn = draw_down(coverage, today, rules.units_low_days)
    return [_view(coverage, a, drawn, today, now, rules) for a in coverage.authorizations]


def next_check_on(coverage: Coverage, now: datetime, rules: Rules) -> date | None:
    """The next day the coverage is looked at again without an event (reviews and certifications fall due, the
    units-low window moves): tomorrow while an approved authorization runs, else never."""
    today = rules.today(now)
    running = any(a.approved and a.end_date >= today for a in coverage.authorizations)
    return today + timedelta(days=1) if running and not coverage.ended else None


def watched(coverage: Coverage, authorization: Authorization, today: date) -> bool:
    """An authorization whose reviews the desk follows: approved, not ended, the episode not over."""
    return authorization.approved and authorization.end_date >= today and not coverage.ended


def _view(
    coverage: Coverage, authorization: Authorization, drawn: DrawDown, today: date, now: datetime, rules: Rules
) -> tuple[AuthorizationChanged, ReviewEntry | None]:
    a, key = authorization, authorization.authorization_id
    used = round(drawn.used.get(key, 0.0), 4)
    remaining = None if a.units_authorized is None else round(a.units_authorized - used, 4)
    projected = drawn.projected_exhaustion_on.get(key)
    due = review_due(a, projected, rules.policy, rules.lead_business_days) if watched(coverage, a, today) else None
    view = AuthorizationChanged(
        episode_id=coverage.episode_id, authorization_id=key, revision=a.revision, payer=a.payer, level=a.level,
        unit=a.unit, units_authorized=a.units_authorized, units_used=used, units_remaining=remaining,
        start_date=a.start_date, end_date=a.end_date, status=a.status, review_type=a.review_type,
        next_review_on=a.next_review_on, last_covered_day=a.last_covered_day, projected_exhaustion_on=projected,
        review_due_on=due.due_on if due else None, review_reason=due.reason if due else None, changed_at=now,
    )  # fmt: skip
    entry = None if due is None else ReviewEntry(
        authorization_id=key, payer=a.payer, level=a.level, review_due_on=due.due_on, reason=due.reason,
        deadline=due.deadline, lead_business_days=due.lead, unit=a.unit, units_remaining=remaining,
    )  # fmt: skip
    return view, entry


def _review_due(episode_id: str, entry: ReviewEntry, now: datetime) -> AuthorizationReviewDue:
    return AuthorizationReviewDue(episode_id=episode_id, authorization_id=entry.authorization_id, payer=entry.payer,
                                  level=entry.level, review_due_on=entry.review_due_on, reason=entry.reason,
                                  deadline=entry.deadline, units_remaining=entry.units_remaining,
                                  detected_at=now)  # fmt: skip


def _units_signals(
    episode_id: str, a: Authorization, view: AuthorizationChanged, drawn: DrawDown, now: datetime, rules: Rules
) -> list[tuple[str, EventData]]:
    """Units low (fewer left than the calendar's next days need) or exhausted, once per revision."""
    remaining, key = view.units_remaining, a.authorization_id
    if not a.approved or remaining is None or a.units_authorized is None:
        return []
    if remaining <= EPSILON and key in drawn.exhausted_on:
        return [(f"exhausted|{key}|{a.revision}",
                 AuthorizationExhausted(episode_id=episode_id, authorization_id=key, payer=a.payer, level=a.level,
                                        unit=a.unit, units_authorized=a.units_authorized,
                                        exhausted_on=drawn.exhausted_on[key], detected_at=now))]  # fmt: skip
    soon = drawn.scheduled_soon.get(key, 0.0)
    if remaining < soon - EPSILON:
        return [(f"units_low|{key}|{a.revision}",
                 AuthorizationUnitsLow(episode_id=episode_id, authorization_id=key, payer=a.payer, level=a.level,
                                       unit=a.unit, units_remaining=remaining, units_scheduled=soon,
                                       days=rules.units_low_days, projected_exhaustion_on=view.projected_exhaustion_on,
                                       detected_at=now))]  # fmt: skip
    return []


def _unauthorized(episode_id: str, drawn: DrawDown, now: datetime) -> list[tuple[str, EventData]]:
    signals: list[tuple[str, EventData]] = []
    for item, unit, reason in drawn.unauthorized:
        assert item.code is not None  # counted items carry their code; scheduled ones are never unauthorized here
        event = ServiceUnauthorized(episode_id=episode_id, item="day" if item.kind == "day" else "service",
                                    service_id=None if item.kind == "day" else item.key, revision=item.revision,
                                    service_date=item.on, level=item.level, code=item.code, unit=unit, reason=reason,
                                    detected_at=now)  # fmt: skip
        signals.append((f"unauthorized|{item.kind}|{item.key}|{item.revision}|{unit}", event))
    return signals


def _mismatch(coverage: Coverage, today: date, now: datetime) -> list[tuple[str, EventData]]:
    """The clinical level differs from every level the authorizations in force today approve."""
    current = [a for a in coverage.authorizations if a.approved and a.in_dates(today)]
    clinical = coverage.clinical_level
    if clinical is None or coverage.ended or not current or any(a.level == clinical for a in current):
        return []
    authorization = current[0]
    event = AuthorizationLevelMismatch(episode_id=coverage.episode_id, authorization_id=authorization.authorization_id,
                                       clinical_level=clinical, authorized_level=authorization.level,
                                       detected_at=now)  # fmt: skip
    return [(f"level_mismatch|{authorization.authorization_id}|{clinical.value}", event)]


def _certifications(coverage: Coverage, today: date, now: datetime, rules: Rules) -> list[tuple[str, EventData]]:
    """A certification the payer's rules ask for, said once its lead time before it is due."""
    if coverage.ended:
        return []
    signals: list[tuple[str, EventData]] = []
    for due in certifications_due(coverage.authorizations, coverage.certifications, rules.policy):
        lead = lead_days(rules.policy, due.payer, rules.lead_business_days)
        if business_days_before(due.due_on, lead, rules.policy.closures) > today:
            continue
        event = CertificationDue(episode_id=coverage.episode_id, payer=due.payer, due_on=due.due_on,
                                 reason=due.reason,
                                 last_certified_on=due.last_certified_on,
                                 min_hours_per_week=due.rule.min_hours_per_week, detected_at=now)  # fmt: skip
        signals.append((f"certification|{due.payer}|{due.due_on.isoformat()}", event))
    return signals


def certification_recorded(
    coverage: Coverage, certification: Certification, policy: UrPolicy, now: datetime
) -> list[CertificationRecorded]:
    """A recorded certification, said for each payer whose rules ask for one, with that payer's next due counting it
    (the same day as before when it certifies fewer hours than the payer asks). Never the certifying clinician."""
    dues = certifications_due(coverage.authorizations, coverage.certifications, policy)
    return [_recorded(coverage.episode_id, certification, due, now) for due in dues]


def _recorded(episode_id: str, certification: Certification, due: Due, now: datetime) -> CertificationRecorded:
    return CertificationRecorded(episode_id=episode_id, certification_id=certification.certification_id,
                                 payer=due.payer, certified_on=certification.certified_on,
                                 hours_per_week=certification.hours_per_week,
                                 min_hours_per_week=due.rule.min_hours_per_week, next_due_on=due.due_on,
                                 recorded_at=now)  # fmt: skip
