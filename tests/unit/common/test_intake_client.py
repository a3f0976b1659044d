"""Asking intake: an id becomes one escaped path segment, whatever it holds."""

from __future__ import annotations

from services.common.intake_client import path


def test_ids_are_escaped_path_segments() -> None:
    assert path("episodes", "ep-1", "contact") == "/v1/episodes/ep-1/contact"
    assert path("episodes", "\x1f/../x y", "recipients") == "/v1/episodes/%1F%2F..%2Fx%20y/recipients"
