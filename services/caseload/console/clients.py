"""The services the console acts through, called with the signed-in person's own token (their audits name them):
intake, care_plan, notifications and authorizations. An answer that is not a success comes
back as words for the page, never as an exception."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Answer:
    ok: bool
    body: Any = None
    """The answer's JSON; on a refusal too (a 422's ``detail`` names each field at fault)."""
    error: str | None = None
    """What went wrong, in words for the page (the service's own words where it gave some)."""
    down: str | None = None
    """The service that could not be reached (the page says which, and keeps what was typed)."""
    status: int | None = None
    """The service's HTTP status when it refused."""


SERVICES = ("intake", "care_plan", "notifications", "authorizations")


class Services:
    def __init__(self, urls: dict[str, str], transport: httpx.AsyncBaseTransport | None = None):
        self._clients = {
            service: httpx.AsyncClient(base_url=urls[service], timeout=10.0, transport=transport)
            for service in SERVICES
        }

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()

    async def get(self, service: str, path: str, authorization: str, params: dict[str, Any] | None = None) -> Answer:
        return await self.call("GET", service, path, authorization, params=params)

    async def post(
        self, service: str, path: str, authorization: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Answer:
        return await self.call("POST", service, path, authorization, body, headers=headers)

    async def put(self, service: str, path: str, authorization: str, body: Any = None) -> Answer:
        return await self.call("PUT", service, path, authorization, body)

    async def call(
        self, method: str, service: str, path: str, authorization: str, body: Any = None,
        params: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
    ) -> Answer:  # fmt: skip
        words = service.replace("_", " ")
        try:
            response = await self._clients[service].request(
                method, path, json=body, params=params, headers={**(headers or {}), "Authorization": authorization}
            )
        except httpx.HTTPError:
            nothing = "nothing was recorded" if method != "GET" else "this part cannot be shown now"
            return Answer(False, error=f"{words} cannot be reached: {nothing}", down=service)
        if response.is_success:
            return Answer(True, response.json() if response.content else None)
        words = f"{words} refused: {in_words(response)}"
        return Answer(False, body=_json(response), error=words, status=response.status_code)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


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
