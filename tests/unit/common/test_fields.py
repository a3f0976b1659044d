"""Which fields a save sends: those whose BSON differs from the stored one's, every one the digests do not know."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import bson
from hypothesis import given
from hypothesis import strategies as st

from services.common.fields import changed, digests
from services.common.mongo import Document

KEYS = st.sampled_from(["status", "level", "schedule", "services", "inputs", "treatment"])
LEAVES = st.none() | st.booleans() | st.integers(-(2**31), 2**31) | st.text(max_size=8)
VALUES: st.SearchStrategy[Any] = st.recursive(
    LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text("abxy", max_size=3), inner, max_size=3),
    max_leaves=8,
)  # fmt: skip
DOCUMENTS = st.dictionaries(KEYS, VALUES, max_size=6)


@given(stored=DOCUMENTS, fields=DOCUMENTS)
def test_the_stored_document_with_the_changes_set_holds_every_field_as_given(
    stored: Document, fields: Document
) -> None:
    changes, after = changed(fields, digests(stored))
    written = stored | changes  # what $set of the changes makes of the stored document
    assert {key: bson.encode({"": written[key]}) for key in fields} == {
        key: bson.encode({"": value}) for key, value in fields.items()
    }
    assert after == digests(written)


@given(document=DOCUMENTS)
def test_a_document_saved_as_it_is_stored_sends_nothing(document: Document) -> None:
    assert changed(document, digests(document))[0] == {}


def test_a_field_the_digests_do_not_know_is_sent() -> None:
    assert changed({"status": "active", "level": "iop"}, digests({"status": "active"}))[0] == {"level": "iop"}
    assert changed({"status": "active"}, {})[0] == {"status": "active"}


def test_values_are_compared_as_stored_not_as_python_compares_them() -> None:
    stored = digests(
        {"due": datetime(2026, 12, 7, 10, 0, 0, 123000, tzinfo=UTC), "count": 1, "flags": {"a": 1, "b": 2}}
    )
    later_in_the_same_millisecond = datetime(2026, 12, 7, 10, 0, 0, 123456, tzinfo=UTC)  # stored as the same time
    assert changed({"due": later_in_the_same_millisecond}, stored)[0] == {}
    assert changed({"count": True}, stored)[0] == {"count": True}  # equal in Python, another BSON type
    assert changed({"flags": {"b": 2, "a": 1}}, stored)[0] == {"flags": {"b": 2, "a": 1}}  # field order counts in BSON
