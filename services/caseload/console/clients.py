"""The services the console acts through, called with the signed-in person's own token (their audits name them):
care_plan records attendance, notifications acknowledges safety alerts. An answer that is not a success comes
back as words for the page, never as an exception."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Answer:
    ok: bool
    body: Any = None
    error: str | None = None
    """What went wrong, in words for the page (the service's own words where it gave some)."""


class Services:
    def __init__(self, care_plan_url: str, notifications_url: str, transport: httpx.AsyncBaseTransport | None = None):
        self._clients = {
            "care_plan": httpx.AsyncClient(base_url=care_plan_url, timeout=10.0, transport=transport),
            "notifications": httpx.AsyncClient(base_url=notifications_url, timeout=10.0, transport=transport),
        }

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()

    async def post(self, service: str, path: str, authorization: str, body: Any = None) -> Answer:
        try:
            response = await self._clients[service].post(path, json=body, headers={"Authorization": authorization})
        except httpx.HTTPError:
            return Answer(False, error=f"{service.replace('_', ' ')} cannot be reached: nothing was recorded")
        if response.is_success:
            return Answer(True, response.json())
        return Answer(False, error=f"{service.replace('_', ' ')} refused: {in_words(response)}")


def in_words(response: httpx.Response) -> str:
    """A service's error answer as a sentence: its ``detail`` (a string, or the first field error's message)."""
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        where = ".".join(str(part) for part in detail[0].get("loc", ())[1:])
        return f"{where}: {detail[0].get('msg', 'invalid')}" if where else str(detail[0].get("msg", "invalid"))
    if isinstance(detail, str):
        return detail
    return f"it answered {response.status_code}"
