"""What every service's request and response bodies share: unknown fields refused, and the examples the
OpenAPI documents show."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict


class RequestBody(BaseModel):
    """What every request body, and every object inside one, is built on: a field not declared is a 422 naming
    it (a misspelt ``reason`` must not be dropped silently). Event schemas ignore unknown fields on purpose (a
    newer producer may add some); a request has one reader, which says what it takes.

    A model that also takes a contract part lists that part first, so this configuration wins:
    ``class SheetLineIn(SheetEntry, RequestBody)``."""

    model_config = ConfigDict(extra="forbid")


def request_examples(*examples: dict[str, Any]) -> ConfigDict:
    """A request body's configuration: its examples, and no field beyond those declared."""
    return ConfigDict(extra="forbid", json_schema_extra={"examples": list(examples)})


async def refuse_undeclared_body(request: Request) -> None:
    """An endpoint that takes no body refuses one with fields, as a body refuses a field it does not declare
    (an empty body, ``{}`` or ``null`` is no body). Names the fields, never their values."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or route.body_field is not None:
        return
    raw = await request.body()
    if not raw.strip():
        return
    try:
        body = json.loads(raw)
    except ValueError:
        body = ...
    if body in ({}, None):
        return
    if isinstance(body, dict):
        errors = [{"type": "extra_forbidden", "loc": ("body", str(name)), "msg": "Extra inputs are not permitted"}
                  for name in body]  # fmt: skip
    else:
        errors = [{"type": "extra_forbidden", "loc": ("body",), "msg": "this endpoint takes no body"}]
    raise RequestValidationError(errors)


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
