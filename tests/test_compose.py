"""The container deployment (Dockerfile, docker-compose.yml) agrees with the code, checked without a Docker engine."""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import yaml

from services.authorizations.settings import AuthorizationsSettings
from services.care_plan.settings import CarePlanSettings
from services.caseload.settings import CaseloadSettings
from services.common.settings import ServiceSettings
from services.intake.settings import IntakeSettings
from services.notifications.domain.safety import StaffRoutes
from services.notifications.settings import NotificationsSettings
from stepwise_contract import COMMAND_TYPES, EVENT_TYPES
from tests import strict_yaml
from tools.deploy import kafka_acls
from tools.deploy import secrets as secrets_tool
from tools.dev import kafka as test_kafka

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
GITIGNORE = ROOT / ".gitignore"

APPS: dict[str, tuple[str, type[ServiceSettings], int]] = {
    "intake": ("services.intake", IntakeSettings, 8001),
    "care-plan": ("services.care_plan", CarePlanSettings, 8002),
    "notifications": ("services.notifications", NotificationsSettings, 8003),
    "authorizations": ("services.authorizations", AuthorizationsSettings, 8004),
}
APPS["caseload"] = ("services.caseload", CaseloadSettings, 8005)
BACKENDS = ("kafka", "kafka-init", "mongodb", "mailpit", "proxy", "backup")
REQUIRED_ENV = ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URL_FILE", "API_TOKENS_FILE", "KAFKA_SASL_PASSWORD_FILE")
SECRETS_MOUNT = "/run/secrets/"
SECRET_WORDS = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSPHRASE|KEY)S?$")
"""Variable names that hold a credential: in compose, only their _FILE form may appear."""
TOKEN_LIKE = re.compile(r"(?=\S*[a-z])(?=\S*[A-Z])(?=\S*\d)[A-Za-z0-9_\-+/=]{20,}")
"""What a literal random token or key looks like (mixed case and digits, long)."""

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, and $$ for a literal $.
INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = strict_yaml.load(COMPOSE_FILE.read_text(encoding="utf-8"))
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
    document = strict_yaml.load(textwrap.dedent("\n".join(line[1:] for line in lines[start:end])))
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


CADDYFILE = ROOT / "deploy" / "caddy" / "Caddyfile"


def caddyfile_upstreams() -> dict[str, str]:
    """The Caddyfile's upstreams by service (INTAKE, CARE_PLAN, ...): their defaults, which compose uses."""
    text = CADDYFILE.read_text(encoding="utf-8")
    return dict(re.findall(r"reverse_proxy \{\$(\w+)_UPSTREAM:([^}]+)\}", text))


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
def test_app_listens_where_the_proxy_sends_its_requests_and_publishes_nothing(
    services: dict[str, Any], name: str
) -> None:
    _, settings_class, port = APPS[name]
    assert not services[name].get("ports"), f"{name} publishes a port: only the proxy may"
    upstream = caddyfile_upstreams()[name.replace("-", "_").upper()]
    assert upstream == f"{name}:{port}"
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
    assert f"CLIENTS://{env['KAFKA_BOOTSTRAP_SERVERS']}" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    database_field = name.replace("-", "_") + "_db"
    assert database_field in APPS[name][1].model_fields
    assert env.get(database_field.upper()), f"{name} does not name its own database"


