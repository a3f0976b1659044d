"""Step-up / step-down recommendations: which move between levels of care the episode's inputs support.

Movement between levels is driven by reassessment and what happened since the current level began,
not by a fixed length of stay. The rules are data (``SteppingPolicy``, the ``stepping`` section of the
care-plan policy file); every recommendation lists each criterion that held, in sentences naming the
numbers, and a clinician accepts or declines it. Pure: the plan, the policy and the time in.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stepwise_contract import (
    ALERT_LEVELS,
    INSTRUMENTS,
    LEVEL_ORDER,
    AlertLevel,
    CareLevel,
    InstrumentChange,
    InstrumentMeasure,
    InstrumentResult,
    InstrumentVocabulary,
    Reason,
)

from .model import CareInput, CarePlan

__all__ = [
    "INSTRUMENT_CATALOG",
    "LEVEL_ORDER",
    "PositiveScreenRule",
    "Rungs",
    "StepDecision",
    "StepDownRules",
    "StepUpRules",
    "SteppingPolicy",
    "SustainedImprovement",
    "level_period_start",
    "recommend_step",
    "referral",
    "step_down_criteria",
    "step_up_triggers",
]

Direction = Literal["up", "down"]


INSTRUMENT_CATALOG: Mapping[str, InstrumentVocabulary] = {
    name: INSTRUMENTS[name] for name in ("phq9", "gad7", "audit", "dast10", "cssrs")
}
"""Instruments the stepping rules may name (from the contract's vocabulary)."""


def _known_instrument(instrument: str) -> InstrumentVocabulary:
    spec = INSTRUMENT_CATALOG.get(instrument)
    if spec is None:
        raise ValueError(f"unknown instrument {instrument!r} (known: {', '.join(INSTRUMENT_CATALOG)})")
    return spec


# --- policy -------------------------------------------------------------------------------------


class Rungs(BaseModel):
    """Where a level steps to: ``up`` is more intensive, ``down`` less; None for no step that way."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    up: CareLevel | None = None
    down: CareLevel | None = None


def _default_ladder() -> dict[CareLevel, Rungs]:
    return {
        CareLevel.OP: Rungs(up=CareLevel.IOP),
        CareLevel.IOP: Rungs(up=CareLevel.PHP, down=CareLevel.OP),
        CareLevel.PHP: Rungs(up=CareLevel.RESIDENTIAL, down=CareLevel.IOP),
    }


class PositiveScreenRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(default=2, ge=1, le=50, description="Unexpected positive screens that trigger a step-up.")
    within_days: int = Field(default=14, ge=1, le=365, description="Counted over this many days back from now.")


def _every_alert_level() -> list[AlertLevel]:
    return list(ALERT_LEVELS)


class StepUpRules(BaseModel):
    """Any one of these, since the current level began, recommends the rung up."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    safety_alert_levels: list[AlertLevel] = Field(
        default_factory=_every_alert_level,
        description="A safety alert of one of these levels since the level began; empty: alerts do not step up.",
    )
    meaningful_worsening: bool = Field(
        default=True, description="The latest assessment shows a clinically meaningful worsening of an instrument."
    )
    worsening_bands: dict[str, str] = Field(
        default_factory=lambda: {"phq9": "severe"},
        description="Instrument -> band: the latest assessment scores the instrument at or above the band.",
    )
    unexpected_positive_screens: PositiveScreenRule | None = Field(
        default_factory=PositiveScreenRule, description="Repeated unexpected positive drug screens; null: off."
    )
    reliable_deterioration: bool = Field(
        default=True,
        description="The latest score of an instrument (iop.measure.recorded) is a reliable deterioration against "
        "the episode's baseline.",
    )

    @model_validator(mode="after")
    def _known_bands(self) -> StepUpRules:
        for instrument, band in self.worsening_bands.items():
            spec = _known_instrument(instrument)
            if band not in spec.bands:
                raise ValueError(
                    f"worsening_bands.{instrument}: unknown band {band!r} (bands: {', '.join(spec.bands)})"
                )
        return self


