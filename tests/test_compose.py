"""The container deployment (Dockerfile, docker-compose.yml) agrees with the code, checked without a Docker engine."""

from __future__ import annotations

import re
import shlex
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.care_plan.settings import CarePlanSettings
from services.caseload.settings import CaseloadSettings
from services.common.settings import ServiceSettings
from services.intake.settings import IntakeSettings
from services.notifications.domain.safety import StaffRoutes
from services.notifications.settings import NotificationsSettings
from stepwise_contract import COMMAND_TYPES, EVENT_TYPES
from tools.deploy import secrets as secrets_tool

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
GITIGNORE = ROOT / ".gitignore"

APPS: dict[str, tuple[str, type[ServiceSettings], int]] = {
    "intake": ("services.intake", IntakeSettings, 8001),
    "care-plan": ("services.care_plan", CarePlanSettings, 8002),
    "notifications": ("services.notifications", NotificationsSettings, 8003),
}
APPS["caseload"] = ("services.caseload", CaseloadSettings, 8005)
BACKENDS = ("kafka", "kafka-init", "mongodb", "mailpit")
REQUIRED_ENV = ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URL", "API_TOKENS_FILE")
SECRETS_MOUNT = "/run/secrets/"
SECRET_WORDS = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSPHRASE|KEY)S?$")
"""Variable names that hold a credential: in compose, only their _FILE form may appear."""
TOKEN_LIKE = re.compile(r"(?=\S*[a-z])(?=\S*[A-Z])(?=\S*\d)[A-Za-z0-9_\-+/=]{20,}")
"""What a literal random token or key looks like (mixed case and digits, long)."""

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, and $$ for a literal $.
INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]  # type: ignore[no-any-return]


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's variable substitution, enough of it for this file; a missing required variable raises."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name", "op", "arg")
        present = name in variables and (variables[name] != "" or not (op or "").startswith(":"))
        if present:
            return variables[name]
        if op in {"?", ":?"}:
            raise LookupError(f"{name}: {arg}")
        return arg if op in {"-", ":-"} else ""

    return INTERPOLATION.sub(substitute, value)


