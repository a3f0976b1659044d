"""The treatment plan (CARF 2.C): versions, signing, the patient's acknowledgement, reviews and their clock, and
objectives measured by an instrument.

Each put is a new version; signing locks it and makes it the plan in force (a change is a new version that needs
signing). A review is due every ``review_days`` of the level after the last signing or review, and at once on a
level change, a measure showing a reliable deterioration, an immediate safety alert, or the planned discharge
drawing near. Review days are the clinic's local days (so a due day spans a whole local day across a DST change),
moved off closures and closed weekdays. The plan holds each review it is due for: ``due`` (``review_due``) →
``overdue`` (``review_overdue``), or ``done`` once a review is recorded or a new version signed; an ended episode
cancels those open. Pure: the plan, the policy and the time in; ids derived (uuid5), so reviewing twice changes
nothing. Events carry ids, versions and dates only: the plan's text never leaves care_plan.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from services.common.ids import derived_id
from services.common.utc import local_day
from stepwise_contract import (
    AlertLevel,
    CareLevel,
    EventData,
    PlanReviewReason,
    TreatmentPlanReviewDue,
    TreatmentPlanReviewed,
    TreatmentPlanReviewOverdue,
    TreatmentPlanSigned,
    WeekdayName,
)

from .model import (
    AcknowledgedHow,
    Acknowledgement,
    CareInput,
    CarePlan,
    CarePlanError,
    InstrumentTarget,
    PlanReview,
    PlanVersion,
    Problem,
    ReviewDue,
    ReviewOutcome,
    TreatmentPlan,
)

REVIEWS = uuid.UUID("0f5b8d3e-2c71-4a9e-8b46-6d1e0c7a9f25")
"""The namespace of review ids: the episode's review for one reason, set off by one thing (or one interval)."""
MAX_VERSIONS = 60
"""Versions a plan keeps at most (every one stays readable): a weekly revision for a year fits."""
WEEKDAY_NAMES: tuple[WeekdayName, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

IMMEDIATE: tuple[AlertLevel, ...] = ("immediate",)

Progress = Literal["met", "not_met", "no_data"]


class TreatmentPlanPolicy(BaseModel):
    """The ``treatment_plan`` section of the care-plan policy: when its reviews are due."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    review_days: dict[CareLevel, int] = Field(
        default_factory=lambda: {CareLevel.OP: 90, CareLevel.IOP: 30, CareLevel.PHP: 30},
        description="Days between reviews, by level; a level not listed has no periodic review.",
    )
    notice_days: int = Field(default=5, ge=0, le=30, description="The care team hears this many days ahead.")
    triggered_due_days: int = Field(
        default=1, ge=0, le=14, description="A review set off at once is due by the end of this many open days on."
    )
    open_weekdays: list[WeekdayName] = Field(
        default_factory=lambda: list(WEEKDAY_NAMES[:5]), min_length=1,
        description="Days reviews fall due on (with the clinic's closures left out).",
    )  # fmt: skip
    alert_levels: list[AlertLevel] = Field(default_factory=lambda: list(IMMEDIATE))
    planned_discharge_days_before: int = Field(default=7, ge=0, le=60)


@dataclass(frozen=True)
class Trigger:
    """Something that sets a review off at once."""

    reason: PlanReviewReason
    at: datetime
    key: str
    trigger_id: str | None = None


# --- versions, signing, acknowledgement, reviews (what a clinician asks) ----------------------------------------


def _active(plan: CarePlan) -> TreatmentPlan | None:
    if plan.status != "active":
        raise CarePlanError("plan_not_active", f"the episode's care plan is {plan.status}")
    return plan.treatment


def _with(plan: CarePlan, treatment: TreatmentPlan) -> CarePlan:
    return plan.model_copy(update={"treatment": treatment})


def put_version(plan: CarePlan, problems: list[Problem], by: str, timezone: str, now: datetime) -> CarePlan:
    """A new version (unsigned); the same problems as the latest version change nothing."""
    treatment = _active(plan) or TreatmentPlan(timezone=timezone)
    latest = treatment.versions[-1] if treatment.versions else None
    if latest is not None and latest.problems == problems:
        return plan
    if len(treatment.versions) >= MAX_VERSIONS:
        raise CarePlanError("too_many_versions", f"a treatment plan keeps at most {MAX_VERSIONS} versions")
    version = PlanVersion(version=len(treatment.versions) + 1, problems=problems, put_at=now, put_by=by)
    return _with(plan, treatment.model_copy(update={"versions": [*treatment.versions, version]}))


def _version(treatment: TreatmentPlan | None, version: int) -> PlanVersion:
    found = next((v for v in treatment.versions if v.version == version), None) if treatment else None
    if found is None:
        raise CarePlanError("unknown_version", "the treatment plan has no such version", ("body", "version"))
    return found


def sign(
    plan: CarePlan, version: int, by: str, policy: TreatmentPlanPolicy, closures: Collection[date], now: datetime
) -> tuple[CarePlan, list[EventData]]:
    """Sign the latest version: it is the plan in force, and it counts as a review. Signed already: no change."""
    treatment = _active(plan)
    signing = _version(treatment, version)
    assert treatment is not None
    if signing.version != treatment.versions[-1].version:
        raise CarePlanError("version_changed", "a newer version was put since: read it and sign that one")
    if signing.signed_at is not None:
        return plan, []
    before = treatment.in_force
    signed = signing.model_copy(update={"signed_at": now, "signed_by": by})
    treatment = treatment.model_copy(update={"versions": [*treatment.versions[:-1], signed]})
    treatment = _settled(treatment, now)
    due_on = _periodic_due_on(plan.level, treatment, policy, closures, now)
    event = TreatmentPlanSigned(episode_id=plan.episode_id, version=version, signed_at=now,
                                review_due_on=None if due_on == date.max else due_on,
                                supersedes_version=before.version if before else None)  # fmt: skip
    return _with(plan, treatment), [event]


def acknowledge(plan: CarePlan, version: int, how: AcknowledgedHow, agreed_at: datetime, by: str,
                now: datetime) -> CarePlan:  # fmt: skip
    """Record the patient's agreement to a signed version (a later, different record of it replaces the earlier;
    the same again changes nothing)."""
    treatment = _active(plan)
    agreed = _version(treatment, version)
    assert treatment is not None
    if agreed.signed_at is None:
        raise CarePlanError("plan_not_signed", "the patient agrees to a signed version: sign it first",
                            ("body", "version"))  # fmt: skip
    if agreed_at > now:
        raise CarePlanError("agreed_in_future", "the patient's agreement is not ahead of now", ("body", "agreed_at"))
    earlier = agreed.acknowledgement
    if earlier is not None and (earlier.how, earlier.agreed_at) == (how, agreed_at):
        return plan  # recorded so already: a retry
    record = Acknowledgement(how=how, agreed_at=agreed_at, recorded_by=by, recorded_at=now)
    versions = [v.model_copy(update={"acknowledgement": record}) if v is agreed else v for v in treatment.versions]
    return _with(plan, treatment.model_copy(update={"versions": versions}))


def record_review(
    plan: CarePlan, outcome: ReviewOutcome, by: str, policy: TreatmentPlanPolicy, closures: Collection[date],
    now: datetime,
) -> tuple[CarePlan, list[EventData]]:  # fmt: skip
    """A clinician reviewed the plan in force: the reviews it was due for are done, and the next one follows
    (``iop.treatment_plan.reviewed``, naming those it settled). The same review again with nothing signed or due
    since changes nothing and says nothing (a retry)."""
    treatment = _active(plan)
    in_force = treatment.in_force if treatment else None
    if treatment is None or in_force is None:
        raise CarePlanError("plan_not_signed", "no signed treatment plan to review: sign one first")
    if _repeated(treatment, outcome, by, in_force.version):
        return plan, []
    review = PlanReview(at=now, by=by, outcome=outcome, version=in_force.version)
    settled = [r.review_id for r in treatment.reviews_due if r.status in ("due", "overdue")]
    treatment = _settled(treatment.model_copy(update={"reviews": [*treatment.reviews, review]}), now)
    due_on = _periodic_due_on(plan.level, treatment, policy, closures, now)
    event = TreatmentPlanReviewed(episode_id=plan.episode_id, settled_review_ids=settled, version=in_force.version,
                                  outcome=outcome, reviewed_at=now,
                                  review_due_on=None if due_on == date.max else due_on)  # fmt: skip
    return _with(plan, treatment), [event]


def _repeated(treatment: TreatmentPlan, outcome: ReviewOutcome, by: str, version: int) -> bool:
    """The same person's same review of the same version, with nothing signed or due since: a retry."""
    last = treatment.reviews[-1] if treatment.reviews else None
    if last is None or (last.by, last.outcome, last.version) != (by, outcome, version):
        return False
    return last.at == last_reviewed(treatment) and not any(
        r.status in ("due", "overdue") for r in treatment.reviews_due
    )