class SustainedImprovement(BaseModel):
    """The last ``assessments`` scorings of ``instrument`` are each below ``below_total``, or (when
    ``or_meaningful_improvement``) the latest shows a clinically meaningful improvement."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instrument: str = "phq9"
    assessments: int = Field(default=2, ge=1, le=12)
    below_total: int = Field(default=10, ge=1)
    or_meaningful_improvement: bool = True

    @model_validator(mode="after")
    def _instrument_has_total(self) -> SustainedImprovement:
        spec = _known_instrument(self.instrument)
        if spec.max_total is None:
            raise ValueError(f"instrument: {spec.label} has no total to compare with below_total")
        if self.below_total > spec.max_total + 1:
            raise ValueError(f"below_total: {self.below_total} is above the {spec.label} maximum of {spec.max_total}")
        return self


class StepDownRules(BaseModel):
    """All of these must hold to recommend the rung down (and for a plan to graduate on completion)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_weeks_in_level: dict[CareLevel, int] = Field(
        default_factory=lambda: {CareLevel.IOP: 4, CareLevel.PHP: 2, CareLevel.OP: 4},
        description="Weeks at the current level first; a level not listed has no minimum.",
    )
    min_attendance_rate: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="(attended + late) / sessions recorded since the level began; excused sessions left out.",
    )
    sustained_improvement: SustainedImprovement = Field(default_factory=SustainedImprovement)
    no_safety_alert_days: int = Field(default=14, ge=0, le=365, description="No safety alert in this many days.")
    no_unexpected_positive_days: int = Field(
        default=14, ge=0, le=365, description="No unexpected positive drug screen in this many days."
    )

    @model_validator(mode="after")
    def _weeks_not_negative(self) -> StepDownRules:
        for level, weeks in self.min_weeks_in_level.items():
            if not 0 <= weeks <= 104:
                raise ValueError(f"min_weeks_in_level.{level.value}: {weeks} is not between 0 and 104 weeks")
        return self


class SteppingPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ladder: dict[CareLevel, Rungs] = Field(
        default_factory=_default_ladder, description="Per level, the level a step up or down goes to."
    )
    step_up: StepUpRules = Field(default_factory=StepUpRules)
    step_down: StepDownRules = Field(default_factory=StepDownRules)

    @model_validator(mode="after")
    def _ladder_goes_the_right_way(self) -> SteppingPolicy:
        for level, rungs in self.ladder.items():
            rank = LEVEL_ORDER.index(level)
            if rungs.up is not None and LEVEL_ORDER.index(rungs.up) <= rank:
                raise ValueError(f"ladder.{level.value}.up: {rungs.up.value} is not more intensive than {level.value}")
            if rungs.down is not None and LEVEL_ORDER.index(rungs.down) >= rank:
                raise ValueError(
                    f"ladder.{level.value}.down: {rungs.down.value} is not less intensive than {level.value}"
                )
        return self


# --- decisions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepDecision:
    direction: Direction
    to_level: CareLevel
    rationale: list[Reason]
    refer_out: bool = False
    """``to_level`` is not offered by this program: a referral out."""


def level_period_start(plan: CarePlan) -> datetime:
    """When the plan's current level began."""
    return plan.level_history[-1].since if plan.level_history else plan.assigned_at


def recommend_step(
    plan: CarePlan, policy: SteppingPolicy, now: datetime, offered: Collection[CareLevel] | None = None
) -> StepDecision | None:
    """The move the rules support now, or None.

    With ``offered`` (the levels this program delivers), a reassessment since the level began whose level is
    not offered here (intake recommends inpatient care, say) recommends a referral out, which wins over
    everything else; the step-up triggers that hold join its rationale. Otherwise a step-up trigger wins over
    step-down: while one holds, no step-down is recommended, and with no rung up nothing is. A rung to a level
    not offered is a referral out too; the clinician decides every one. Only an active plan steps.
    """
    if plan.status != "active":
        return None
    rungs = policy.ladder.get(plan.level, Rungs())
    triggers = step_up_triggers(plan, policy, now)
    referred = referral(plan, offered) if offered is not None else None
    if referred is not None:
        to_level, reason = referred
        direction: Direction = "up" if LEVEL_ORDER.index(to_level) > LEVEL_ORDER.index(plan.level) else "down"
        return StepDecision(direction, to_level, [reason, *triggers], refer_out=True)
    elsewhere = offered is not None and rungs.up not in offered
    if triggers:
        return StepDecision("up", rungs.up, triggers, refer_out=elsewhere) if rungs.up is not None else None
    if rungs.down is None:
        return None
    criteria = step_down_criteria(plan, policy, now)
    refer_down = offered is not None and rungs.down not in offered
    return StepDecision("down", rungs.down, criteria, refer_out=refer_down) if criteria is not None else None


