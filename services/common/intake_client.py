"""How a service asks intake (contact data, consents) with its own service token.

Intake not answering (or answering 5xx) is an outage and a refused token a configuration mistake: both raise
``DependencyDown`` (what asked waits, and readiness says why), never a guess; an answer clears the problem.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from .auth import Role, bearer
from .dependencies import Dependencies, DependencyDown

INTAKE = "intake"


def path(*segments: str) -> str:
    """``/v1/…`` from its segments, each escaped: an id is never read as a path or as a bad URL."""
    return "/v1/" + "/".join(quote(segment, safe="") for segment in segments)


class IntakeClient:
    def __init__(
        self,
        url: str,
        token: str,
        role: Role,
        dependencies: Dependencies,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._token_set, self._role = bool(token), role
        self._client = httpx.AsyncClient(base_url=url, headers=bearer(token), timeout=10.0, transport=transport)
        self._dependencies = dependencies

    async def get(self, path: str, params: httpx.QueryParams | dict[str, str] | None = None) -> httpx.Response:
        """Intake's answer below 500 (404 included: the caller decides what it means)."""
        return await self._request("GET", path, params=params)

    async def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """Intake's answer below 500 to a JSON POST, as ``get``."""
        return await self._request("POST", path, json=body)

    async def _request(self, method: str, path: str, **request: Any) -> httpx.Response:
        try:
            try:
                response = await self._client.request(method, path, **request)
            except httpx.HTTPError as error:
                raise DependencyDown(INTAKE, f"unreachable ({type(error).__name__})") from None
            if response.status_code in (401, 403):
                setting = "INTAKE_TOKEN is empty: set it" if not self._token_set else "set INTAKE_TOKEN"
                raise DependencyDown(
                    INTAKE,
                    f"refused the service token ({response.status_code}): {setting} to a "
                    f"token that intake's API_TOKENS gives the {self._role} role",
                    misconfigured=True,
                )
            if response.status_code >= 500:
                raise DependencyDown(INTAKE, f"answered {response.status_code}")
        except DependencyDown as error:
            self._dependencies.failed(error)
            raise
        self._dependencies.ok(INTAKE)
        return response

    async def close(self) -> None:
        await self._client.aclose()
