"""`python -m tools.deploy.secrets`: a consistent ./secrets folder for a new docker compose deployment."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from services.care_plan.settings import CarePlanSettings
from services.common.settings import parse_api_tokens
from services.intake.settings import IntakeSettings
from services.notifications.settings import NotificationsSettings
from tools.deploy import secrets as secrets_tool

SERVICES = ("intake", "care_plan", "notifications", "authorizations", "caseload")
FILES = {"api_tokens", "notifications_intake_token", "care_plan_intake_token", "webhook_secret", "contact_hash_key",
         "mongodb_root_password", "mongodb_backup_url", "backup_key", "kafka_integration_password",
         *(f"mongodb_{service}_url" for service in SERVICES),
         *(f"kafka_{service}_password" for service in SERVICES)}  # fmt: skip


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8").rstrip("\n")


def test_a_new_folder_has_every_file_and_the_tokens_agree(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    run = secrets_tool.write_secrets(folder)
    assert not run.problems
    assert {path.name for path in run.written} == FILES == {path.name for path in folder.iterdir()}
    roles = parse_api_tokens(read(folder / "api_tokens"))
    assert roles[read(folder / "notifications_intake_token")] == "notifications"
    assert roles[read(folder / "care_plan_intake_token")] == "care_plan"
    assert sorted(roles.values()) == sorted(["clinician", "intake_staff", "admin", "integration", "notifications",
                                             "care_plan", "utilization_review"])  # fmt: skip
    assert run.staff_tokens == {role: token for token, role in roles.items() if role in secrets_tool.STAFF_ROLES}
    values = [read(folder / name) for name in secrets_tool.KEYS] + list(roles)
    assert len(set(values)) == len(values), "every token and key is its own"
    assert all(len(value) >= 40 for value in values)
    urls = {name: urlsplit(read(folder / f"mongodb_{name}_url")) for name in [*secrets_tool.MONGODB_USERS, "backup"]}
    passwords = [url.password for url in urls.values()] + [read(folder / n) for n in FILES if n.endswith("_password")]
    passwords += [read(folder / "backup_key")]
    assert len(set(passwords)) == len(passwords) == 14, "every login has its own password"
    assert all(password and len(password) >= 40 for password in passwords)
    assert {name: (url.username, url.path) for name, url in urls.items()} == {
        "intake": ("intake", "/stepwise_intake"), "care_plan": ("care_plan", "/stepwise_care_plan"),
        "notifications": ("notifications", "/stepwise_notifications"),
            "authorizations": ("authorizations", "/stepwise_authorizations"),
            "caseload": ("caseload", "/stepwise_caseload"), "backup": ("backup", "/admin"),
    }  # fmt: skip


def test_the_files_load_into_the_services_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "secrets"
    secrets_tool.write_secrets(folder)
    for name in ("API_TOKENS", "INTAKE_TOKEN", "WEBHOOK_SECRET", "CONTACT_HASH_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("API_TOKENS_FILE", str(folder / "api_tokens"))
    intake = IntakeSettings(_env_file=None)
    monkeypatch.setenv("INTAKE_TOKEN_FILE", str(folder / "care_plan_intake_token"))
    care_plan = CarePlanSettings(_env_file=None)
    monkeypatch.setenv("INTAKE_TOKEN_FILE", str(folder / "notifications_intake_token"))
    monkeypatch.setenv("WEBHOOK_SECRET_FILE", str(folder / "webhook_secret"))
    monkeypatch.setenv("CONTACT_HASH_KEY_FILE", str(folder / "contact_hash_key"))
    notifications = NotificationsSettings(_env_file=None)
    assert intake.token_roles[care_plan.intake_token.get_secret_value()] == "care_plan"
    assert intake.token_roles[notifications.intake_token.get_secret_value()] == "notifications"
    assert notifications.webhook_secret and notifications.contact_hash_key
    assert notifications.webhook_secret != notifications.contact_hash_key


def test_only_the_owner_may_read_the_files(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    old_umask = os.umask(0)  # the mode does not depend on the umask
    try:
        secrets_tool.write_secrets(folder)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    secrets_tool.write_secrets(folder)
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    (folder / "webhook_secret").unlink()
    again = secrets_tool.write_secrets(folder)
    assert not again.problems
    assert [path.name for path in again.written] == ["webhook_secret"]
    assert not again.staff_tokens
    after = {path.name: path.read_bytes() for path in folder.iterdir()}
    assert {name: content for name, content in after.items() if name != "webhook_secret"} == {
        name: content for name, content in before.items() if name != "webhook_secret"
    }
    assert after["webhook_secret"] != before["webhook_secret"]


def test_a_service_token_file_made_anew_takes_its_token_from_api_tokens(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "api_tokens").write_text("staff:clinician,svc-n:notifications,svc-c:care_plan\n", encoding="utf-8")
    run = secrets_tool.write_secrets(folder)
    assert not run.problems
    assert read(folder / "notifications_intake_token") == "svc-n"
    assert read(folder / "care_plan_intake_token") == "svc-c"
    assert read(folder / "api_tokens") == "staff:clinician,svc-n:notifications,svc-c:care_plan"


def test_a_new_api_tokens_takes_the_service_tokens_there_are(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "notifications_intake_token").write_text("kept-n\n", encoding="utf-8")
    secrets_tool.write_secrets(folder)
    assert parse_api_tokens(read(folder / "api_tokens"))["kept-n"] == "notifications"


def test_tokens_that_do_not_agree_are_reported_without_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "api_tokens").write_text("staff-secret:clinician\n", encoding="utf-8")
    (folder / "notifications_intake_token").write_text("svc-secret\n", encoding="utf-8")
    assert secrets_tool.main(["--dir", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "does not give the token in" in err and "notifications_intake_token the role notifications" in err
    assert "care_plan_intake_token the role care_plan" in err  # made anew, so not in the kept api_tokens
    assert "staff-secret" not in err and "svc-secret" not in err
    assert read(folder / "api_tokens") == "staff-secret:clinician"


def test_an_empty_file_stops_the_run_before_anything_is_written(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "contact_hash_key").write_text("\n", encoding="utf-8")
    run = secrets_tool.write_secrets(folder)
    assert run.problems and "contact_hash_key is empty" in run.problems[0]
    assert not run.written
    assert [path.name for path in folder.iterdir()] == ["contact_hash_key"]


def test_the_files_are_given_to_the_owner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    given: list[tuple[str, int, int]] = []
    monkeypatch.setattr(os, "chown", lambda path, uid, gid: given.append((Path(path).name, uid, gid)))
    secrets_tool.write_secrets(tmp_path / "secrets", owner=(10001, 10001))
    assert sorted(given) == sorted((name, 10001, 10001) for name in FILES)


def test_the_command_prints_what_it_wrote_and_the_staff_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000, raising=False)
    folder = tmp_path / "secrets"
    assert secrets_tool.main(["--dir", str(folder)]) == 0
    out = capsys.readouterr().out
    for name in FILES:
        assert f"wrote {folder / name}" in out
    for token, role in parse_api_tokens(read(folder / "api_tokens")).items():
        assert (token in out) == (role in secrets_tool.STAFF_ROLES), role
    assert "smtp_password, sms_provider_token" in out
    assert "sudo chown 10001:10001" in out
    assert secrets_tool.main(["--dir", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "wrote" not in out and out.count("kept") == len(FILES)
