"""Who leads an episode's care (pure)."""

from __future__ import annotations

from datetime import datetime

from stepwise_contract import CareTeamChanged

from .model import CarePlan, CarePlanError, CareTeam


def assign_primary_clinician(
    plan: CarePlan, subject: str, display_name: str, now: datetime
) -> tuple[CarePlan, list[CareTeamChanged]]:
    """The plan with ``subject`` as its primary clinician, and ``iop.care_team.changed`` when the clinician changed
    (a new display name alone publishes nothing: events never carry names). An ended episode keeps its team."""
    if plan.status not in ("active", "referred_out"):
        raise CarePlanError("plan_not_active", f"the care plan is {plan.status}")
    same_clinician = plan.care_team is not None and plan.care_team.primary_clinician == subject
    if same_clinician and plan.care_team is not None and plan.care_team.display_name == display_name:
        return plan, []
    team = CareTeam(primary_clinician=subject, display_name=display_name, changed_at=now)
    updated = plan.model_copy(update={"care_team": team})
    if same_clinician:
        return updated, []
    return updated, [CareTeamChanged(episode_id=plan.episode_id, primary_clinician=subject, changed_at=now)]
