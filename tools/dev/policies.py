"""Policies for test stacks, tools and benchmarks: the default care-plan policy with room in every group, and the
default notifications policy with same-day safety alerts due a day after they are raised.

A benchmark or a test suite admits far more patients than one clinic's group holds; with the default
capacities most of them would wait for a place, which is not what they measure or test. And by the default
notifications policy a same-day alert raised in the evening or at a weekend goes to the on-call route at once:
what a run sees would depend on when it runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from services.care_plan.domain.policy import DEFAULT_POLICY_FILE
from services.notifications.domain.policy import DEFAULT_POLICY_FILE as NOTIFICATIONS_POLICY_FILE
from stepwise_contract import PROGRAMS


def roomy_care_plan_policy(folder: Path, extra_groups: Sequence[dict[str, Any]] = ()) -> Path:
    """The default care-plan policy without group capacities, plus ``extra_groups``, written into ``folder``.

    An extra group replaces the default group of its id; the default groups take the programs no extra group
    names (one left with none is dropped), so an extra group of a level and track is the only one for its
    programs."""
    policy = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    replaced = {g["group_id"] for g in extra_groups}
    taken = {(g["level"], g["track"], program) for g in extra_groups for program in g.get("programs", ())}
    groups = []
    for group in policy["groups"]:
        group.pop("capacity", None)
        programs = [p for p in group.get("programs", PROGRAMS) if (group["level"], group["track"], p) not in taken]
        if programs and group["group_id"] not in replaced:
            groups.append(group | {"programs": programs})
    policy["groups"] = groups + list(extra_groups)
    path = folder / "care-plan-policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


def unhurried_notifications_policy(folder: Path) -> Path:
    """The default notifications policy, but a same-day safety alert is due 24 hours after it is raised whatever the
    day and hour (the clinic never open, 24 hours to acknowledge while it is closed), written into ``folder``. Tests
    of the deadline set their own; immediate alerts follow SAFETY_ACK_SECONDS."""
    policy = yaml.safe_load(NOTIFICATIONS_POLICY_FILE.read_text())
    policy["safety_alerts"]["same_day"] |= {"hours": {}, "closures": [], "when_closed_within_minutes": 24 * 60}
    path = folder / "notifications-policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path