def _settled(treatment: TreatmentPlan, now: datetime) -> TreatmentPlan:
    due = [r.model_copy(update={"status": "done", "settled_at": now}) if r.status in ("due", "overdue") else r
           for r in treatment.reviews_due]  # fmt: skip
    return treatment.model_copy(update={"reviews_due": due})


# --- the review clock ---------------------------------------------------------------------------------------------


def open_weekday(day: date, policy: TreatmentPlanPolicy, closures: Collection[date]) -> date:
    """The day itself, or the first after it that is an open weekday and no closure."""
    while day in closures or WEEKDAY_NAMES[day.weekday()] not in policy.open_weekdays:
        day += timedelta(days=1)
    return day


def local_midnight(day: date, timezone: str) -> datetime:
    """The UTC moment the local ``day`` begins (DST-safe: zoneinfo resolves the offset of that day)."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def last_reviewed(treatment: TreatmentPlan) -> datetime | None:
    """The latest signing or recorded review: the review clock runs from it."""
    moments = [v.signed_at for v in treatment.versions if v.signed_at is not None]
    return max([*moments, *(r.at for r in treatment.reviews)], default=None)


def _periodic_due_on(
    level: CareLevel, treatment: TreatmentPlan, policy: TreatmentPlanPolicy, closures: Collection[date], since: datetime
) -> date:
    days = policy.review_days.get(level)
    start = local_day(since, treatment.timezone)
    return open_weekday(start + timedelta(days=days), policy, closures) if days else date.max


def triggers(plan: CarePlan, policy: TreatmentPlanPolicy, timezone: str) -> Iterator[Trigger]:
    """What sets a review off at once, from the plan itself: its level changes, its measures' reliable
    deteriorations, its immediate safety alerts, and the planned discharge (days before the calendar's last
    session, local midnight)."""
    for period in plan.level_history:
        if period.reason != "assigned":
            yield Trigger("level_change", period.since, period.since.isoformat())
    for learned in plan.inputs:
        yield from _input_trigger(learned, policy)
    if plan.schedule is not None and plan.schedule.sessions:
        last = max(session.starts_at for session in plan.schedule.sessions)
        day = local_day(last, timezone) - timedelta(days=policy.planned_discharge_days_before)
        yield Trigger("planned_discharge", local_midnight(day, timezone), day.isoformat())


def _input_trigger(learned: CareInput, policy: TreatmentPlanPolicy) -> Iterator[Trigger]:
    if learned.kind == "measure" and any(m.classification == "reliable_deterioration" for m in learned.measured):
        yield Trigger("reliable_deterioration", learned.at, learned.source_id, learned.source_id)
    if learned.kind == "safety_alert" and learned.alert_level in policy.alert_levels:
        yield Trigger("safety_alert", learned.at, learned.source_id, learned.source_id)


@dataclass(frozen=True)
class Wanted:
    """A review the plan is due for, from ``holds_at`` on."""

    review_id: str
    reason: PlanReviewReason
    trigger_id: str | None
    due_on: date
    holds_at: datetime


def wanted(plan: CarePlan, policy: TreatmentPlanPolicy, closures: Collection[date]) -> list[Wanted]:
    """The reviews a signed plan is due for since it was last reviewed: the periodic one (held ``notice_days``
    before its day) and one for each reason something set off (held at once; one open per reason)."""
    treatment = plan.treatment
    since = last_reviewed(treatment) if treatment else None
    if treatment is None or since is None or treatment.in_force is None:
        return []
    zone = treatment.timezone
    found: list[Wanted] = []
    due_on = _periodic_due_on(plan.level, treatment, policy, closures, since)
    if due_on != date.max:
        notice = max(local_midnight(due_on - timedelta(days=policy.notice_days), zone), since)
        found.append(Wanted(derived_id(REVIEWS, plan.episode_id, "periodic", since.isoformat()), "periodic", None,
                            due_on, notice))  # fmt: skip
    for trigger in triggers(plan, policy, zone):
        if trigger.at > since:
            day = open_weekday(
                local_day(trigger.at, zone) + timedelta(days=policy.triggered_due_days), policy, closures
            )
            identity = derived_id(REVIEWS, plan.episode_id, trigger.reason, trigger.key)
            found.append(Wanted(identity, trigger.reason, trigger.trigger_id, day, trigger.at))
    return found


def review_treatment(
    plan: CarePlan, policy: TreatmentPlanPolicy, closures: Collection[date], now: datetime
) -> tuple[CarePlan, list[EventData]]:
    """Hold each review the plan became due for (``review_due``), turn those not recorded by their day's end
    overdue (``review_overdue``); an ended episode's open reviews are cancelled (no event: its end says so)."""
    treatment = plan.treatment
    if treatment is None:
        return plan, []
    if plan.status != "active":
        return _with(plan, _cancelled(treatment, now)), []
    in_force = treatment.in_force
    held = list(treatment.reviews_due)
    events: list[EventData] = []
    known = {review.review_id for review in held}
    for want in wanted(plan, policy, closures):
        if in_force is None or want.review_id in known or want.holds_at > now or _open_for(held, want.reason):
            continue
        overdue_at = local_midnight(want.due_on + timedelta(days=1), treatment.timezone)
        review = ReviewDue(review_id=want.review_id, reason=want.reason, trigger_id=want.trigger_id,
                           version=in_force.version, due_on=want.due_on, overdue_at=overdue_at,
                           held_at=now)  # fmt: skip
        held.append(review)
        known.add(review.review_id)
        events.append(TreatmentPlanReviewDue(**_fields(plan.episode_id, review)))
    moved = [_moved(review, plan.episode_id, now, events) for review in held]
    return _with(plan, treatment.model_copy(update={"reviews_due": moved})), events


