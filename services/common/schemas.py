"""What every service's request and response bodies share: the examples the OpenAPI documents show."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


def request_examples(*examples: dict[str, Any]) -> ConfigDict:
    """A request body: its examples, and no field beyond those declared (a misspelt field is a 422)."""
    return ConfigDict(extra="forbid", json_schema_extra={"examples": list(examples)})


def response_example(example: dict[str, Any]) -> ConfigDict:
    """A response: the example the OpenAPI document shows."""
    return ConfigDict(json_schema_extra={"examples": [example]})


class ErrorOut(BaseModel):
    """Why a request was refused (401, 403, 404, 409, 410, 413, 429, 503); a 422 names the fields at fault instead."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"detail": "episode not found"}]})

    detail: str


ERROR_MEANINGS = {
    401: "No valid bearer token (`WWW-Authenticate: Bearer`).",
    403: "The token's role may not do this.",
    404: "No such record.",
    409: "The record is not in a state that allows this.",
    410: "It was there, and is no longer (a revoked or expired consent).",
    413: "The body is larger than the service takes (MAX_BODY_BYTES); it was not read.",
    429: "Too many refused tokens from this client in the last minute: try again after `Retry-After` seconds.",
    503: "A dependency is down: try again later; nothing was changed.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, each with its body schema and meaning."""
    return {code: {"model": ErrorOut, "description": ERROR_MEANINGS[code]} for code in codes}


V1_ERRORS = errors(401, 403, 503)
"""Every endpoint under /v1 needs a token of an allowed role, and the service's store (503 while it is down)."""
