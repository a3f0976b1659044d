"""The audit trail every service keeps of who read or changed protected records (PII, clinical records, payer data,
worklists), and when: one shape of entry, one way to find entries. Each service stores it in its own database's
``audit_log`` collection and names what an entry is about (``patient_id``, ``episode_id``, …)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.collection import AsyncCollection

from .auth import Principal
from .indexes import Index
from .mongo import Document
from .utc import utc_now

NEWEST_FIRST = [("at", DESCENDING)]
AUDIT_LOG = "audit_log"
STATIC_TOKEN = "token:"  # noqa: S105 - the prefix of a static token's fingerprint, no secret


def audit_indexes(*about: str, person: bool = False) -> tuple[Index, ...]:
    """The indexes of an audit log whose entries are found by ``about`` (``patient_id``: one patient's entries, a
    bounded few whatever else is asked) and, with ``person``, by who read (``subject``, ``username`` or a static
    token's ``token_id``), each newest first as ``audit_entries`` reads them; the last, the whole log newest first."""
    newest = tuple(NEWEST_FIRST)
    by_subject = tuple(
        Index(AUDIT_LOG, ((field, 1), *newest), f"the audit entries of one {field.replace('_id', '')}, newest first",
              scope=f"one {field.replace('_id', '')}'s entries")
        for field in about
    )  # fmt: skip
    by_person = tuple(
        Index(AUDIT_LOG, ((field, 1), *newest), f"the audit entries of one person ({field}), newest first")
        for field in (("subject", "username", "token_id") if person else ())
    )
    whole = Index(AUDIT_LOG, newest, "the audit log newest first, a page at a time (within a time window, when asked)")
    return (*by_subject, *by_person, whole)


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
    ``token:<fingerprint>`` for a static token's entries) and within ``since`` (included) to ``until`` (excluded):
    the newest ``limit`` (of entries of the same moment at its end, whichever the server finds first)."""
    query: Document = {key: value for key, value in about.items() if value}
    if person:
        query["$or"] = [{"subject": person}, {"username": person}]
        if person.startswith(STATIC_TOKEN):  # as ``Principal.who`` names a static token's holder
            query["$or"].append({"token_id": person.removeprefix(STATIC_TOKEN)})
    window = {op: value for op, value in {"$gte": since, "$lt": until}.items() if value}
    if window:
        query["at"] = window
    page = await log.find(query).sort(NEWEST_FIRST).limit(limit).to_list()
    # Entries of one moment (a server keeping milliseconds has many) in the order they were written: by ``_id``,
    # here, since an index on (``at``, ``_id``) is one the MongoDB stand-in cannot keep.
    page.sort(key=lambda entry: (entry["at"], entry["_id"]), reverse=True)
    return [{key: value for key, value in entry.items() if key != "_id"} for entry in page]
