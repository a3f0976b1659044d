"""docs/performance.md lists every index the services declare and the admin listings that may read a whole
collection: its section is what the declarations generate (`python -m tools.check.indexes --write`)."""

from __future__ import annotations

from tools.check.indexes import DECLARED, DOC, live_differences, render, section


def test_the_performance_doc_lists_exactly_the_declared_indexes_and_allowed_listings() -> None:
    assert section(DOC.read_text()) == render(), (
        "docs/performance.md's indexes differ from the declarations: run `python -m tools.check.indexes --write`"
    )


def test_every_declared_index_says_what_it_serves_and_no_two_share_keys() -> None:
    for service, indexes in DECLARED.items():
        assert all(index.why for index in indexes), service
        names = [(index.collection, index.name) for index in indexes]
        assert len(names) == len(set(names)), f"{service} declares an index twice"


def test_a_live_index_not_declared_or_a_declared_one_missing_is_named() -> None:
    live: list[list[tuple[str, float]]] = [[("_id", 1)], [("patient_id", 1.0)], [("request_key", 1)],
                                           [("stray", 1)]]  # 1.0: nx-27017  # fmt: skip
    assert live_differences("intake", "episodes", live) == [
        "intake episodes: outbox_pending_1_outbox_lease_until_1 is declared but missing",
        "intake episodes: stray_1 exists but is not declared (INDEXES in the service's store)",
    ]