def _open_for(held: list[ReviewDue], reason: PlanReviewReason) -> bool:
    """A review for this reason is open already: what set off another is reviewed with it."""
    return any(review.reason == reason and review.status in ("due", "overdue") for review in held)


def _moved(review: ReviewDue, episode_id: str, now: datetime, events: list[EventData]) -> ReviewDue:
    if review.status == "due" and review.overdue_at <= now:
        events.append(TreatmentPlanReviewOverdue(**_fields(episode_id, review)))
        return review.model_copy(update={"status": "overdue"})
    return review


def _cancelled(treatment: TreatmentPlan, now: datetime) -> TreatmentPlan:
    if not any(review.status in ("due", "overdue") for review in treatment.reviews_due):
        return treatment
    due = [r.model_copy(update={"status": "cancelled", "settled_at": now}) if r.status in ("due", "overdue") else r
           for r in treatment.reviews_due]  # fmt: skip
    return treatment.model_copy(update={"reviews_due": due})


def _fields(episode_id: str, review: ReviewDue) -> dict[str, object]:
    return {"episode_id": episode_id, "review_id": review.review_id, "reason": review.reason,
            "trigger_id": review.trigger_id, "version": review.version, "due_on": review.due_on,
            "overdue_at": review.overdue_at}  # fmt: skip