@pytest.mark.parametrize("name", APPS)
def test_app_logs_in_to_mongodb_as_its_own_user_of_its_own_database(
    services: dict[str, Any], name: str, generated_secrets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(services[name], APPS[name][1], generated_secrets, monkeypatch)
    url = urlsplit(settings.mongodb_url.get_secret_value())
    user = name.replace("-", "_")
    database = environment(services[name])[f"{user.upper()}_DB"]
    assert (url.username, url.hostname, url.port, url.path) == (user, "mongodb", 27017, f"/{database}")
    assert url.password
    assert dict(parse_qsl(url.query)) == {"authSource": database, "directConnection": "true"}
    assert secrets_tool.MONGODB_USERS[user] == database


def test_mongodb_requires_a_login_and_makes_a_user_per_service(services: dict[str, Any]) -> None:
    mongodb = services["mongodb"]
    env = environment(mongodb)
    assert env["MONGO_INITDB_ROOT_USERNAME"]
    assert env["MONGO_INITDB_ROOT_PASSWORD_FILE"] == SECRETS_MOUNT + "mongodb_root_password"
    assert any(v.endswith(":/docker-entrypoint-initdb.d/init-users.js:ro") for v in mongodb["volumes"])
    assert (ROOT / "deploy" / "mongodb" / "init-users.js").is_file()
    urls = {f"mongodb_{user}_url" for user in secrets_tool.MONGODB_USERS} | {"mongodb_backup_url"}
    assert urls | {"mongodb_root_password"} == set(mounted_secrets(mongodb))


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
    generated = {secrets_tool.API_TOKENS, *secrets_tool.SERVICE_TOKENS.values(), *secrets_tool.generated_names()}
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
    assert set(override["services"]) == {"notifications", "caseload"}
    for name, secret in override["secrets"].items():
        assert secret == {"file": f"./secrets/{name}"}
    turned_on_by_service: list[tuple[str, type[ServiceSettings], set[str]]] = [
        ("notifications", NotificationsSettings, {"SMTP_PASSWORD_FILE", "SMS_PROVIDER_TOKEN_FILE"}),
        ("caseload", CaseloadSettings, {"CONSOLE_OIDC_CLIENT_SECRET_FILE"}),
    ]
    for service, settings_class, turned_on in turned_on_by_service:
        overridden = merged(services[service], override["services"][service])
        env, mounted = environment(overridden), mounted_secrets(overridden)
        assert turned_on <= set(env)
        for key in secret_file_variables(settings_class) & set(env):
            assert env[key] in mounted.values(), key
        assert set(mounted) <= {*services[service]["secrets"], *override["secrets"]}


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
    (generated_secrets / "console_oidc_client_secret").write_text("client-secret\n", encoding="utf-8")
    caseload = merged(services["caseload"], override_example()["services"]["caseload"])
    console = load_settings(caseload, CaseloadSettings, generated_secrets, monkeypatch)
    assert isinstance(console, CaseloadSettings)
    assert console.console_oidc_client_secret.get_secret_value() == "client-secret"


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
def test_the_containers_serve_no_api_docs_and_trust_only_the_proxy_network_by_default(
    compose: dict[str, Any],
    services: dict[str, Any],
    name: str,
    generated_secrets: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_settings(services[name], APPS[name][1], generated_secrets, monkeypatch)
    proxy_network = ipaddress.ip_network(interpolate(compose["networks"]["apps"]["ipam"]["config"][0]["subnet"], {}))
    assert settings.edge.api_docs is False and settings.edge.trusted_proxies == (proxy_network,)


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
    # The controller listener is the broker's own, on loopback: a client there is the super user ANONYMOUS.
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@127.0.0.1:")
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
    assert "--bootstrap-server localhost:9094" in script  # the broker's loopback listener (it shares its network)
    assert init["network_mode"] == "service:kafka"
    assert "sh /stepwise/principals.sh" in script
    assert "./deploy/kafka/principals.sh:/stepwise/principals.sh:ro" in init["volumes"]
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
    """From the production lock, each file checked against its hashes; the contract and the services as wheels."""
    runs = " ".join(arguments for keyword, arguments in dockerfile_instructions() if keyword == "RUN")
    installs = re.findall(r"pip install [^&]*", runs)
    assert installs
    assert "--require-hashes" in installs[0] and "-r requirements.prod.lock" in installs[0]
    assert "--no-deps" in installs[0]  # nothing the lock does not name
    built = re.search(r"pip wheel [^&]*", runs)
    assert built and "./shared" in built.group(0)
    assert "stepwise_contract-*.whl" in installs[1] and "--no-deps" in installs[1]
    assert "requirements.lock" not in runs.replace("requirements.prod.lock", "")  # the dev lock: never in the image
    assert "[dev]" not in runs
    assert "pip check" in runs


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
    assert {"services", "shared", "requirements.prod.lock", "pyproject.toml", "LICENSE"} <= reincluded
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


# The clinic's edge: one HTTPS port, an internal network, limits.


def test_only_the_proxy_publishes_a_port_and_it_is_https(services: dict[str, Any]) -> None:
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"proxy"}
    assert services["proxy"]["ports"] == ["443:443"]
    assert "./deploy/caddy/Caddyfile:/etc/caddy/Caddyfile:ro" in services["proxy"]["volumes"]
    assert caddyfile_upstreams() == {
        "INTAKE": "intake:8001", "CARE_PLAN": "care-plan:8002", "NOTIFICATIONS": "notifications:8003",
        "AUTHORIZATIONS": "authorizations:8004", "CASELOAD": "caseload:8005",
    }  # fmt: skip


def test_everything_but_the_proxy_is_on_the_internal_network_only(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    networks = compose["networks"]
    assert networks["apps"]["internal"] is True
    for name, service in services.items():
        if name == "kafka-init":
            assert service["network_mode"] == "service:kafka"
            continue
        joined = set(service["networks"])
        assert "apps" in joined, name
        allowed = {"proxy": {"apps", "edge"}}.get(name, {"apps", "egress"} if name in APPS else {"apps"})
        assert joined <= allowed, f"{name} is on {joined - allowed}"
    subnet = networks["apps"]["ipam"]["config"][0]["subnet"]
    for name in APPS:
        assert environment(services[name])["TRUSTED_PROXIES"] == subnet, "the services trust only the proxy's network"
    assert "egress" in compose["networks"] and "internal" not in (networks["egress"] or {})


@pytest.mark.parametrize("name", [*APPS, *BACKENDS])
def test_every_container_has_memory_and_cpu_limits_and_long_runners_restart(
    services: dict[str, Any], name: str
) -> None:
    service = services[name]
    if name == "kafka-init":
        assert service["restart"] == "no"  # a job: it runs once
        return
    limits = service["deploy"]["resources"]["limits"]
    assert float(limits["cpus"]) > 0
    assert re.fullmatch(r"\d+[MG]", limits["memory"])
    assert service["restart"] == "unless-stopped"


@pytest.mark.parametrize("name", BACKENDS)
def test_image_references_are_a_tag_or_a_real_looking_digest(services: dict[str, Any], name: str) -> None:
    """No digest is invented here (no registry is reachable): a reference is name:tag, or name[:tag]@sha256:<64 hex>
    once IT pinned it (docs/deployment.md, "Image digests")."""
    image = services[name].get("image")
    if image is None:
        assert services[name]["build"] == "."
        return
    assert re.fullmatch(r"[a-z0-9./-]+(:[\w.-]+)?(@sha256:[0-9a-f]{64})?", image), image
    assert ":" in image.split("@")[0] or "@sha256:" in image, f"{name}: {image} is neither tagged nor pinned"


# Kafka's principals and ACLs.


def test_the_committed_acl_script_is_what_the_code_says() -> None:
    committed = kafka_acls.SCRIPT.read_text(encoding="utf-8")
    assert committed == kafka_acls.script(), "run `python -m tools.deploy.kafka_acls --write`"


def test_every_kafka_principal_has_a_password_and_each_service_logs_in_as_its_own(services: dict[str, Any]) -> None:
    principals = set(kafka_acls.principals())
    assert set(secrets_tool.KAFKA_PRINCIPALS) == principals
    assert set(mounted_secrets(services["kafka-init"])) == {f"kafka_{name}_password" for name in principals}
    for name in APPS:
        env = environment(services[name])
        principal = name.replace("-", "_")
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        assert env["KAFKA_SASL_MECHANISM"] in test_kafka.SCRAM_MECHANISMS
        assert env["KAFKA_SASL_USERNAME"] == principal
        assert env["KAFKA_SASL_PASSWORD_FILE"] == f"{SECRETS_MOUNT}kafka_{principal}_password"


def broker_properties(env: dict[str, str]) -> dict[str, str]:
    """The apache/kafka image's reading of KAFKA_* variables: "_" is ".", "__" is "-", "___" is "_"."""
    properties = {}
    for key, value in env.items():
        name = key.removeprefix("KAFKA_").lower().replace("___", "\0").replace("__", "-").replace("_", ".")
        properties[name.replace("\0", "_")] = value
    return properties


def test_the_broker_refuses_what_no_acl_allows_and_only_loopback_is_anonymous(services: dict[str, Any]) -> None:
    """The compose broker's security is the test broker's (tools/dev/kafka), where test_kafka_security.py runs the
    services as their principals and sees a forged alert refused."""
    properties = broker_properties(environment(services["kafka"]))
    assert properties["authorizer.class.name"] == test_kafka.AUTHORIZER
    assert properties["super.users"] == "User:ANONYMOUS"
    assert properties["allow.everyone.if.no.acl.found"] == "false"
    protocols = dict(entry.split(":") for entry in properties["listener.security.protocol.map"].split(","))
    for listener in properties["listeners"].split(","):
        name, _, address = listener.partition("://")
        if protocols[name] == "PLAINTEXT":  # no login: the ANONYMOUS super user, so loopback only
            assert address.startswith("127.0.0.1:"), listener
        else:
            assert protocols[name] == "SASL_PLAINTEXT"
            mechanism = properties["sasl.enabled.mechanisms"]
            assert (
                "ScramLoginModule" in properties[f"listener.name.{name.lower()}.{mechanism.lower()}.sasl.jaas.config"]
            )


# Backups.


def test_a_nightly_encrypted_backup_keeps_a_retention(services: dict[str, Any], compose: dict[str, Any]) -> None:
    job = services["backup"]
    command = " ".join(job["command"])
    assert command.startswith("tools.deploy.backup schedule --dir /backups")
    assert "--at" in command and "--keep-days" in command
    env = environment(job)
    assert env["BACKUP_KEY_FILE"] == SECRETS_MOUNT + "backup_key"
    assert env["MONGODB_URL_FILE"] == SECRETS_MOUNT + "mongodb_backup_url"
    databases = {environment(services[name])[f"{name.replace('-', '_').upper()}_DB"] for name in APPS}
    assert set(env["BACKUP_DATABASES"].split(",")) == databases
    assert "backups:/backups" in job["volumes"] and "backups" in compose["volumes"]


NODE_SHIM = """
const fs = require("fs"), path = require("path");
const [secrets, script] = process.argv.slice(1);
const real = {readdirSync: fs.readdirSync, readFileSync: fs.readFileSync};
const moved = (p) => String(p).replace(/^\\/run\\/secrets/, secrets);
fs.readdirSync = (p, ...rest) => real.readdirSync(moved(p), ...rest);
fs.readFileSync = (p, ...rest) => real.readFileSync(moved(p), ...rest);
const created = [];
global.db = {getSiblingDB: (name) => ({createUser: (user) => created.push({db: name, ...user})})};
global.print = () => {};
require(path.resolve(script));
console.log(JSON.stringify(created));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="no Node.js to run the mongosh script's JavaScript")
def test_mongodb_init_script_gives_each_service_its_own_database_only(generated_secrets: Path) -> None:
    """deploy/mongodb/init-users.js, run by Node.js with mongosh's `db` and `print` stood in: the users it creates
    from the generated secret files (mongosh runs it for real, on MongoDB's first start; no mongod runs here)."""
    script = ROOT / "deploy" / "mongodb" / "init-users.js"
    done = subprocess.run(["node", "-e", NODE_SHIM, str(generated_secrets), str(script)],
                          capture_output=True, text=True, check=True, timeout=30)  # fmt: skip
    created = {user["user"]: user for user in json.loads(done.stdout)}
    assert set(created) == {*secrets_tool.MONGODB_USERS, "backup"}
    for user, database in secrets_tool.MONGODB_USERS.items():
        url = urlsplit((generated_secrets / f"mongodb_{user}_url").read_text().strip())
        assert created[user] == {"db": database, "user": user, "pwd": url.password,
                                 "roles": [{"role": "readWrite", "db": database}]}  # fmt: skip
    assert created["backup"]["db"] == "admin"
    assert created["backup"]["roles"] == [{"role": "backup", "db": "admin"}]


def test_the_compose_file_is_read_as_docker_compose_reads_it() -> None:
    """docker compose refuses a mapping with a key given twice; so does the loader every test here reads it with."""
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'UR_TEAM_EMAIL'"):
        strict_yaml.load("environment:\n  UR_TEAM_EMAIL: a\n  UR_TEAM_EMAIL: b\n")
    merged_env = strict_yaml.load("base: &base {A: '1'}\nenv:\n  <<: *base\n  A: '2'\n")
    assert merged_env["env"] == {"A": "2"}
