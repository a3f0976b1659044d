"""Policy what-if: what a candidate care-plan policy would have decided on the clinic's own history.

    python -m services.care_plan.whatif --policy new.yaml [--episode ID]

Reads the care plans from care_plan's database (MONGODB_URL, CARE_PLAN_DB), replays each episode's
recorded history under the policy in force (CARE_PLAN_POLICY_FILE) and under the candidate, and
prints, per episode, the missed-session actions and step recommendations that would change. It
publishes nothing and writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from services.common.mongo import connect
from services.common.policy_file import PolicyError

from .domain.model import CarePlan
from .domain.policy import load_policy
from .domain.whatif import compare
from .settings import CarePlanSettings
from .store import PLANS


async def run(candidate_file: Path, episode_id: str | None, settings: CarePlanSettings) -> int:
    current, candidate = load_policy(settings.care_plan_policy_file), load_policy(candidate_file)
    client = connect(settings.mongodb_url.get_secret_value(), tls_ca_file=settings.mongodb_tls_ca_file)
    try:
        query = {"_id": episode_id} if episode_id else {}
        plans = [
            CarePlan.model_validate(doc)
            async for doc in client[settings.care_plan_db][PLANS].find(query)
            if "status" in doc
        ]  # not the inputs kept for a plan not made yet
    finally:
        await client.close()
    print(f"policy {current.version} → candidate {candidate.version}, {len(plans)} episode(s)")
    changed = 0
    for plan in sorted(plans, key=lambda p: p.assigned_at):
        only_current, only_candidate = compare(plan, current, candidate)
        if not (only_current or only_candidate):
            continue
        changed += 1
        print(f"\nepisode {plan.episode_id} ({plan.level.value}, {plan.status})")
        for outcome in only_current:
            print(f"  - {outcome.at:%Y-%m-%d %H:%M} {outcome.kind}: {outcome.what} (would no longer happen)")
        for outcome in only_candidate:
            print(f"  + {outcome.at:%Y-%m-%d %H:%M} {outcome.kind}: {outcome.what} (would happen)")
    print(f"\n{changed} of {len(plans)} episode(s) would change")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", type=Path, required=True, help="the candidate care-plan policy (YAML)")
    parser.add_argument("--episode", help="only this episode")
    args = parser.parse_args()
    try:
        return asyncio.run(run(args.policy, args.episode, CarePlanSettings()))
    except PolicyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
