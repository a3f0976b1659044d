"""Who may call what: the closed set of roles."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """Who may call what. A static token (API_TOKENS) carries one of these; an access token any number."""

    INTAKE_STAFF = "intake_staff"
    CLINICIAN = "clinician"
    INTEGRATION = "integration"
    """Another clinic system (EHR, scheduling, billing) acting for the clinic."""
    ADMIN = "admin"
    """Clinic IT: audit log, set-aside events."""
    NOTIFICATIONS = "notifications"
    """The notifications service, looking up contact data and consents at intake."""
    CARE_PLAN = "care_plan"
    """The care_plan service, checking at intake for a consent before it books a family session."""
    SMS_PROVIDER = "sms_provider"
    """The SMS provider's reply callback."""
    UTILIZATION_REVIEW = "utilization_review"
    """A utilization-review coordinator: payers' authorizations, reviews and certifications (authorizations)."""
