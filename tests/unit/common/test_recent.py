"""What a process wrote last: bounded, the one kept longest ago left out first."""

from __future__ import annotations

from services.common.recent import Recent


def test_keeping_one_more_than_the_most_leaves_out_the_one_kept_longest_ago() -> None:
    recent: Recent[str, int] = Recent(2)
    recent.keep("a", 1)
    recent.keep("b", 2)
    recent.keep("a", 3)  # kept again: the newest
    recent.keep("c", 4)
    assert dict(recent) == {"a": 3, "c": 4}
