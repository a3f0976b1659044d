"""What every service's request and response bodies share: unknown fields and query parameters refused, the
rules a JSON Schema can state said in the OpenAPI documents (and those it cannot, named there), and the
examples the documents show."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, EmailStr, GetCoreSchemaHandler, GetJsonSchemaHandler, WrapValidator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, ValidationError, core_schema


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


def union_examples(*examples: dict[str, Any]) -> ConfigDict:
    """A request body of several shapes (a ``RootModel`` over a discriminated union of ``RequestBody`` models,
    each refusing fields it does not declare): its examples."""
    return ConfigDict(json_schema_extra={"examples": list(examples)})


READS_ITS_FORM = "x-reads-its-form"
"""``openapi_extra`` key of an endpoint that reads its body itself (an HTML form, ``{READS_ITS_FORM: True}``)."""
TAKES_ANY_QUERY = "x-takes-any-query"
"""``openapi_extra`` key of an endpoint whose query another party writes (an OpenID Connect provider's answer to a
sign-in adds ``session_state``, ``iss`` … of its own): a parameter it does not declare is not refused."""


async def refuse_undeclared_body(request: Request) -> None:
    """An endpoint that takes no body refuses one with fields, as a body refuses a field it does not declare
    (an empty body, ``{}`` or ``null`` is no body). Names the fields, never their values."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or route.body_field is not None:
        return
    if (route.openapi_extra or {}).get(READS_ITS_FORM):
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


async def refuse_undeclared_query(request: Request) -> None:
    """A query parameter the endpoint does not declare is a 422 naming it, as an undeclared body field is: a
    misspelt filter (``?stauts=open``) must not silently list everything."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or (route.openapi_extra or {}).get(TAKES_ANY_QUERY):
        return
    declared = _declared_query(route.dependant)
    given = request.query_params
    errors = [{"type": "extra_forbidden", "loc": ("query", name), "msg": "Extra inputs are not permitted"}
              for name in sorted(set(given) - set(declared))]  # fmt: skip
    repeated = [name for name in sorted(set(given)) if not declared.get(name, True) and len(given.getlist(name)) > 1]
    errors += [{"type": "given_twice", "loc": ("query", name), "msg": "give this parameter once: it takes one value"}
               for name in repeated]  # fmt: skip
    if errors:
        raise RequestValidationError(errors)


def _declared_query(dependant: Dependant) -> dict[str, bool]:
    """The query parameters an endpoint takes, each with whether it takes several values (``?scope=a&scope=b``)."""
    names = {param.alias: _takes_several(param.field_info.annotation) for param in dependant.query_params}
    for dependency in dependant.dependencies:
        names |= _declared_query(dependency)
    return names


def _takes_several(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin in (Union, UnionType):
        return any(_takes_several(argument) for argument in get_args(annotation))
    return origin in (list, tuple, set, frozenset) or annotation in (list, tuple, set, frozenset)


@dataclass(frozen=True)
class OnlyWith:
    """A field that one shape of a discriminated body takes and this shape does not: absent or null here, and
    anything else is a 422 of type ``rule`` naming the field (``notice_given_at`` on a missed session). The
    document shows it as ``null``, saying ``message``, so the rule is in the schema.

    ``notice_given_at: Annotated[None, OnlyWith("notice_without_excuse", "…")] = None``"""

    rule: str
    message: str

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_before_validator_function(self._refuse, handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {**handler(schema), "description": f"{self.message} (`{self.rule}`)"}

    def _refuse(self, value: object) -> None:
        if value is not None:
            raise PydanticCustomError(self.rule, self.message)


def _an_email_address(value: object, handler: Any) -> Any:
    try:
        return handler(value)
    except ValidationError:
        if not isinstance(value, str):
            raise
        raise PydanticCustomError("email_address", "not an email address that can receive mail") from None


EmailAddress = Annotated[EmailStr, WrapValidator(_an_email_address)]
"""An email address in a request, as ``email-validator`` reads one: stricter than JSON Schema's ``email`` format
(a special-use domain such as ``.test`` or ``.local``, a quoted local part), so a 422 of type ``email_address``."""
EMAIL_RULE = {"email_address": "an email address can receive mail: no special-use domain (.test, .local, …)"}
"""The rule beyond its schema of an operation that takes an email address (``beyond_schema``)."""

WHOLE_NUMBERS = {
    "int_type": "a whole number is written as one: `2`, not `2.0` (which JSON Schema counts as an integer too)"
}
"""The rule beyond its schema of an operation whose body takes whole numbers (clinical ones: ratings, answers,
minutes, weeks): they are ``StrictInt``, so ``"2"``, ``true`` and ``2.0`` are 422s (``int_type``)."""

RULES = "x-rules"
"""Where an operation in the OpenAPI document names its rules beyond the schema."""


def beyond_schema(**rules: str) -> dict[str, Any]:
    """``openapi_extra`` of an operation whose request has rules a JSON Schema cannot state: those that depend on
    the moment it is sent (a date of birth in the past) or on the record it changes (the plan's level), and
    checks no schema keyword makes (a phone number's length for its region). Each is a 422 whose entry has that
    ``type``; the document lists them under ``x-rules`` and in the 422's description."""
    return {RULES: rules}


COMPONENT = "x-component"
"""A field schema marked to be a named component of the OpenAPI document (see ``component``)."""


def component(name: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """``json_schema_extra`` of a field whose schema is the document's component ``name``: ``schema`` there,
    unless the service's app gives its own for ``name`` (what its policy fixes at start, such as the session
    kinds), and a reference at every use. A model's own JSON schema keeps ``schema`` inline."""
    return {**schema, COMPONENT: name}


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
