"""Level-of-care recommendation from the six dimension ratings.

The highest-risk dimension sets the level; ratings are never averaged. This is the first,
simple rule; the policy-file engine with instrument escalation replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass

from stepwise_contract import CareLevel, DimensionRatings, Reason

POLICY_VERSION = "simple-1"
LEVEL_BY_RATING = {0: CareLevel.OP, 1: CareLevel.OP, 2: CareLevel.IOP, 3: CareLevel.PHP, 4: CareLevel.RESIDENTIAL}
MEDICAL_DIMENSIONS = ("withdrawal", "biomedical")


@dataclass(frozen=True)
class Recommendation:
    level: CareLevel
    rationale: list[Reason]
    policy_version: str = POLICY_VERSION


def recommend_level(dimensions: DimensionRatings) -> Recommendation:
    ratings = dimensions.model_dump()
    medical_severe = [name for name in MEDICAL_DIMENSIONS if ratings[name] == 4]
    if medical_severe:
        names = " and ".join(medical_severe)
        return Recommendation(
            CareLevel.INPATIENT,
            [Reason(code="medical_severe", text=f"{names.capitalize()} rated 4: medically managed inpatient care.")],
        )
    highest = max(ratings.values())
    drivers = [name for name, rating in ratings.items() if rating == highest]
    level = LEVEL_BY_RATING[highest]
    return Recommendation(
        level,
        [
            Reason(
                code="highest_dimension",
                text=f"Highest dimension rating is {highest} ({', '.join(drivers)}): {level.value}.",
            )
        ],
    )
