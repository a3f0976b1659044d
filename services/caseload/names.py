"""Names for staff, from intake, for one request only: caseload forwards the caller's own bearer token, so intake
checks the role and audits the person who looked; the names are joined into that answer, never stored or logged."""

from __future__ import annotations

from typing import Any, NoReturn

import httpx
from fastapi import HTTPException, status

from services.common.errors import invalid_input

NAMES_BATCH = 200
"""Episodes per request to intake (its bound)."""


class IntakeDirectory:
    def __init__(self, intake_url: str, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(base_url=intake_url, timeout=10.0, transport=transport)

    async def close(self) -> None:
        await self._client.aclose()

    async def names(self, episode_ids: list[str], authorization: str) -> dict[str, dict[str, Any]]:
        """episode id -> {name, date_of_birth, patient_id} of those intake knows."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(episode_ids), NAMES_BATCH):
            batch = episode_ids[start : start + NAMES_BATCH]
            answer = await self._post("/v1/patients/names", {"episode_ids": batch}, authorization)
            for entry in answer["names"]:
                found[entry["episode_id"]] = {key: entry[key] for key in ("name", "date_of_birth", "patient_id")}
        return found

    async def search(self, body: dict[str, Any], authorization: str) -> dict[str, Any]:
        return await self._post("/v1/patients/search", body, authorization)

    async def _post(self, path: str, body: dict[str, Any], authorization: str) -> dict[str, Any]:
        try:
            response = await self._client.post(path, json=body, headers={"Authorization": authorization})
        except httpx.HTTPError:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "intake is unavailable: no names now") from None
        if response.status_code in (401, 403):
            raise HTTPException(response.status_code, "intake refused to show names to this caller")
        if response.status_code == 422:  # intake names the field: the caller's body is ours, passed on as it was
            return _refused(response)
        if response.status_code != 200:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"intake answered {response.status_code}")
        result: dict[str, Any] = response.json()
        return result


def _refused(response: httpx.Response) -> NoReturn:
    detail = response.json().get("detail") or []
    first = detail[0] if isinstance(detail, list) and detail else {}
    raise invalid_input(tuple(first.get("loc", ("body",))), str(first.get("msg", "invalid")), str(first.get("type",
                        "value_error")))  # fmt: skip
