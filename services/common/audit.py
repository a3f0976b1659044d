"""The audit trail every service keeps of who read or changed protected records (PII, clinical records, payer data,
worklists), and when: one shape of entry, one way to find entries. Each service stores it in its own database's
``audit_log`` collection and names what an entry is about (``patient_id``, ``episode_id``, …)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.collection import AsyncCollection

from .auth import Principal
from .mongo import Document
from .utc import utc_now

NEWEST_FIRST = [("at", DESCENDING), ("_id", DESCENDING)]
STATIC_TOKEN = "token:"  # noqa: S105 - the prefix of a static token's fingerprint, no secret


def audit_entry(by: Principal, action: str, at: datetime | None = None, **about: Any) -> Document:
    """Who (the token's role, fingerprint and person), what and when; ``about``: what it concerns."""
    return {"at": at or utc_now(), "role": by.role.value, "token_id": by.token_id, "subject": by.subject,
            "username": by.username, "action": action, **about}  # fmt: skip


async def audit_entries(
    log: AsyncCollection[Document],
    about: dict[str, str | None],
    *,
    person: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int,
) -> list[Document]:
    """Entries newest first, matching each of ``about`` that is given, by ``person`` (their subject or username, or
    ``token:<fingerprint>`` for a static token's entries) and within ``since`` (included) to ``until`` (excluded)."""
    query: Document = {key: value for key, value in about.items() if value}
    if person:
        query["$or"] = [{"subject": person}, {"username": person}]
        if person.startswith(STATIC_TOKEN):  # as ``Principal.who`` names a static token's holder
            query["$or"].append({"token_id": person.removeprefix(STATIC_TOKEN)})
    window = {op: value for op, value in {"$gte": since, "$lt": until}.items() if value}
    if window:
        query["at"] = window
    return [entry async for entry in log.find(query, {"_id": 0}).sort(NEWEST_FIRST).limit(limit)]
