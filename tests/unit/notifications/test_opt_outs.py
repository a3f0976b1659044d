"""Who is still a recipient: opt-outs kept under one key, and what ends an alumni enrolment (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from services.notifications.domain import alumni
from services.notifications.domain.opt_outs import recipient_key, staff_opt_out

NOW = datetime(2026, 12, 1, 15, tzinfo=UTC)


def test_an_opt_out_is_looked_up_under_the_key_it_was_stored_under() -> None:
    # Staff record an alumnus's opt-out by episode (no consent); the alumni messages carry their consent.
    stored = staff_opt_out("ep-1", "alumni", None, NOW).opt_out_id
    assert recipient_key("ep-1", "alumni", "c-alumni") == stored == "recipient:ep-1:alumni:-"
    assert recipient_key("ep-1", "patient", None) == staff_opt_out("ep-1", "patient", None, NOW).opt_out_id
    # A support is one recipient per consent: two supports of one episode opt out apart.
    family = staff_opt_out("ep-1", "family", "c-1", NOW).opt_out_id
    assert recipient_key("ep-1", "family", "c-1") == family == "recipient:ep-1:family:c-1"
    assert recipient_key("ep-1", "family", "c-2") != family


def test_only_the_consent_a_graduate_enrolled_under_ends_the_enrolment_when_revoked() -> None:
    enrolment, _ = alumni.enrol("ep-1", "patient-1", "c-alumni", NOW, [7, 30], NOW)
    assert alumni.ended_by_revoking(enrolment, "c-alumni")
    assert not alumni.ended_by_revoking(enrolment, "c-other")
