"""A store refusing one record's write, answered the same way by every service: never a 500.

- The record would pass MongoDB's 16 MB document limit (``DocumentTooLarge`` from the driver, or the server's
  codes below): 409 "the record is at its size limit: …", naming the kind of record, never its values. An event
  whose effect would do that is set aside with the same reason (``consumer.py``): retrying cannot help.
- Another write error the server calls transient (a primary stepping down, a node shutting down, a write
  conflict, a time limit; or labelled ``RetryableWriteError``): 503 with ``Retry-After``, nothing was changed.
- Any other write error (a document failing validation, …): 409 naming its code; the same write would be
  refused again, so the client is not asked to retry.
- A duplicate key is not handled here: each store decides what one means (an existing record), as before.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from pymongo.errors import DocumentTooLarge, DuplicateKeyError, OperationFailure, WriteError

log = logging.getLogger(__name__)

TOO_LARGE = frozenset({10334, 17419, 17420})
"""MongoDB's codes for a write whose document would pass the 16 MB limit (BSONObjectTooLarge, the result of an
update, an upsert)."""
TRANSIENT = frozenset({50, 91, 112, 189, 262, 10107, 11600, 11602, 13435, 13436})
"""Write errors that say nothing of the record (MaxTimeMSExpired, ShutdownInProgress, WriteConflict,
PrimarySteppedDown, ExceededTimeLimit, NotWritablePrimary, InterruptedAtShutdown,
InterruptedDueToReplStateChange, NotPrimaryNoSecondaryOk, NotPrimaryOrSecondary): try again."""
RECORDS = {"episodes": "episode", "care_plans": "care plan", "notifications": "notification",
           "safety_alerts": "safety alert", "alumni_enrolments": "alumni enrolment"}  # fmt: skip
"""The clinic's word for the record each collection holds."""


class RecordTooLarge(Exception):
    """A write would take a record past the store's document limit; nothing was changed."""

    def __init__(self, record: str) -> None:
        super().__init__(f"the record is at its size limit: the {record} record cannot grow past the store's 16 MB "
                         "document limit; nothing was changed")  # fmt: skip
        self.record = record


def too_large(error: BaseException) -> bool:
    if isinstance(error, RecordTooLarge | DocumentTooLarge):
        return True
    # A findAndModify (a write that reads the record back) is refused as an OperationFailure, an update as a WriteError.
    if isinstance(error, DuplicateKeyError) or not isinstance(error, OperationFailure):
        return False
    return error.code in TOO_LARGE


@contextlib.contextmanager
def writing(collection: str) -> Iterator[None]:
    """A write to one record of ``collection``: its size limit is raised as ``RecordTooLarge`` naming the record."""
    try:
        yield
    except (DocumentTooLarge, OperationFailure) as error:
        if too_large(error):
            raise RecordTooLarge(RECORDS.get(collection, collection.replace("_", " "))) from None
        raise


async def _too_large(_: Request, error: Exception) -> JSONResponse:
    refused = error if isinstance(error, RecordTooLarge) else RecordTooLarge("requested")
    log.warning("request refused: %s", refused)
    return JSONResponse({"detail": str(refused)}, status_code=status.HTTP_409_CONFLICT)


async def _write_refused(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, WriteError)
    if isinstance(error, DuplicateKeyError):
        raise error  # as before: the store that writes decides what an existing key means
    if too_large(error):
        return await _too_large(_, error)
    code = error.code
    log.warning("request refused, the store refused the write (code %s)", code)
    if code in TRANSIENT or error.has_error_label("RetryableWriteError"):
        detail = f"the store could not take the change now (code {code}); nothing was changed, try again"
        return JSONResponse({"detail": detail}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
                            headers={"Retry-After": "5"})  # fmt: skip
    detail = f"the store refused the change (code {code}); nothing was changed"
    return JSONResponse({"detail": detail}, status_code=status.HTTP_409_CONFLICT)


def install_store_errors(app: FastAPI) -> None:
    app.add_exception_handler(RecordTooLarge, _too_large)
    app.add_exception_handler(DocumentTooLarge, _too_large)
    app.add_exception_handler(WriteError, _write_refused)
