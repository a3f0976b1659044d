"""Which of an aggregate's top-level fields a save changes, so that the save sends only those: a care plan's one
new attendance does not send its calendar, its services and its treatment plan again (a `$set` of the whole plan
made the store decode and write some 10 kB per event; docs/performance.md, "Issue 31, sixth round").

What is stored is remembered as a digest of each field's BSON, not as its value: a service holds hundreds of
aggregates, and the BSON is what the server keeps (a time to the millisecond compares as it was stored). A save
from digests of the very version it overwrites (its write is version-checked) sends every field that differs; a
field the digests do not know is sent. Nothing is ever removed: a field a model no longer has stays as it was,
as with a `$set` of the whole aggregate."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import bson

from .mongo import Document

FieldDigests = Mapping[str, bytes]
"""A digest of each top-level field of an aggregate as stored at one version."""


def digest(value: object) -> bytes:
    return hashlib.blake2b(bson.encode({"": value}), digest_size=16).digest()


def digests(document: Document) -> dict[str, bytes]:
    """The digests of a document as stored (read, or written whole)."""
    return {key: digest(value) for key, value in document.items()}


def changed(fields: Document, stored: FieldDigests) -> tuple[Document, dict[str, bytes]]:
    """The fields of ``fields`` whose value differs from the stored one (each, when nothing is known of it), and the
    digests of the document once they are written."""
    after = dict(stored)
    changes: Document = {}
    for key, value in fields.items():
        new = digest(value)
        if stored.get(key) != new:
            changes[key] = value
            after[key] = new
    return changes, after