def referral(plan: CarePlan, offered: Collection[CareLevel]) -> tuple[CareLevel, Reason] | None:
    """The level the latest assessment since the current level began calls for, when this program does not
    offer it (a referral out), with the reason; None otherwise (a later assessment within reach undoes it)."""
    assessments = [i for i in _inputs_since(plan, level_period_start(plan)) if i.kind == "assessment"]
    latest = assessments[-1] if assessments else None
    if latest is None or latest.recommended_level is None or latest.recommended_level in offered:
        return None
    level = latest.recommended_level.value
    return latest.recommended_level, Reason(
        code="referral_out",
        text=f"The reassessment of {_day(latest.at)} calls for {level}, which this program does not offer: refer "
        f"the patient to {level} care elsewhere (accepting discharges the episode, reason referred out).",
    )


def step_up_triggers(plan: CarePlan, policy: SteppingPolicy, now: datetime) -> list[Reason]:
    """Every step-up trigger that holds since the current level began (empty: none)."""
    rules = policy.step_up
    since = level_period_start(plan)
    inputs = _inputs_since(plan, since)
    alerts = [i for i in inputs if i.kind == "safety_alert" and i.alert_level in rules.safety_alert_levels]
    return [
        *([_safety_alert_reason(alerts, plan.level, since)] if alerts else []),
        *_latest_assessment_reasons(inputs, rules),
        *_positive_screens_reason(inputs, rules.unexpected_positive_screens, now),
        *(_deterioration_reasons(inputs) if rules.reliable_deterioration else []),
    ]


def step_down_criteria(plan: CarePlan, policy: SteppingPolicy, now: datetime) -> list[Reason] | None:
    """The reasons when every step-down criterion holds, else None (also gates graduation on completion).

    Time in level, attendance and sustained improvement read the current level period; the two
    "no recent" criteria look back their number of days from now, whatever the level then.
    """
    rules = policy.step_down
    since = level_period_start(plan)
    reasons: list[Reason] = []
    for check in (_weeks_in_level, _attendance_rate, _sustained_improvement, _no_recent_alert, _no_recent_positive):
        reason = check(plan, rules, since, now)
        if reason is None:
            return None
        reasons.append(reason)
    return reasons


# --- step-up pieces -----------------------------------------------------------------------------


def _safety_alert_reason(alerts: Sequence[CareInput], level: CareLevel, since: datetime) -> Reason:
    latest = alerts[-1]
    kind = "Immediate" if latest.alert_level == "immediate" else "Same-day"
    if len(alerts) == 1:
        text = f"{kind} safety alert raised on {_day(latest.at)}, since {level.value} began on {_day(since)}."
    else:
        text = (
            f"{len(alerts)} safety alerts raised since {level.value} began on {_day(since)} "
            f"(latest: {kind.lower()}, {_day(latest.at)})."
        )
    return Reason(code="safety_alert", text=text)


def _latest_assessment_reasons(inputs: Sequence[CareInput], rules: StepUpRules) -> list[Reason]:
    """At the latest assessment: each meaningful worsening (if the policy counts them), each band at or above
    its step-up band."""
    assessments = [i for i in inputs if i.kind == "assessment"]
    if not assessments:
        return []
    latest = assessments[-1]
    worsened = [change for change in latest.changes if change.meaningful_change == "worsening"]
    reasons = [
        Reason(code="meaningful_worsening", text=_worsening_text(change, latest.at))
        for change in (worsened if rules.meaningful_worsening else [])
    ]
    return [*reasons, *_band_reasons(latest, rules.worsening_bands)]


