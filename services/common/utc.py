"""Stored times are UTC. ``UtcDatetime`` reads them back as aware datetimes whatever form the
driver returns (an aware datetime with tz_aware=True, or a naive/ISO value from other stores)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator


def assume_utc(value: Any) -> Any:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


UtcDatetime = Annotated[AwareDatetime, BeforeValidator(assume_utc)]


def _rfc3339_text(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lstrip("-+").replace(".", "", 1).isdigit():
        raise ValueError("must be a date-time with its offset, e.g. 2026-11-23T14:00:00Z (not a number)")
    return value


Rfc3339 = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text)]
"""A date-time a client gives (a query parameter): ISO 8601 / RFC 3339 with its offset, as the schema says."""

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
