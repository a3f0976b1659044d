"""The container deployment (Dockerfile, docker-compose.yml) agrees with the code, checked without a Docker engine."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.care_plan.settings import CarePlanSettings
from services.common.settings import ServiceSettings
from services.intake.settings import IntakeSettings
from services.notifications.settings import NotificationsSettings
from stepwise_contract import COMMAND_TYPES, EVENT_TYPES

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

APPS: dict[str, tuple[str, type[ServiceSettings], int]] = {
    "intake": ("services.intake", IntakeSettings, 8001),
    "care-plan": ("services.care_plan", CarePlanSettings, 8002),
    "notifications": ("services.notifications", NotificationsSettings, 8003),
}
BACKENDS = ("kafka", "kafka-init", "mongodb", "mailpit")
REQUIRED_ENV = ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URL", "API_TOKENS")
TOKEN_VARIABLES = {
    "API_TOKENS": "staff-token:clinician",
    "NOTIFICATIONS_INTAKE_TOKEN": "from-notifications",
    "CARE_PLAN_INTAKE_TOKEN": "from-care-plan",
}

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
    known = {field.upper() for field in settings_class.model_fields}
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


@pytest.mark.parametrize("name", APPS)
def test_tokens_come_from_required_variables_never_from_the_file(services: dict[str, Any], name: str) -> None:
    env = environment(services[name])
    for key in ("API_TOKENS", "INTAKE_TOKEN"):
        if key in env:
            # Only variable references and separators: a literal token in the file would survive interpolation.
            literal = interpolate(env[key], dict.fromkeys(TOKEN_VARIABLES, "<variable>")).replace("<variable>", "")
            assert literal in {"", ",", ",:notifications,:care_plan"}, key
    with pytest.raises(LookupError, match="API_TOKENS"):
        interpolate(env["API_TOKENS"], {})


@pytest.mark.parametrize("name", APPS)
def test_app_environment_loads_into_its_settings(
    services: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_class = APPS[name][1]
    for field in settings_class.model_fields:
        monkeypatch.delenv(field.upper(), raising=False)
    for key, value in environment(services[name]).items():
        monkeypatch.setenv(key, interpolate(value, TOKEN_VARIABLES))
    settings = settings_class(_env_file=None)
    assert settings.token_roles["staff-token"] == "clinician"


@pytest.mark.parametrize(("service", "variable", "role"), [("notifications", "NOTIFICATIONS_INTAKE_TOKEN",
                         "notifications"), ("care-plan", "CARE_PLAN_INTAKE_TOKEN", "care_plan")])  # fmt: skip
def test_a_service_token_is_accepted_by_intake_with_its_role(
    services: dict[str, Any], service: str, variable: str, role: str
) -> None:
    intake_env = {key: interpolate(value, TOKEN_VARIABLES) for key, value in environment(services["intake"]).items()}
    token = interpolate(environment(services[service])["INTAKE_TOKEN"], TOKEN_VARIABLES)
    assert token == TOKEN_VARIABLES[variable]
    intake = IntakeSettings(_env_file=None, api_tokens=intake_env["API_TOKENS"])
    assert intake.token_roles[token] == role


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
    """tools/kafka/pom.xml pins the broker the suite and `make run` start; the deployment runs the same."""
    from tools import kafka

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
    assert not reincluded & {".env", ".venv", ".git", "tests"}
