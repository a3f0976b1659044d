"""A service's domain errors answered over HTTP in one place: each service declares ONE ``ErrorTable`` (its domain
error's stable code to an HTTP status, or to the request field at fault), its routers carry it
(``ServiceRouter``), and the app that includes them registers it as the error's exception handler
(``services/common/service.py``). Endpoints call the change and let its refusal through.

- A code with a status is answered ``{"detail": <the error's message>}`` with that status, as an
  ``HTTPException`` of it would be (services/common/errors.py).
- An error that names the request field at fault (its ``field``), or whose code the table gives a field, is a 422
  naming that field with the code as the entry's ``type``, as any other invalid field (``invalid_input``).
- Other errors the table lists by their type answer with their own body (an existing patient: its id).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from .errors import http_error_answer, invalid_input, invalid_input_answer

Loc = tuple[str, ...]


@runtime_checkable
class CodedError(Protocol):
    """A domain error: a stable ``code``, a message for people, and the request field at fault, if one is."""

    code: str
    field: Loc


@dataclass(frozen=True)
class ErrorTable:
    """One service's domain errors as HTTP answers."""

    error: type[Exception]
    """The service's domain error (with ``code`` and ``field``, a ``CodedError``)."""
    statuses: Mapping[str, int]
    """A code to the status it is answered with."""
    fields: Mapping[str, Loc] = field(default_factory=dict)
    """A code to the request field at fault, for an error that does not name one itself."""
    answers: Mapping[type[Exception], Callable[[Any], Response | Exception]] = field(default_factory=dict)
    """Other errors of the service's endpoints, each answered by its own function: a response, or the refusal it is
    answered as (an ``HTTPException``, an invalid field)."""

    def refusal(self, error: CodedError) -> Exception:
        """What the error is answered as: an invalid field, or an ``HTTPException`` of its code's status."""
        at_fault = error.field or self.fields.get(error.code)
        if at_fault:
            return invalid_input(at_fault, str(error), error.code)
        return HTTPException(self.statuses[error.code], str(error))

    async def answer(self, request: Request, error: Exception) -> Response:
        refusal = self._answer_of(error)
        if isinstance(refusal, Response):
            return refusal
        if isinstance(refusal, RequestValidationError):
            return await invalid_input_answer(request, refusal)
        if isinstance(refusal, HTTPException):
            return await http_error_answer(request, refusal)
        raise refusal

    def _answer_of(self, error: Exception) -> Response | Exception:
        for kind, answer in self.answers.items():
            if isinstance(error, kind):
                return answer(error)
        if not isinstance(error, CodedError):  # a domain error without a code: a bug, answered as one (500)
            return error
        return self.refusal(error)

    def install(self, app: FastAPI) -> None:
        handler: Callable[[Request, Exception], Awaitable[Response]] = self.answer
        for kind in (self.error, *self.answers):
            app.add_exception_handler(kind, handler)


class ServiceRouter(APIRouter):
    """An ``APIRouter`` whose endpoints' domain errors are answered by ``error_table`` in the app that includes
    it (``install_error_tables``)."""

    def __init__(self, *, error_table: ErrorTable | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.error_table = error_table


def install_error_tables(app: FastAPI, routers: Iterable[APIRouter]) -> None:
    """Register the error table of each router that has one (once each)."""
    installed: list[ErrorTable] = []
    for router in routers:
        table = router.error_table if isinstance(router, ServiceRouter) else None
        if table is not None and not any(table is done for done in installed):
            table.install(app)
            installed.append(table)
