"""Invalid input is a 422 of one shape everywhere: ``{"detail": [{"loc": [...], "msg": ..., "type": ...}]}``.

Each entry names the field at fault (``loc``) and the rule it breaks (``type``, and ``msg`` in words), never the
value: pydantic's ``input``, ``ctx`` and ``url`` are left out, and so are the words a parser says about the
value (``ctx.error``, ``ctx.reason``: a UUID's or an email address's parse error quotes parts of it). A rule the
API checks by hand is refused with ``invalid_input`` and answered the same way.

A body that is one of several shapes told apart by a field (a discriminated union: an attendance by its
``status``) is answered as one model would be: ``loc`` names the field as the client sent it (pydantic's variant
tag left out), and a missing or unknown tag is that field's error.

A method the path does not take is a 405 whose ``Allow`` lists every method the path takes (Starlette's lists
only those of the first route it tried).
"""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import RootModel
from pydantic_core.core_schema import ErrorType
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from .schemas import COMPONENT, ERROR_MEANINGS, RULES, ErrorOut

PYDANTIC_RULES = frozenset(typing.get_args(ErrorType)) - {"value_error", "assertion_error"}
"""pydantic's own rules, whose messages never quote the value; a validator's own words (``value_error``, a
custom type) might."""
INVALID_INPUT = (
    "Invalid input: each entry of `detail` names a field at fault (`loc`) and the rule it breaks (`type`; `msg` "
    "in words), never the value given."
)


def invalid_input(loc: Sequence[str | int], msg: str, rule: str = "value_error") -> RequestValidationError:
    """A rule on one request field, checked by hand: raise it, and it is answered as any other invalid field
    (``loc`` as FastAPI writes it, e.g. ``("body", "minutes")``; ``rule`` the error type, e.g. a stable code)."""
    return RequestValidationError([{"loc": tuple(loc), "msg": msg, "type": rule}])


def field_error(error: Mapping[str, Any]) -> dict[str, Any]:
    """One entry of a 422: the field and the rule, without the value."""
    msg = str(error.get("msg", ""))
    context = error.get("ctx") or {}
    for key in ("error", "reason"):  # a parser's words about the value: they may quote it
        said = context.get(key)
        if isinstance(said, str) and said and said in msg:
            msg = msg.replace(said, "").rstrip(" ,:;")
    value = error.get("input")
    if error["type"] not in PYDANTIC_RULES and isinstance(value, str) and len(value) >= 3 and value in msg:
        msg = msg.replace(value, "…")
    return {"loc": list(error["loc"]), "msg": msg, "type": error["type"]}