def _positive_screens_reason(
    inputs: Sequence[CareInput], rule: PositiveScreenRule | None, now: datetime
) -> list[Reason]:
    """Enough unexpected positive drug screens within the rule's days (none without the rule)."""
    if rule is None:
        return []
    window_start = now - timedelta(days=rule.within_days)
    positives = [i for i in inputs if i.kind == "drug_screen" and i.unexpected_positive and i.at >= window_start]
    if len(positives) < rule.count:
        return []
    text = (
        f"{len(positives)} unexpected positive drug screens in the last {rule.within_days} days "
        f"(latest {_day(positives[-1].at)}) meet the step-up threshold of {rule.count}."
    )
    return [Reason(code="repeated_positive_screens", text=text)]


def _deterioration_reasons(inputs: Sequence[CareInput]) -> list[Reason]:
    """Per instrument, its latest score since the level began, when that is a reliable deterioration."""
    latest: dict[str, tuple[CareInput, InstrumentMeasure]] = {}
    for measure in (i for i in inputs if i.kind == "measure"):
        latest.update({scored.instrument: (measure, scored) for scored in measure.measured})
    return [
        Reason(
            code="reliable_deterioration",
            text=f"{_label(scored.instrument)} {scored.score} on {_day(measure.at)} against a baseline of "
            f"{scored.baseline_score}: a reliable deterioration.",
        )
        for measure, scored in latest.values()
        if scored.classification == "reliable_deterioration"
    ]


def _worsening_text(change: InstrumentChange, at: datetime) -> str:
    bands = f"{_band(change.previous_band)} → {_band(change.band)}"
    if change.delta is not None and change.previous_total is not None and change.total is not None:
        moved = f"rose {change.delta} points ({change.previous_total} → {change.total}, {bands})"
    else:
        moved = f"worsened ({bands})"
    return f"{_label(change.instrument)} {moved} at the assessment of {_day(at)}: a clinically meaningful worsening."


def _band_reasons(assessment: CareInput, thresholds: Mapping[str, str]) -> list[Reason]:
    reasons = []
    for result in assessment.instruments:
        threshold = thresholds.get(result.instrument)
        if threshold is None or not _at_or_above(result, threshold):
            continue
        score = f" total {result.total}" if result.total is not None else ""
        reasons.append(
            Reason(
                code="band_at_or_above",
                text=f"{_label(result.instrument)}{score} at the assessment of {_day(assessment.at)} is in the "
                f"{_band(result.band)} band, at or above the {_band(threshold)} step-up band.",
            )
        )
    return reasons


def _at_or_above(result: InstrumentResult, threshold: str) -> bool:
    bands = INSTRUMENT_CATALOG[result.instrument].bands
    return result.band in bands and bands.index(result.band) >= bands.index(threshold)


# --- step-down pieces ---------------------------------------------------------------------------


