"""tools/deploy/backup.py's defaults, without a server (tests/store/test_backup.py dumps and restores on one)."""

from __future__ import annotations

import pytest

from services.authorizations.settings import AuthorizationsSettings
from services.care_plan.settings import CarePlanSettings
from services.caseload.settings import CaseloadSettings
from services.common.settings import ServiceSettings
from services.intake.settings import IntakeSettings
from services.notifications.settings import NotificationsSettings
from tools.deploy import backup

SETTINGS: dict[str, type[ServiceSettings]] = {
    "intake": IntakeSettings,
    "care_plan": CarePlanSettings,
    "notifications": NotificationsSettings,
    "authorizations": AuthorizationsSettings,
    "caseload": CaseloadSettings,
}


def test_by_default_every_services_database_is_backed_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BACKUP_DATABASES", raising=False)
    defaults = {settings.model_fields[f"{name}_db"].default for name, settings in SETTINGS.items()}
    assert set(backup._databases()) == defaults


def test_the_databases_named_are_the_ones_backed_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKUP_DATABASES", " stepwise_intake, stepwise_caseload ,")
    assert backup._databases() == ["stepwise_intake", "stepwise_caseload"]