async def invalid_input_answer(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    tag = _body_discriminator(request)
    entries = [as_sent(entry, error.body, tag) for entry in error.errors()] if tag else error.errors()
    detail = [field_error(entry) for entry in entries]
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def _body_discriminator(request: Request) -> str | None:
    """The field that tells the shapes of this endpoint's body apart, if its body is a discriminated union."""
    route = request.scope.get("route")
    body = route.body_field if isinstance(route, APIRoute) else None
    if body is None:
        return None
    if isinstance(body.field_info.discriminator, str):
        return body.field_info.discriminator
    model = body.field_info.annotation
    if isinstance(model, type) and issubclass(model, RootModel):
        discriminator = model.model_fields["root"].discriminator
        return discriminator if isinstance(discriminator, str) else None
    return None


def as_sent(error: Mapping[str, Any], body: Any, tag: str) -> Mapping[str, Any]:
    """An error of a discriminated body as the client sent it: ``("body", "missed", "minutes")`` is
    ``("body", "minutes")``; a missing tag is that field missing, an unknown one that field's literal error."""
    loc = tuple(error["loc"])
    if error["type"] == "union_tag_not_found":
        return {"loc": (*loc, tag), "msg": "Field required", "type": "missing"}
    if error["type"] == "union_tag_invalid":
        expected = " or ".join(str((error.get("ctx") or {}).get("expected_tags", "")).rsplit(", ", 1))
        return {"loc": (*loc, tag), "msg": f"Input should be {expected}", "type": "literal_error"}
    sent = body.get(tag) if isinstance(body, dict) else None
    if not (loc[:1] == ("body",) and len(loc) > 1 and isinstance(sent, str) and loc[1] == sent):
        return error
    if error["type"] == "missing" and len(loc) == 3:  # a field this shape requires: say which shape
        return {**error, "loc": (loc[0], loc[2]), "msg": f"{loc[2]} is required when {tag} is {sent}"}
    return {**error, "loc": (loc[0], *loc[2:])}


async def http_error_answer(request: Request, error: Exception) -> Response:
    """A body that is not JSON at all (not UTF-8, binary) is bad input like any other: a 422 naming the body;
    so is any 422 raised with words only (never the shape a client parses)."""
    assert isinstance(error, StarletteHTTPException)
    if error.status_code == status.HTTP_400_BAD_REQUEST:
        unreadable = invalid_input(["body"], "the body is not valid JSON", "json_invalid")
        return await invalid_input_answer(request, unreadable)
    if error.status_code == status.HTTP_422_UNPROCESSABLE_CONTENT and isinstance(error.detail, str):
        return await invalid_input_answer(request, invalid_input(["body"], error.detail))
    if error.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        error = StarletteHTTPException(error.status_code, error.detail, {"Allow": ", ".join(allowed_methods(request))})
    return await http_exception_handler(request, error)


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app takes at this request's path (each asked of the app's routes as the
    router asks them, included routers too)."""
    routes = request.app.router.routes
    return [
        method
        for method in HTTP_METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    ]


def install_error_answers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, invalid_input_answer)
    app.add_exception_handler(StarletteHTTPException, http_error_answer)


VALIDATION_ERROR = {
    "title": "ValidationError",
    "type": "object",
    "properties": {
        "loc": {"title": "Location", "type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
        "msg": {"title": "Message", "type": "string"},
        "type": {"title": "Error Type", "type": "string"},
    },
    "required": ["loc", "msg", "type"],
    "additionalProperties": False,
}


def document_answers(spec: dict[str, Any], components: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The OpenAPI document as the edge answers: every 422 in the shape above, with the operation's rules beyond
    the schema (``x-rules``) in its description; under /v1, 413 for an operation that takes a body and 429 for
    every one (services/common/edge.py). Fields marked as components (``services.common.schemas.component``)
    refer to one, the app's own where ``components`` has it (what its policy fixes at start)."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    if "ValidationError" in schemas:
        schemas["ValidationError"] = VALIDATION_ERROR
    for path, operations in spec.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                responses["422"]["description"] = INVALID_INPUT + _rules_beyond_schema(operation.get(RULES, {}))
            if path.startswith("/v1/"):
                schemas.setdefault("ErrorOut", ErrorOut.model_json_schema())
                for code in (413, 429) if "requestBody" in operation else (429,):
                    responses.setdefault(str(code), _error_answer(code))
    named: dict[str, Any] = {}
    spec = _refer_to_components(spec, named)
    for name, schema in sorted(named.items()):
        spec["components"]["schemas"][name] = dict((components or {}).get(name, schema))
    return spec


def _rules_beyond_schema(rules: Mapping[str, str]) -> str:
    if not rules:
        return ""
    listed = "; ".join(f"`{rule}`: {meaning}" for rule, meaning in rules.items())
    return (
        " Rules the schema cannot state (on the moment, on the record, or beyond its keywords), each by the type "
        f"of its entries: {listed}."
    )


PER_USE = frozenset({"title", "description", "default", "examples"})
"""What a field says of itself next to a reference to its component."""


def _refer_to_components(schema: Any, named: dict[str, Any]) -> Any:
    if isinstance(schema, list):
        return [_refer_to_components(item, named) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if COMPONENT in schema:
        name = schema[COMPONENT]
        named[name] = {key: value for key, value in schema.items() if key not in PER_USE and key != COMPONENT}
        return {"$ref": f"#/components/schemas/{name}"} | {key: schema[key] for key in PER_USE if key in schema}
    return {key: _refer_to_components(value, named) for key, value in schema.items()}


def _error_answer(code: int) -> dict[str, Any]:
    return {
        "description": ERROR_MEANINGS[code],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
    }
