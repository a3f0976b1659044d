"""Asking intake whether a consent allows a family session: intake holds consents and contacts, care_plan
only the answer. Intake not answering is an outage and a refused token a configuration mistake: both raise
``DependencyDown`` (the booking answers 503 saying which, and readiness says it too), never a guess."""

from __future__ import annotations

import httpx

from services.common.auth import bearer
from services.common.dependencies import Dependencies, DependencyDown
from stepwise_contract import SUPPORT_KINDS

from .settings import CarePlanSettings

INTAKE = "intake"
FAMILY_SESSION_SCOPE = "appointments"
"""A family session tells the family member or support about the patient's appointment."""


class IntakeConsents:
    def __init__(
        self, settings: CarePlanSettings, dependencies: Dependencies, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._token_set = bool(settings.intake_token)
        self._client = httpx.AsyncClient(
            base_url=settings.intake_url, headers=bearer(settings.intake_token), timeout=10.0, transport=transport
        )
        self._dependencies = dependencies

    async def family_consent(self, episode_id: str) -> list[str]:
        """The consents in force that name a family member or support and allow telling them of appointments."""
        try:
            try:
                response = await self._client.get(
                    f"/v1/episodes/{episode_id}/recipients", params={"scope": FAMILY_SESSION_SCOPE}
                )
            except httpx.HTTPError as error:
                raise DependencyDown(INTAKE, f"unreachable ({type(error).__name__})") from None
            if response.status_code in (401, 403):
                setting = "INTAKE_TOKEN is empty: set it" if not self._token_set else "set INTAKE_TOKEN"
                raise DependencyDown(
                    INTAKE,
                    f"refused the service token ({response.status_code}): {setting} to a token that intake's "
                    "API_TOKENS gives the care_plan role",
                    misconfigured=True,
                )
            if response.status_code >= 500:
                raise DependencyDown(INTAKE, f"answered {response.status_code}")
        except DependencyDown as error:
            self._dependencies.failed(error)
            raise
        self._dependencies.ok(INTAKE)
        if response.status_code == 404:
            return []
        return [entry["consent_id"] for entry in response.json() if entry["recipient_kind"] in SUPPORT_KINDS]

    async def close(self) -> None:
        await self._client.aclose()