def _weeks_in_level(plan: CarePlan, rules: StepDownRules, since: datetime, now: datetime) -> Reason | None:
    minimum = rules.min_weeks_in_level.get(plan.level, 0)
    elapsed = now - since
    if elapsed < timedelta(weeks=minimum):
        return None
    weeks = _weeks(max(elapsed.days // 7, 0))
    level = plan.level.value
    if minimum == 0:
        text = f"{weeks} in {level} since {_day(since)}; the policy sets no minimum time in {level}."
    else:
        text = f"{weeks} in {level} since {_day(since)} meets the {minimum}-week minimum."
    return Reason(code="weeks_in_level", text=text)


def _attendance_rate(plan: CarePlan, rules: StepDownRules, since: datetime, _now: datetime) -> Reason | None:
    sessions = plan.schedule.sessions if plan.schedule is not None else []
    statuses = [
        record.status
        for session in sessions
        if session.starts_at >= since and (record := plan.attendance.get(session.session_id)) is not None
    ]
    excused = statuses.count("excused")
    counted = len(statuses) - excused
    present = statuses.count("attended") + statuses.count("late")
    minimum = _percent(rules.min_attendance_rate)
    left_out = f", {excused} excused left out" if excused else ""
    if counted == 0:
        if rules.min_attendance_rate > 0:
            return None
        return Reason(
            code="attendance_rate",
            text=f"No sessions recorded at {plan.level.value} yet{left_out}; the policy sets no attendance minimum.",
        )
    rate = present / counted
    if rate < rules.min_attendance_rate:
        return None
    return Reason(
        code="attendance_rate",
        text=f"Attendance {rate:.0%} ({present} of {counted} recorded sessions{left_out}) meets the {minimum} minimum.",
    )


def _sustained_improvement(plan: CarePlan, rules: StepDownRules, since: datetime, _now: datetime) -> Reason | None:
    rule = rules.sustained_improvement
    scored = _totals(_inputs_since(plan, since), rule.instrument)
    sentences = [*_below_total(scored, rule, plan.level), *_meaningful_improvement(scored, rule)]
    if not sentences:
        return None
    return Reason(code="sustained_improvement", text=" ".join(sentences))


def _totals(inputs: Sequence[CareInput], instrument: str) -> list[tuple[CareInput, int]]:
    """The assessments that scored ``instrument`` with a total, with that total, oldest first."""
    scored = []
    for assessment in inputs:
        if assessment.kind != "assessment":
            continue
        total = next((r.total for r in assessment.instruments if r.instrument == instrument), None)
        if total is not None:
            scored.append((assessment, total))
    return scored


def _below_total(scored: list[tuple[CareInput, int]], rule: SustainedImprovement, level: CareLevel) -> list[str]:
    """The sentence saying the last assessments were all below the rule's total, if they were."""
    recent = scored[-rule.assessments :]
    if len(recent) != rule.assessments or any(total >= rule.below_total for _, total in recent):
        return []
    totals = ", ".join(f"{total} on {_day(a.at)}" for a, total in recent)
    count = "the last assessment" if rule.assessments == 1 else f"each of the last {rule.assessments} assessments"
    return [f"{_label(rule.instrument)} below {rule.below_total} at {count} since {level.value} began ({totals})."]


def _meaningful_improvement(scored: list[tuple[CareInput, int]], rule: SustainedImprovement) -> list[str]:
    """The sentence saying the latest scored assessment showed a meaningful improvement, if the rule counts
    one and it did."""
    if not rule.or_meaningful_improvement or not scored:
        return []
    latest = scored[-1][0]
    change = next((c for c in latest.changes if c.instrument == rule.instrument), None)
    if change is None or change.meaningful_change != "improvement":
        return []
    return [f"{_label(rule.instrument)} {_improvement_text(change)} at the assessment of {_day(latest.at)}."]


def _improvement_text(change: InstrumentChange) -> str:
    bands = f"{_band(change.previous_band)} → {_band(change.band)}"
    if change.delta is not None and change.previous_total is not None and change.total is not None:
        moved = f"fell {-change.delta} points ({change.previous_total} → {change.total}, {bands})"
    else:
        moved = f"improved ({bands})"
    return f"{moved}: a clinically meaningful improvement"


def _no_recent_alert(plan: CarePlan, rules: StepDownRules, _since: datetime, now: datetime) -> Reason | None:
    days = rules.no_safety_alert_days
    start = now - timedelta(days=days)
    if any(i.kind == "safety_alert" and i.at >= start for i in plan.inputs):
        return None
    return Reason(code="no_recent_safety_alert", text=f"No safety alert in the last {days} days.")


def _no_recent_positive(plan: CarePlan, rules: StepDownRules, _since: datetime, now: datetime) -> Reason | None:
    days = rules.no_unexpected_positive_days
    start = now - timedelta(days=days)
    if any(i.kind == "drug_screen" and i.unexpected_positive and i.at >= start for i in plan.inputs):
        return None
    return Reason(code="no_recent_positive_screen", text=f"No unexpected positive drug screen in the last {days} days.")


# --- helpers ------------------------------------------------------------------------------------


def _inputs_since(plan: CarePlan, since: datetime) -> list[CareInput]:
    """The inputs of the current level period, oldest first."""
    return sorted((i for i in plan.inputs if i.at >= since), key=lambda i: i.at)


def _label(instrument: str) -> str:
    spec = INSTRUMENT_CATALOG.get(instrument)
    return spec.label if spec is not None else instrument.upper()


def _band(band: str) -> str:
    return band.replace("_", " ")


def _day(moment: datetime) -> date:
    return moment.date()


def _weeks(count: int) -> str:
    return f"{count} week" if count == 1 else f"{count} weeks"


def _percent(fraction: float) -> str:
    return f"{round(fraction * 100, 1):g}%"
