"""Asking intake whether a consent allows a family session: intake holds consents and contacts, care_plan
only the answer. Intake not answering is an outage and a refused token a configuration mistake: both raise
``DependencyDown`` (the booking answers 503 saying which, and readiness says it too), never a guess."""

from __future__ import annotations

import httpx

from services.common.auth import Role
from services.common.dependencies import Dependencies
from services.common.intake_client import IntakeClient, path
from stepwise_contract import SUPPORT_KINDS

from .settings import CarePlanSettings

FAMILY_SESSION_SCOPE = "appointments"
"""A family session tells the family member or support about the patient's appointment."""


class IntakeConsents:
    def __init__(
        self, settings: CarePlanSettings, dependencies: Dependencies, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._intake = IntakeClient(
            settings.intake_url, settings.intake_token.get_secret_value(), Role.CARE_PLAN, dependencies, transport
        )

    async def family_consent(self, episode_id: str) -> list[str]:
        """The consents in force that name a family member or support and allow telling them of appointments."""
        response = await self._intake.get(path("episodes", episode_id, "recipients"), {"scope": FAMILY_SESSION_SCOPE})
        if response.status_code == 404:
            return []
        return [entry["consent_id"] for entry in response.json() if entry["recipient_kind"] in SUPPORT_KINDS]

    async def close(self) -> None:
        await self._intake.close()
