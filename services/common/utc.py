"""Stored times are UTC. ``UtcDatetime`` reads them back as aware datetimes whatever form the
driver returns (an aware datetime with tz_aware=True, or a naive/ISO value from other stores)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator


def assume_utc(value: Any) -> Any:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


UtcDatetime = Annotated[AwareDatetime, BeforeValidator(assume_utc)]


def utc_now() -> datetime:
    """Now, at the millisecond precision BSON stores, so what a response shows is what was stored."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
