"""A questionnaire link's life and the patient's form (pure, issue 24)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.common.logs import SecretPaths
from services.intake.domain.instruments import score_gad7, score_phq9
from services.intake.domain.links import (
    QUESTIONNAIRES,
    answers_from_form,
    link_state,
    measure_id_of,
    new_link,
    shows_crisis_resources,
    token_hash,
)

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def test_a_link_keeps_only_the_tokens_hash_and_lives_its_hours_once() -> None:
    link = new_link("secret-token", "e1", ["phq9"], NOW, 72)
    assert "secret-token" not in link.model_dump_json() and link.token_hash == token_hash("secret-token")
    assert link_state(link, NOW) == "open"
    assert link_state(link, NOW + timedelta(hours=72) - timedelta(microseconds=1)) == "open"
    assert link_state(link, NOW + timedelta(hours=72)) == "expired"
    assert link_state(link.model_copy(update={"used": True}), NOW) == "used"
    assert measure_id_of(link) == measure_id_of(new_link("secret-token", "e1", ["phq9"], NOW, 1))
    assert measure_id_of(link) != measure_id_of(new_link("other-token", "e1", ["phq9"], NOW, 72))


@given(st.integers(min_value=1, max_value=720), st.integers(min_value=0, max_value=800 * 3600))
def test_a_link_is_open_exactly_before_it_expires(hours: int, seconds: int) -> None:
    link = new_link("t", "e1", ["gad7"], NOW, hours)
    assert (link_state(link, NOW + timedelta(seconds=seconds)) == "open") == (seconds < hours * 3600)


def test_the_form_fields_are_instrument_dot_item_from_one_and_missing_ones_are_named() -> None:
    form = {f"phq9.{n}": "1" for n in range(1, 10)} | {"gad7.1": "3", "gad7.2": "4", "gad7.3": "x"}
    answers, missing = answers_from_form(form, ["phq9", "gad7"])
    assert answers["phq9"] == [1] * 9
    assert missing == ["gad7.2", "gad7.3", "gad7.4", "gad7.5", "gad7.6", "gad7.7"]
    assert [len(QUESTIONNAIRES[name].items) for name in ("phq9", "gad7")] == [9, 7]


def test_a_positive_suicide_item_shows_the_crisis_resources() -> None:
    assert shows_crisis_resources([score_phq9([0] * 8 + [1])])
    assert not shows_crisis_resources([score_phq9([3] * 8 + [0]), score_gad7([3] * 7)])


def test_the_access_log_shows_q_without_the_token() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", "/q/AbC-123_x?y=1", "1.1", 200), None)  # fmt: skip
    assert SecretPaths().filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "GET /q/…?y=1 HTTP/1.1" 200'
