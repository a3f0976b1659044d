"""Stored times are UTC. ``UtcDatetime`` reads them back as aware datetimes whatever form the
driver returns (an aware datetime with tz_aware=True, or a naive/ISO value from other stores)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, AwareDatetime, BeforeValidator
from pydantic_core import PydanticCustomError


def assume_utc(value: Any) -> Any:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


UtcDatetime = Annotated[AwareDatetime, BeforeValidator(assume_utc)]


def _a_number(value: Any) -> bool:
    """JSON gave a number, or text a number reads from (``1700000000``, ``9.8e-50``): never a date or a time."""
    if not isinstance(value, str):
        return True
    try:
        float(value)
    except ValueError:
        return False
    return True


def _rfc3339_text(value: Any) -> Any:
    if not isinstance(value, datetime) and _a_number(value):
        raise ValueError("must be a date-time with its offset, e.g. 2026-11-23T14:00:00Z (not a number)")
    return value


EARLIEST, LATEST = datetime(1, 1, 2, tzinfo=UTC), datetime(9999, 12, 30, tzinfo=UTC)
TIME_RANGE = {
    "datetime_range": f"a date-time is between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC), a day inside "
    "what the server can count with"
}
"""The rule beyond its schema of an operation that takes a date-time (``services.common.schemas.beyond_schema``):
JSON Schema's ``date-time`` runs from year 0 to 9999 in any offset, past what Python's datetime holds in UTC."""


def _within_range(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc <= LATEST:
        raise PydanticCustomError("datetime_range", TIME_RANGE["datetime_range"])
    return value


Rfc3339 = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text), AfterValidator(_within_range)]
"""A date-time a client gives (a query parameter, a request body's field): RFC 3339 text with its offset, as the
schema says; a number (a Unix time), in JSON or in text, is a 422 as the schema says too, and so is one at the
edges of the calendar (``TIME_RANGE``)."""


def _iso_date_text(value: Any) -> Any:
    if not isinstance(value, date) and _a_number(value):
        raise ValueError("must be a date, e.g. 2026-11-23 (not a number)")
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_date_text)]
"""A day a client gives: ISO 8601 text (``2026-11-23``), as the schema says, never a number."""

IANA_ZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$"
"""The shape of an IANA time-zone name (America/New_York, Europe/London, UTC); whether it exists is checked too."""


_offset = timedelta(0)


def set_clock_offset(seconds: float) -> None:
    """Shift this process's clock (CLOCK_OFFSET_SECONDS): for tests and drills of timers, never in production."""
    global _offset  # noqa: PLW0603 - one clock per process
    _offset = timedelta(seconds=seconds)


def wall_clock() -> datetime:
    """The real time, never shifted: for leases between instances (their clocks must agree)."""
    return datetime.now(UTC)


def utc_now() -> datetime:
    """Now, at the millisecond precision BSON stores, so what a response shows is what was stored."""
    now = datetime.now(UTC) + _offset
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def local_day(moment: datetime, timezone: str) -> date:
    """The calendar day ``moment`` falls on in the IANA zone ``timezone`` (the clinic's, a schedule's)."""
    return moment.astimezone(ZoneInfo(timezone)).date()
