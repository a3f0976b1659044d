"""A clinic's history for `make bench`: tens of thousands of episodes stored straight into the services' databases,
so that throughput and each stage's lag can be compared with the empty databases' in the same run.

The history is made of the documents the services themselves wrote for a few real episodes (the templates: patients,
episodes, idempotency keys and audit entries at intake, care plans, delivery logs and calendars at notifications,
coverage at authorizations, caseload's projection), copied with fresh identifiers: every UUID and every 64-digit
hex key (idempotency keys, match keys) in a copy is replaced by one derived from it and the copy's number, the same
in every database, so a copy is a whole episode across the services, referring only to itself. Outboxes come as the
services left them (relayed, so empty). Documents that belong to no template episode (caseload's meta, sessions,
set-aside events) are not copied. ``insert_many`` in chunks, unordered: fast enough for 50,000 episodes (about a
minute on the MongoDB stand-in per 10,000).
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId
from pymongo import AsyncMongoClient

Document = dict[str, Any]

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
HEX_KEY = re.compile(r"\b[0-9a-f]{64}\b")
NAMESPACE = uuid.UUID("5b1f3f5e-5d1e-4c39-9d8f-6f2f43a0b6c1")
CHUNK = 1000


@dataclass
class Templates:
    """The template episodes' documents, by (database, collection), and what was left out."""

    documents: dict[tuple[str, str], list[Document]] = field(default_factory=dict)
    episodes: int = 0
    left_out: dict[str, int] = field(default_factory=dict)
    """``database.collection`` -> documents of no single template episode (not copied)."""


async def templates(client: AsyncMongoClient[Document], databases: Iterable[str], episode_ids: set[str]) -> Templates:
    """Every document of ``databases`` that belongs to exactly one of ``episode_ids`` (found by the episode's id or
    its patient's in the document)."""
    found = Templates(episodes=len(episode_ids))
    owner: dict[str, str] = {episode: episode for episode in episode_ids}
    names = list(databases)
    for database in names:  # the patients of the episodes, from intake's episodes
        if database.endswith("_intake"):
            async for episode in client[database]["episodes"].find({"_id": {"$in": sorted(episode_ids)}}):
                owner[str(episode["patient_id"])] = str(episode["_id"])
    for database in names:
        for collection in await client[database].list_collection_names():
            async for document in client[database][collection].find():
                owners = {owner[token] for token in ids_in(document) if token in owner}
                if len(owners) == 1:
                    found.documents.setdefault((database, collection), []).append(document)
                else:
                    where = f"{database}.{collection}"
                    found.left_out[where] = found.left_out.get(where, 0) + 1
    return found


def ids_in(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(UUID.findall(value))
    if isinstance(value, Mapping):
        return set().union(*(ids_in(key) | ids_in(inner) for key, inner in value.items()))
    if isinstance(value, list):
        return set().union(*(ids_in(item) for item in value))
    return set()


def copy_of(document: Document, copy: int) -> Document:
    """The document with every identifier replaced by the copy's own (an ObjectId ``_id`` left to the driver)."""
    copied: Document = _renamed(document, copy)
    if isinstance(copied.get("_id"), ObjectId):
        del copied["_id"]
    return copied


def _renamed(value: Any, copy: int) -> Any:
    if isinstance(value, str):
        return _new_ids(value, copy)
    if isinstance(value, Mapping):
        return {_renamed(key, copy): _renamed(inner, copy) for key, inner in value.items()}
    if isinstance(value, list):
        return [_renamed(item, copy) for item in value]
    return value


def _new_ids(text: str, copy: int) -> str:
    if len(text) < 36:
        return text
    text = UUID.sub(lambda found: str(uuid.uuid5(NAMESPACE, f"{copy}/{found.group()}")), text)
    return HEX_KEY.sub(lambda found: hashlib.sha256(f"{copy}/{found.group()}".encode()).hexdigest(), text)


async def seed(client: AsyncMongoClient[Document], found: Templates, episodes: int) -> dict[str, Any]:
    """Store copies of the templates until ``episodes`` episodes are stored (rounded up to whole rounds); what was
    stored, and how long it took."""
    began = time.monotonic()
    rounds = -(-episodes // max(1, found.episodes))
    stored: dict[str, int] = {}
    for (database, collection), documents in found.documents.items():
        target = client[database][collection]
        chunk: list[Document] = []
        for copy in range(1, rounds + 1):
            chunk += [copy_of(document, copy) for document in documents]
            if len(chunk) >= CHUNK or copy == rounds:
                await target.insert_many(chunk, ordered=False)
                chunk = []
        stored[f"{database}.{collection}"] = rounds * len(documents)
    return {"episodes": rounds * found.episodes, "documents": stored, "left_out": found.left_out,
            "seconds": time.monotonic() - began}  # fmt: skip
