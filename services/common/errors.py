"""Invalid input is a 422 of one shape everywhere: ``{"detail": [{"loc": [...], "msg": ..., "type": ...}]}``.

Each entry names the field at fault (``loc``) and the rule it breaks (``type``, and ``msg`` in words), never the
value: pydantic's ``input``, ``ctx`` and ``url`` are left out, and so are the words a parser says about the
value (``ctx.error``, ``ctx.reason``: a UUID's or an email address's parse error quotes parts of it). A rule the
API checks by hand is refused with ``invalid_input`` and answered the same way.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic_core.core_schema import ErrorType
from starlette.exceptions import HTTPException as StarletteHTTPException

from .schemas import ERROR_MEANINGS, ErrorOut

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


async def invalid_input_answer(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    detail = [field_error(entry) for entry in error.errors()]
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def http_error_answer(request: Request, error: Exception) -> Response:
    """A body that is not JSON at all (not UTF-8, binary) is bad input like any other: a 422 naming the body;
    so is any 422 raised with words only (never the shape a client parses)."""
    assert isinstance(error, StarletteHTTPException)
    if error.status_code == status.HTTP_400_BAD_REQUEST:
        unreadable = invalid_input(["body"], "the body is not valid JSON", "json_invalid")
        return await invalid_input_answer(request, unreadable)
    if error.status_code == status.HTTP_422_UNPROCESSABLE_CONTENT and isinstance(error.detail, str):
        return await invalid_input_answer(request, invalid_input(["body"], error.detail))
    return await http_exception_handler(request, error)


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


def document_answers(spec: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document as the edge answers: every 422 in the shape above; under /v1, 413 for an operation
    that takes a body and 429 for every one (services/common/edge.py)."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    if "ValidationError" in schemas:
        schemas["ValidationError"] = VALIDATION_ERROR
    for path, operations in spec.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                responses["422"]["description"] = INVALID_INPUT
            if path.startswith("/v1/"):
                schemas.setdefault("ErrorOut", ErrorOut.model_json_schema())
                for code in (413, 429) if "requestBody" in operation else (429,):
                    responses.setdefault(str(code), _error_answer(code))
    return spec


def _error_answer(code: int) -> dict[str, Any]:
    return {
        "description": ERROR_MEANINGS[code],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
    }
