"""Replaying an episode's stored history through a policy, to see what it would have decided.

The timeline is rebuilt from the plan: attendance (in the order it was recorded), what was learned
(reassessments, safety alerts, drug screens) and the level changes clinicians accepted, as they
happened. After each step the missed-session rules and the step-up / step-down rules are evaluated
under the given policy. The final calendar stands in for every earlier one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from .attendance_rules import triggered_rules
from .model import AttendanceRecord, CareInput, CarePlan, LevelPeriod, RuleFiring
from .policy import CarePolicy
from .stepping import recommend_step


@dataclass(frozen=True, order=True)
class Outcome:
    at: datetime
    kind: Literal["missed_session_action", "recommendation"]
    what: str


def replay(plan: CarePlan, policy: CarePolicy) -> list[Outcome]:
    if plan.schedule is None:
        return []
    start = plan.level_history[0] if plan.level_history else None
    state = plan.model_copy(
        update={
            "status": "active",
            "level": start.level if start else plan.level,
            "level_history": [start] if start else [],
            "attendance": {},
            "inputs": [],
            "recommendations": [],
            "rule_firings": [],
        }
    )
    outcomes: list[Outcome] = []
    last_move: tuple[str, str] | None = None
    for at, _, step in sorted(_timeline(plan), key=lambda entry: (entry[0], entry[1])):
        state = step(state)
        assert state.schedule is not None
        for fired in triggered_rules(state.schedule, state.attendance, state.rule_firings, policy.missed_sessions):
            firing = RuleFiring(rule_code=fired.rule_code, session_id=fired.session_id, at=at)
            state = state.model_copy(update={"rule_firings": [*state.rule_firings, firing]})
            what = f"{fired.rule_code} → {fired.action} at {fired.session_id}"
            outcomes.append(Outcome(at, "missed_session_action", what))
        decision = recommend_step(state, policy.stepping, at, policy.offered_levels)
        move = (decision.direction, decision.to_level.value) if decision else None
        if decision and move != last_move:
            what = f"step {decision.direction} {state.level.value} → {decision.to_level.value}"
            what += " (referral out)" if decision.refer_out else ""
            outcomes.append(Outcome(at, "recommendation", what))
        last_move = move
    return outcomes


Step = Callable[[CarePlan], CarePlan]


def _timeline(plan: CarePlan) -> list[tuple[datetime, int, Step]]:
    """Every recorded change as (when, tie-break order, how it changes the replayed plan)."""

    def attend(sid: str, record: AttendanceRecord) -> Step:
        return lambda state: state.model_copy(update={"attendance": {**state.attendance, sid: record}})

    def learn(learned: CareInput) -> Step:
        return lambda state: state.model_copy(update={"inputs": [*state.inputs, learned]})

    def move(period: LevelPeriod) -> Step:
        return lambda state: state.model_copy(
            update={"level": period.level, "level_history": [*state.level_history, period]}
        )

    return [
        *((record.recorded_at, 0, attend(sid, record)) for sid, record in plan.attendance.items()),
        *((learned.at, 1, learn(learned)) for learned in plan.inputs),
        *((period.since, 2, move(period)) for period in plan.level_history[1:]),
    ]


def compare(plan: CarePlan, current: CarePolicy, candidate: CarePolicy) -> tuple[list[Outcome], list[Outcome]]:
    """(outcomes only the current policy gives, outcomes only the candidate gives)."""
    now, then = set(replay(plan, current)), set(replay(plan, candidate))
    return sorted(now - then), sorted(then - now)