def environment(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(entry.split("=", 1) for entry in raw)
    return {str(key): str(value) for key, value in raw.items()}


def published_container_ports(service: dict[str, Any]) -> set[int]:
    ports: set[int] = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports.add(int(entry["target"]))
        else:
            ports.add(int(str(entry).rsplit(":", 1)[-1].split("/")[0]))
    return ports


def mounted_secrets(service: dict[str, Any]) -> dict[str, str]:
    """The service's secrets: {source: path in the container} (short and long syntax)."""
    mounted: dict[str, str] = {}
    for entry in service.get("secrets", []):
        if isinstance(entry, str):
            mounted[entry] = SECRETS_MOUNT + entry
        else:
            target = str(entry.get("target", entry["source"]))
            mounted[str(entry["source"])] = target if target.startswith("/") else SECRETS_MOUNT + target
    return mounted


def secret_file_variables(settings_class: type[ServiceSettings]) -> set[str]:
    return {f"{name.upper()}_FILE" for name in settings_class.SECRETS}


def override_example() -> dict[str, Any]:
    """The docker-compose.override.yml the top of docker-compose.yml shows for the provider-issued secrets."""
    lines = COMPOSE_FILE.read_text(encoding="utf-8").splitlines()
    start = lines.index("#   services:")
    end = lines.index("#", start)
    document = yaml.safe_load(textwrap.dedent("\n".join(line[1:] for line in lines[start:end])))
    assert isinstance(document, dict)
    return document


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Compose's merge of one service, enough of it for environment and secrets."""
    result = dict(base)
    result["environment"] = environment(base) | environment(override)
    result["secrets"] = [*base.get("secrets", []), *override.get("secrets", [])]
    return result


def load_settings(
    service: dict[str, Any],
    settings_class: type[ServiceSettings],
    secrets_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> ServiceSettings:
    """The settings a service's container would load, its secrets read from ``secrets_dir`` instead of /run/secrets."""
    for field in settings_class.model_fields:
        monkeypatch.delenv(field.upper(), raising=False)
        monkeypatch.delenv(f"{field.upper()}_FILE", raising=False)
    for key, raw in environment(service).items():
        value = interpolate(raw, {})
        if value.startswith(SECRETS_MOUNT):
            value = str(secrets_dir / value.removeprefix(SECRETS_MOUNT))
        monkeypatch.setenv(key, value)
    return settings_class(_env_file=None)


@pytest.fixture
def generated_secrets(tmp_path: Path) -> Path:
    """A deployment's ./secrets as `python -m tools.deploy.secrets` writes it."""
    written = secrets_tool.write_secrets(tmp_path / "secrets")
    assert not written.problems
    return tmp_path / "secrets"


def healthcheck_text(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else str(test)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += stripped
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


# Services, images, wiring.


def test_every_service_is_defined(services: dict[str, Any]) -> None:
    assert set(services) == {*BACKENDS, *APPS}


@pytest.mark.parametrize("name", APPS)
def test_app_is_built_from_the_repository_and_runs_its_module(services: dict[str, Any], name: str) -> None:
    service = services[name]
    build = service["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    assert context in {".", "./"}
    assert "image" not in service
    module = APPS[name][0]
    command = service["command"]
    assert (command if isinstance(command, list) else shlex.split(command)) == [module]
    assert service["restart"] == "unless-stopped"


@pytest.mark.parametrize("name", APPS)
def test_app_publishes_the_port_it_listens_on(services: dict[str, Any], name: str) -> None:
    _, settings_class, port = APPS[name]
    assert port in published_container_ports(services[name])
    port_field = name.replace("-", "_") + "_port"
    default = settings_class.model_fields[port_field].default
    listens_on = int(environment(services[name]).get(port_field.upper(), default))
    assert listens_on == port


@pytest.mark.parametrize("name", APPS)
def test_app_healthcheck_probes_its_own_readiness(services: dict[str, Any], name: str) -> None:
    text = healthcheck_text(services[name])
    port = APPS[name][2]
    assert f"127.0.0.1:{port}/health/ready" in text or f"localhost:{port}/health/ready" in text
    assert "python" in text
    assert "curl" not in text  # the slim image has none


@pytest.mark.parametrize("name", APPS)
def test_app_waits_for_healthy_backends_and_created_topics(services: dict[str, Any], name: str) -> None:
    depends_on = services[name]["depends_on"]
    assert depends_on["kafka"]["condition"] == "service_healthy"
    assert depends_on["mongodb"]["condition"] == "service_healthy"
    assert depends_on["kafka-init"]["condition"] == "service_completed_successfully"


def test_notifications_waits_for_mail_and_intake(services: dict[str, Any]) -> None:
    depends_on = services["notifications"]["depends_on"]
    assert depends_on["mailpit"]["condition"] == "service_healthy"
    assert depends_on["intake"]["condition"] == "service_healthy"


# Environment.


@pytest.mark.parametrize("name", APPS)
def test_app_environment_names_only_real_settings(services: dict[str, Any], name: str) -> None:
    settings_class = APPS[name][1]
    known = {field.upper() for field in settings_class.model_fields} | secret_file_variables(settings_class)
    env = environment(services[name])
    assert set(env) <= known, f"{name} is given variables its settings ignore: {sorted(set(env) - known)}"
    for variable in REQUIRED_ENV:
        assert env.get(variable), f"{name} lacks {variable}"


@pytest.mark.parametrize("name", APPS)
def test_app_environment_points_at_the_compose_backends(services: dict[str, Any], name: str) -> None:
    env = environment(services[name])
    kafka_env = environment(services["kafka"])
    assert env["KAFKA_BOOTSTRAP_SERVERS"] in kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["MONGODB_URL"].startswith("mongodb://mongodb:27017/")
    assert "directConnection=true" in env["MONGODB_URL"]
    database_field = name.replace("-", "_") + "_db"
    assert database_field in APPS[name][1].model_fields
    assert env.get(database_field.upper()), f"{name} does not name its own database"


def test_each_app_has_its_own_database(services: dict[str, Any]) -> None:
    databases = [value for name in APPS for key, value in environment(services[name]).items() if key.endswith("_DB")]
    assert len(databases) == len(set(databases)) == len(APPS)


def test_notifications_sends_through_mailpit_and_reads_intake(services: dict[str, Any]) -> None:
    env = environment(services["notifications"])
    assert env["SMTP_HOST"] == "mailpit"
    assert env["SMTP_PORT"] == "1025"
    assert env["INTAKE_URL"] == "http://intake:8001"


STAFF_ROUTES = ("CARE_TEAM_EMAIL", "CARE_TEAM_WEBHOOK_URL", "ON_CALL_PHONE", "ON_CALL_WEBHOOK_URL")
"""Where safety alerts reach a person: the clinic's own, never a default that reaches nobody."""


def test_the_routes_to_staff_have_no_silent_default(
    services: dict[str, Any], generated_secrets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = environment(services["notifications"])
    for variable in STAFF_ROUTES:
        assert variable in env, f"notifications is not given {variable}"
        assert interpolate(env[variable], {}) == "", f"{variable} has a default: an alert would go to nobody, silently"
        assert interpolate(env[variable], {variable: "the clinic's"}) == "the clinic's"
    settings = load_settings(services["notifications"], NotificationsSettings, generated_secrets, monkeypatch)
    assert isinstance(settings, NotificationsSettings)
    routes = StaffRoutes(settings.care_team_email, settings.care_team_webhook_url, settings.on_call_phone,
                         settings.on_call_webhook_url, sms=bool(settings.sms_provider_url))  # fmt: skip
    assert set(routes.problems()) == {"care_team", "on_call"}  # not ready until the clinic sets them


# Secrets.


@pytest.mark.parametrize("name", APPS)
def test_secret_settings_are_files_never_variables(services: dict[str, Any], name: str) -> None:
    env = environment(services[name])
    for field in APPS[name][1].SECRETS:
        variable = field.upper()
        if variable == "MONGODB_URL":  # a secret when it carries a password; compose's MongoDB has none
            assert "@" not in env[variable], "MONGODB_URL with credentials belongs in MONGODB_URL_FILE"
            continue
        assert variable not in env, f"{name}: {variable} is a variable; mount it and set {variable}_FILE"
    assert env["API_TOKENS_FILE"] == SECRETS_MOUNT + "api_tokens"


@pytest.mark.parametrize("name", APPS)
def test_every_file_variable_names_a_secret_the_service_mounts(services: dict[str, Any], name: str) -> None:
    service, file_variables = services[name], secret_file_variables(APPS[name][1])
    env, mounted = environment(service), mounted_secrets(service)
    used = {value for key, value in env.items() if key in file_variables}
    for key in file_variables & set(env):
        assert env[key] in mounted.values(), f"{name}: {key}={env[key]} is no secret it mounts"
    assert set(mounted.values()) == used, f"{name} mounts secrets it does not read"
    assert all(path.startswith(SECRETS_MOUNT) for path in mounted.values())


def test_every_secret_is_a_file_in_the_secrets_folder(compose: dict[str, Any], services: dict[str, Any]) -> None:
    defined = compose["secrets"]
    for name, secret in defined.items():
        assert set(secret) == {"file"}, f"secret {name} is not a file"
        assert secret["file"] == f"./secrets/{name}", f"secret {name} is not ./secrets/{name}"
    used = {source for service in services.values() for source in mounted_secrets(service)}
    assert used == set(defined), "a secret is mounted but not defined, or defined (and required) but not mounted"


def test_the_generator_writes_every_secret_compose_mounts(compose: dict[str, Any]) -> None:
    generated = {secrets_tool.API_TOKENS, *secrets_tool.SERVICE_TOKENS.values(), *secrets_tool.KEYS}
    assert generated == set(compose["secrets"])
    assert set(secrets_tool.PROVIDER_ISSUED) == set(override_example()["secrets"])
    assert not set(secrets_tool.PROVIDER_ISSUED) & set(compose["secrets"]), "compose must not require them"


def test_no_credential_is_written_in_the_compose_file(services: dict[str, Any]) -> None:
    override = override_example()
    for name, service in [*services.items(), *(("override " + n, s) for n, s in override["services"].items())]:
        for key, value in environment(service).items():
            if SECRET_WORDS.search(key):
                pytest.fail(f"{name}: {key} holds a credential in the file; use {key}_FILE and a secret")
            assert not TOKEN_LIKE.search(value), f"{name}: {key} looks like a literal token"
    for line in COMPOSE_FILE.read_text(encoding="utf-8").splitlines():
        assert not TOKEN_LIKE.search(line), f"a literal token or key: {line.strip()}"


def test_the_documented_override_turns_the_provider_secrets_on(services: dict[str, Any]) -> None:
    override = override_example()
    assert set(override["services"]) == {"notifications"}
    for name, secret in override["secrets"].items():
        assert secret == {"file": f"./secrets/{name}"}
    notifications = merged(services["notifications"], override["services"]["notifications"])
    env, mounted = environment(notifications), mounted_secrets(notifications)
    file_variables = secret_file_variables(NotificationsSettings)
    assert {"SMTP_PASSWORD_FILE", "SMS_PROVIDER_TOKEN_FILE"} <= set(env)
    for key in file_variables & set(env):
        assert env[key] in mounted.values(), key
    assert set(mounted) <= {*services["notifications"]["secrets"], *override["secrets"]}


def test_the_documented_override_loads_into_the_settings(
    services: dict[str, Any], generated_secrets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (generated_secrets / "smtp_password").write_text("relay password\n", encoding="utf-8")
    (generated_secrets / "sms_provider_token").write_text("provider-token\n", encoding="utf-8")
    notifications = merged(services["notifications"], override_example()["services"]["notifications"])
    settings = load_settings(notifications, NotificationsSettings, generated_secrets, monkeypatch)
    assert isinstance(settings, NotificationsSettings)
    assert settings.smtp_password is not None and settings.smtp_password.get_secret_value() == "relay password"
    assert settings.sms_provider_token.get_secret_value() == "provider-token"


@pytest.mark.parametrize("name", APPS)
def test_app_environment_loads_into_its_settings(
    services: dict[str, Any], name: str, generated_secrets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_class = APPS[name][1]
    settings = load_settings(services[name], settings_class, generated_secrets, monkeypatch)
    staff = secrets_tool.token_roles((generated_secrets / "api_tokens").read_text(encoding="utf-8"))
    clinician = next(token for token, role in staff.items() if role == "clinician")
    assert settings.token_roles[clinician] == "clinician"
    for key, value in environment(services[name]).items():
        if key in secret_file_variables(settings_class):
            content = (generated_secrets / value.removeprefix(SECRETS_MOUNT)).read_text(encoding="utf-8")
            secret = getattr(settings, key.removesuffix("_FILE").lower())
            assert secret.get_secret_value() == content.rstrip("\n"), key


@pytest.mark.parametrize("name", APPS)
def test_the_containers_serve_no_api_docs_and_trust_no_proxy_by_default(
    services: dict[str, Any], name: str, generated_secrets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(services[name], APPS[name][1], generated_secrets, monkeypatch)
    assert settings.edge.api_docs is False and settings.edge.trusted_proxies == ()


@pytest.mark.parametrize(("service", "role"), [("notifications", "notifications"), ("care-plan", "care_plan")])
def test_a_service_token_is_accepted_by_intake_with_its_role(
    services: dict[str, Any], service: str, role: str, generated_secrets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    intake = load_settings(services["intake"], IntakeSettings, generated_secrets, monkeypatch)
    caller = load_settings(services[service], APPS[service][1], generated_secrets, monkeypatch)
    assert isinstance(caller, CarePlanSettings | NotificationsSettings)
    token = caller.intake_token.get_secret_value()
    assert token
    assert intake.token_roles[token] == role


def test_the_generator_gives_the_files_to_the_user_the_image_runs_as() -> None:
    users = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "USER"]
    assert users[-1] == "{}:{}".format(*secrets_tool.CONTAINER_USER)


# Backends.


def test_kafka_is_apache_kafka_in_kraft_mode(services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@kafka:")
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env
    assert any(volume.endswith(":" + env["KAFKA_LOG_DIRS"]) for volume in kafka["volumes"])


def test_kafka_is_the_version_the_tests_run(services: dict[str, Any]) -> None:
    """tools/dev/kafka/pom.xml pins the broker the suite and `make run` start; the deployment runs the same."""
    from tools.dev import kafka

    assert services["kafka"]["image"] == f"apache/kafka:{kafka.version()}"


def test_kafka_init_creates_every_contract_topic(services: dict[str, Any]) -> None:
    init = services["kafka-init"]
    assert init["image"] == services["kafka"]["image"]
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert init.get("restart", "no") == "no"
    script = " ".join([*init.get("entrypoint", []), *init["command"]])
    assert "kafka-topics.sh" in script
    assert "--create" in script
    assert "--if-not-exists" in script
    assert "--bootstrap-server kafka:9092" in script
    for topic in EVENT_TYPES | COMMAND_TYPES:
        assert topic in script, f"kafka-init does not create {topic}"


def test_topic_partitions_match_what_the_services_would_create(services: dict[str, Any]) -> None:
    script = " ".join(services["kafka-init"]["command"])
    partitions = {int(count) for count in re.findall(r"--partitions (\d+)", script)}
    for name in APPS:
        configured = environment(services[name]).get("KAFKA_TOPIC_PARTITIONS")
        expected = int(configured) if configured else APPS[name][1].model_fields["kafka_topic_partitions"].default
        assert partitions == {expected}


@pytest.mark.parametrize(
    ("name", "probe"),
    [
        ("kafka", "kafka-broker-api-versions.sh"),
        ("mongodb", "db.adminCommand('ping')"),
        ("mailpit", "readyz"),
    ],
)
def test_backend_has_a_healthcheck(services: dict[str, Any], name: str, probe: str) -> None:
    assert probe in healthcheck_text(services[name])


def test_mongodb_keeps_its_data_in_a_named_volume(compose: dict[str, Any]) -> None:
    mongodb = compose["services"]["mongodb"]
    assert mongodb["image"].startswith("mongo:8.0")
    volume_names = [volume.split(":", 1)[0] for volume in mongodb["volumes"] if volume.endswith(":/data/db")]
    assert volume_names
    assert volume_names[0] in compose["volumes"]


def test_mailpit_is_the_smtp_sink(services: dict[str, Any]) -> None:
    assert services["mailpit"]["image"].startswith("axllent/mailpit")


# Image.


def test_dockerfile_builds_on_python_311_slim() -> None:
    bases = [arguments.split()[0] for keyword, arguments in dockerfile_instructions() if keyword == "FROM"]
    assert bases
    assert all(base.startswith("python:3.11") for base in bases)


def test_dockerfile_does_not_run_as_root() -> None:
    users = [arguments for keyword, arguments in dockerfile_instructions() if keyword == "USER"]
    assert users, "no USER line: the services would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_dockerfile_installs_runtime_dependencies_from_the_lock() -> None:
    runs = " ".join(arguments for keyword, arguments in dockerfile_instructions() if keyword == "RUN")
    install = re.search(r"pip install [^&]*", runs)
    assert install
    assert "-c requirements.lock" in install.group(0) or "--constraint requirements.lock" in install.group(0)
    assert "./shared" in install.group(0)
    assert "[dev]" not in runs


def test_dockerfile_runs_a_module_chosen_by_the_command() -> None:
    instructions = dict(dockerfile_instructions())
    assert instructions["ENTRYPOINT"] == '["python", "-m"]'
    env = " ".join(arguments for keyword, arguments in dockerfile_instructions() if keyword == "ENV")
    assert "PYTHONUNBUFFERED=1" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "HEALTHCHECK" not in instructions


def test_build_context_leaves_secrets_and_virtualenvs_out() -> None:
    rules = [line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()]
    rules = [rule for rule in rules if rule and not rule.startswith("#")]
    assert rules[0] == "*", "the build context is an allow-list"
    reincluded = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert {"services", "shared", "requirements.lock", "pyproject.toml"} <= reincluded
    assert not reincluded & {".env", ".venv", ".git", "tests", "secrets"}
    assert "secrets/" in rules or "secrets" in rules


def test_git_leaves_the_secrets_folder_out() -> None:
    rules = {line.strip() for line in GITIGNORE.read_text(encoding="utf-8").splitlines()}
    assert {"secrets/", "/secrets/", "secrets"} & rules


@pytest.mark.parametrize("name", APPS)
def test_app_listens_on_every_interface_of_its_container(
    services: dict[str, Any], name: str, generated_secrets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service listens on loopback unless asked (BIND_HOST): in its container it must take the published port's
    connections, which come from outside the container, so compose and the image ask for every interface."""
    settings = load_settings(services[name], APPS[name][1], generated_secrets, monkeypatch)
    assert settings.bind_host == "0.0.0.0"
    image_env = " ".join(arguments for keyword, arguments in dockerfile_instructions() if keyword == "ENV")
    assert "BIND_HOST=0.0.0.0" in image_env  # `docker run IMAGE services.intake` without compose, too