def next_review_check(
    plan: CarePlan, policy: TreatmentPlanPolicy, closures: Collection[date], now: datetime
) -> datetime | None:
    """The next moment a held review turns overdue or a wanted one is held (a planned discharge drawing near, the
    periodic review's notice); None for none."""
    treatment = plan.treatment
    if treatment is None or plan.status != "active":
        return None
    held = {review.review_id for review in treatment.reviews_due}
    moments = [review.overdue_at for review in treatment.reviews_due if review.status == "due"]
    moments += [max(want.holds_at, now) for want in wanted(plan, policy, closures) if want.review_id not in held]
    later = [moment for moment in moments if moment >= now]
    return min(later) if later else None


def next_periodic_due_on(plan: CarePlan, policy: TreatmentPlanPolicy, closures: Collection[date]) -> date | None:
    """The local day the next periodic review is due (None: no signed plan, or the level has no interval)."""
    treatment = plan.treatment
    since = last_reviewed(treatment) if treatment else None
    if treatment is None or since is None:
        return None
    due_on = _periodic_due_on(plan.level, treatment, policy, closures, since)
    return None if due_on == date.max else due_on


# --- objectives measured by an instrument --------------------------------------------------------------------------


def progress(target: InstrumentTarget, inputs: Collection[CareInput]) -> tuple[Progress, list[int]]:
    """``met`` when the latest ``in_a_row`` scores of the instrument are all below the target, ``not_met`` when
    one is not (or fewer were recorded), ``no_data`` before any; with the scores it read, latest last."""
    ordered = sorted((i for i in inputs if i.kind == "measure"), key=lambda i: i.at)
    scores = [m.score for i in ordered for m in i.measured if m.instrument == target.instrument]
    if not scores:
        return "no_data", []
    latest = scores[-target.in_a_row :]
    met = len(latest) == target.in_a_row and all(score < target.below for score in latest)
    return ("met" if met else "not_met"), latest
