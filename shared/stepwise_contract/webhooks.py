"""Signed webhooks: how Stepwise signs a delivery and how a receiver verifies it.

Headers of every webhook request:
- ``Stepwise-Timestamp``: Unix seconds when it was signed;
- ``Stepwise-Signature``: ``v1=`` + hex HMAC-SHA256 over ``"{timestamp}.{raw body}"`` with the shared secret;
- ``Stepwise-Notification-Id``: the same id on a retry, so a receiver can drop a repeat.

A receiver recomputes the HMAC over the raw body bytes it received (before any JSON parsing), compares
in constant time, and refuses a timestamp more than five minutes away from its clock (replays).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

TIMESTAMP_HEADER = "Stepwise-Timestamp"
SIGNATURE_HEADER = "Stepwise-Signature"
ID_HEADER = "Stepwise-Notification-Id"
TOLERANCE_SECONDS = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def signed_headers(secret: str, timestamp: int, body: bytes, notification_id: str) -> dict[str, str]:
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
        ID_HEADER: notification_id,
        "Content-Type": "application/json",
    }


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> bool:
    """True when the request was signed with ``secret`` within the tolerance of ``now`` (Unix seconds)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        timestamp = int(lowered[TIMESTAMP_HEADER.lower()])
        presented = lowered[SIGNATURE_HEADER.lower()]
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > TOLERANCE_SECONDS:
        return False
    return hmac.compare_digest(presented, signature(secret, timestamp, body))
