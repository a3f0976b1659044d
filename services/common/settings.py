"""Settings every service shares; each service extends them with its own port and database."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Annotated, ClassVar, Literal, Self
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, Secret, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from stepwise_contract.envelope import DEFAULT_SCHEMA_BASE, checked_schema_base

from .auth import SERVICE_ROLES, Role
from .edge import EdgeConfig, MiB, parse_networks
from .oidc import OidcConfig
from .secret_files import SecretFilesSource, check_secret_names

ROLES = frozenset(Role)


def parse_api_tokens(raw: str) -> dict[str, Role]:
    """``token:role,token:role`` (commas or new lines between entries) → {token: role}; a clear error names the
    bad entry (never the token)."""
    tokens: dict[str, Role] = {}
    entries = raw.replace("\n", ",").split(",")
    for position, entry in enumerate(filter(None, (part.strip() for part in entries)), start=1):
        token, separator, role = entry.rpartition(":")
        if not separator or not token:
            raise ValueError(f"API_TOKENS entry {position} is not token:role")
        if role not in ROLES:
            raise ValueError(
                f"API_TOKENS entry {position} has unknown role {role!r}; roles: {sorted(role.value for role in Role)}"
            )
        tokens[token] = Role(role)
    return tokens


def parse_role_map(raw: str) -> dict[str, Role]:
    """``provider_role:stepwise_role,...`` → {provider_role: Role}; an error names the bad entry."""
    mapping: dict[str, Role] = {}
    for position, entry in enumerate(filter(None, (part.strip() for part in raw.split(","))), start=1):
        provider, separator, role = entry.rpartition(":")
        if not separator or not provider:
            raise ValueError(f"OIDC_ROLE_MAP entry {position} is not provider_role:stepwise_role")
        if role not in ROLES:
            raise ValueError(f"OIDC_ROLE_MAP entry {position} maps to unknown role {role!r}; roles: {sorted(ROLES)}")
        mapping[provider] = Role(role)
    return mapping


def _roles(raw: str, setting: str) -> frozenset[Role]:
    names = [name.strip() for name in raw.split(",") if name.strip()]
    unknown = [name for name in names if name not in ROLES]
    if unknown:
        raise ValueError(f"{setting}: unknown role(s) {unknown}; roles: {sorted(ROLES)}")
    return frozenset(Role(name) for name in names)


def _check_ca_file(setting: str, path: Path) -> None:
    """The CA file exists, can be read and holds at least one CA certificate in PEM form."""
    if not path.is_file():
        raise ValueError(f"{setting}: {path} does not exist or is not a file")
    try:
        pem = path.read_text(encoding="ascii", errors="replace")
    except OSError as error:
        raise ValueError(f"{setting}: {path} cannot be read ({error.strerror or type(error).__name__})") from None
    try:
        ssl.create_default_context(cadata=pem)
    except (ssl.SSLError, ValueError):
        raise ValueError(f"{setting}: {path} holds no CA certificate in PEM form") from None


def _tls_switched_off(mongodb_url: str) -> bool:
    """The URL says tls=false (or its old name ssl=false); option names are case-insensitive."""
    options = {name.lower(): value.lower() for name, value in parse_qsl(urlsplit(mongodb_url).query)}
    return any(options.get(name) == "false" for name in ("tls", "ssl"))


def _known_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("CLINIC_TIMEZONE: not a known IANA time zone (e.g. America/Chicago)") from None
    return name


ClinicZone = Annotated[str, AfterValidator(_known_zone)]
"""``CLINIC_TIMEZONE``: a misspelt zone stops the service at start, instead of every time shown in it failing."""

HIDDEN = "**********"


class MongoUrl(Secret[str]):
    """``MONGODB_URL``: shown (repr, str, JSON) with its password hidden, so a log still says which server."""

    def _display(self) -> str:
        scheme, separator, rest = self.get_secret_value().partition("://")
        userinfo, at, hosts = rest.rpartition("@")
        if not separator or not at or ":" not in userinfo:
            return self.get_secret_value()
        return f"{scheme}://{userinfo.partition(':')[0]}:{HIDDEN}@{hosts}"


class ServiceSettings(BaseSettings):
    # hide_input_in_errors: a bad setting must not print API_TOKENS (or any secret) into logs.
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", hide_input_in_errors=True)

    SECRETS: ClassVar[tuple[str, ...]] = ("api_tokens", "mongodb_url", "kafka_sasl_password", "metrics_token")
    """The settings that may come from a file: ``X_FILE`` (e.g. ``API_TOKENS_FILE=/run/secrets/api_tokens``) names
    a file holding setting ``X`` (services/common/secret_files.py). Each service adds its own credentials; a new
    credential setting is added here or there by name, and is a ``SecretStr`` (``get_secret_value()`` where it is
    used), so that no repr, str or JSON of the settings shows it. ``mongodb_url`` carries the password when
    MongoDB authentication is on (``MongoUrl``: shown without it)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # X_FILE ranks above X so that an empty X (compose's ${X:-}) does not hide the file; both set is an error.
        secret_files = SecretFilesSource(settings_cls, env_settings, dotenv_settings)
        return init_settings, secret_files, env_settings, dotenv_settings, file_secret_settings

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: object) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        check_secret_names(cls)  # a misspelt name in a service's SECRETS fails at import

    kafka_bootstrap_servers: str = "localhost:9092"
    kafka_topic_partitions: int = Field(default=3, ge=1)
    kafka_topic_replication: int = Field(
        default=1, ge=1, description="Replicas of each topic the services create: 1 in development, 3 in production."
    )
    kafka_topic_min_insync_replicas: int = Field(
        default=1,
        ge=1,
        description="min.insync.replicas of each topic the services create: 1 in development, 2 in production (with "
        "acks=all, a write is stored on two brokers before it counts).",
    )
    mongodb_url: MongoUrl = MongoUrl("mongodb://localhost:27017/?directConnection=true")
    api_tokens: SecretStr = Field(default=SecretStr(""), description="token:role,token:role")
    # Staff sign in at the clinic's OpenID Connect provider (services/common/oidc.py).
    oidc_issuer: str = Field(default="", description="The provider's issuer URL; empty: no OpenID Connect.")
    oidc_jwks_url: str = Field(default="", description="The provider's key set; empty: from its discovery document.")
    oidc_audience: str = Field(default="", description="The audience access tokens must name (required with OIDC).")
    oidc_roles_claim: str = Field(
        default="roles", description="Dotted path to the token's roles, e.g. realm_access.roles (Keycloak)."
    )
    oidc_role_map: str = Field(
        default="", description="provider_role:stepwise_role,...; empty: provider roles named like Stepwise's count."
    )
    oidc_leeway_seconds: float = Field(default=60.0, ge=0, le=600, description="Clock skew allowed on exp and nbf.")
    oidc_keys_refresh_seconds: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="Least time between two fetches of the provider's keys for a token naming a key not seen yet.",
    )
    static_tokens_allowed_roles: str | None = Field(
        default=None,
        description="Roles whose static tokens (API_TOKENS) are accepted, comma-separated; default: every role "
        "without OIDC, the service roles only with it.",
    )
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="text: one line per record, coloured only on a terminal; json: one JSON object per line (for "
        "Loki and the like) with trace_id and the pseudonymous ids it concerns (docs/operations.md).",
    )
    metrics_token: SecretStr = Field(
        default=SecretStr(""),
        description="A bearer token /metrics asks of Prometheus; empty: /metrics answers anyone who reaches it "
        "(keep it off the public edge).",
    )
    otel_exporter_otlp_endpoint: str = Field(
        default="",
        description="An OpenTelemetry collector's OTLP/HTTP address (http://collector:4318): traces are exported "
        "there (the other OTEL_* variables apply); empty: trace ids in logs and events, nothing exported.",
    )
    bind_host: str = Field(
        default="127.0.0.1",
        description="The address the HTTP server listens on: loopback unless asked (containers: 0.0.0.0, every "
        "interface).",
    )
    kafka_group_instance_id: str = Field(
        default_factory=socket.gethostname,
        description="Static consumer-group membership id of this instance (KIP-345): unique per instance and "
        "stable across its restarts (the container hostname by default). A restarted instance takes its "
        "partitions back at once; one that is gone for good frees them after the session timeout. "
        "Empty: dynamic membership, which leaves the group on shutdown (for temporary extra instances).",
    )
    kafka_max_batch: int = Field(
        default=50,
        ge=1,
        le=10_000,
        description="Most records a consumer applies in one batch (episodes "
        "concurrently, each episode's in order); its offsets are committed after the whole batch.",
    )
    kafka_batch_wait_ms: int = Field(
        default=100,
        ge=1,
        le=5_000,
        description="While a consumer has records, how long the broker may hold its next fetch for more (records "
        "are applied as they arrive; an idle consumer's fetch is held KAFKA_FETCH_MAX_WAIT_MS).",
    )
    kafka_fetch_max_wait_ms: int = Field(
        default=2_000,
        ge=100,
        le=10_000,
        description="How long the broker may hold an idle lane's fetch while it has no records (it answers as soon as "
        "one arrives): what an idle consumer costs, a fetch per this long per lane. From a lane's first batch until "
        "it has had none for 5 s, its fetches are held for its batch wait at most.",
    )
    # Transport security: Kafka's listener protocol, SASL login and CA; MongoDB's TLS is switched on in its URL.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="How the services talk to Kafka: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT (a login, no TLS) or "
        "SASL_SSL (a login over TLS).",
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        default="SCRAM-SHA-512", description="The SASL mechanism of the login (with SASL_PLAINTEXT or SASL_SSL)."
    )
    kafka_sasl_username: str = Field(default="", description="The SASL user (required with SASL_*).")
    kafka_sasl_password: SecretStr = Field(
        default=SecretStr(""), description="The SASL user's password (required with SASL_*); a secret: never logged."
    )
    kafka_ssl_ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CA(s) that signed the brokers' certificates (SSL, SASL_SSL); unset: the "
        "system's CAs.",
    )
    mongodb_tls_ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CA(s) that signed MongoDB's certificate; TLS is switched on by tls=true in "
        "MONGODB_URL; unset: the system's CAs.",
    )
    store_query_shapes_file: Path | None = Field(
        default=None,
        description="Append each store command's shape (field names and operators, no value) to this file, one JSON "
        "line each: for the index test and the benchmark; unset in production.",
    )
    outbox_relay_enabled: bool = Field(
        default=True, description="Relay stored events to Kafka; off for an API-only instance."
    )
    kafka_consumers_enabled: bool = Field(
        default=True, description="Consume events; off for an instance that serves HTTP and runs timers only."
    )
    outbox_poll_seconds: float = Field(default=1.0, gt=0)
    outbox_idle_poll_seconds: float = Field(
        default=5.0,
        gt=0,
        description="The longest wait between two relay passes that find nothing (each empty pass doubles the wait "
        "from OUTBOX_POLL_SECONDS): a write here hands its events to the relay at once; the passes find what another "
        "instance or a crash left.",
    )
    outbox_lease_seconds: float = Field(default=5.0, gt=0)
    outbox_removal_linger_seconds: float = Field(
        default=0.25,
        ge=0,
        le=1.0,
        description="How long the relay's removal of published events waits for others to go in the same round trip "
        "(the events are out already, and a write of the record meanwhile publishes its own at once: only the "
        "outbox's lease is held, so another instance's write of that record waits for a relay pass).",
    )
    clock_offset_seconds: float = Field(
        default=0.0, description="Shifts the service's clock: for tests and drills of timers only, never production."
    )
    # The HTTP edge (services/common/edge.py).
    max_body_bytes: int = Field(
        default=MiB, ge=1024, le=64 * MiB, description="The largest request body taken; a larger one is a 413."
    )
    api_docs: bool = Field(
        default=True, description="Serve the API docs (/docs, with bundled assets) and /openapi.json; off: neither."
    )
    auth_failures_per_minute: int = Field(
        default=30,
        ge=1,
        le=1000,
        description="Refused tokens one client may present in a minute; then 429 with Retry-After (per instance).",
    )
    trusted_proxies: str = Field(
        default="",
        description="Addresses or CIDR networks of reverse proxies, comma-separated, whose X-Forwarded-For names "
        "the client; empty: the client is the connection's peer.",
    )

    schema_base_url: str = Field(
        default=DEFAULT_SCHEMA_BASE,
        description="Where the clinic hosts the events' JSON Schemas, a folder URL ending with '/': each event's "
        "ce_dataschema is this plus `<type>.v<version>.json`, and every service serves that file at "
        "`/schemas/<type>.v<version>.json` with that `$id` (docs/deployment.md). The same in every service.",
    )

    @field_validator("schema_base_url")
    @classmethod
    def _schema_base_is_a_folder_url(cls, value: str) -> str:
        if not value:
            return DEFAULT_SCHEMA_BASE  # empty (as compose passes an unset variable): the default
        try:
            return checked_schema_base(value)
        except ValueError as error:
            raise ValueError(f"SCHEMA_BASE_URL: {error}") from None

    @field_validator("api_tokens")
    @classmethod
    def _tokens_parse(cls, value: SecretStr) -> SecretStr:
        parse_api_tokens(value.get_secret_value())
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_parse(cls, value: str) -> str:
        parse_networks(value)
        return value

    @field_validator("oidc_role_map")
    @classmethod
    def _role_map_parses(cls, value: str) -> str:
        parse_role_map(value)
        return value

    @field_validator("static_tokens_allowed_roles")
    @classmethod
    def _allowed_roles_parse(cls, value: str | None) -> str | None:
        if not value:
            return None  # empty (as compose passes an unset variable): the default
        _roles(value, "STATIC_TOKENS_ALLOWED_ROLES")
        return value

    @model_validator(mode="after")
    def _oidc_complete(self) -> Self:
        if self.oidc_issuer and not self.oidc_audience:
            raise ValueError("OIDC_AUDIENCE: required with OIDC_ISSUER (the audience access tokens must name)")
        if (self.oidc_jwks_url or self.oidc_audience or self.oidc_role_map) and not self.oidc_issuer:
            raise ValueError("OIDC_ISSUER: required with the other OIDC_ settings")
        return self

    @model_validator(mode="after")
    def _transport_security(self) -> Self:
        """A transport setting that cannot work stops the service at start, naming the setting (never a secret)."""
        protocol = self.kafka_security_protocol
        if protocol.startswith("SASL_"):
            login = {"KAFKA_SASL_USERNAME": self.kafka_sasl_username, "KAFKA_SASL_PASSWORD": self.kafka_sasl_password}
            missing = [name for name, value in login.items() if not value]
            if missing:
                raise ValueError(f"{' and '.join(missing)}: required with KAFKA_SECURITY_PROTOCOL={protocol}")
        if self.kafka_ssl_ca_file is not None:
            if not protocol.endswith("SSL"):
                raise ValueError(
                    f"KAFKA_SSL_CA_FILE is pointless with KAFKA_SECURITY_PROTOCOL={protocol}, which does not use TLS: "
                    "choose SSL or SASL_SSL, or unset KAFKA_SSL_CA_FILE"
                )
            _check_ca_file("KAFKA_SSL_CA_FILE", self.kafka_ssl_ca_file)
        if self.mongodb_tls_ca_file is not None:
            if _tls_switched_off(self.mongodb_url.get_secret_value()):
                raise ValueError(
                    "MONGODB_TLS_CA_FILE is pointless with TLS switched off in MONGODB_URL (tls=false): "
                    "set tls=true there, or unset MONGODB_TLS_CA_FILE"
                )
            _check_ca_file("MONGODB_TLS_CA_FILE", self.mongodb_tls_ca_file)
        return self

    @property
    def oidc(self) -> OidcConfig | None:
        if not self.oidc_issuer:
            return None
        return OidcConfig(
            issuer=self.oidc_issuer,
            audience=self.oidc_audience,
            jwks_url=self.oidc_jwks_url or None,
            roles_claim=self.oidc_roles_claim,
            role_map=parse_role_map(self.oidc_role_map),
            leeway_seconds=self.oidc_leeway_seconds,
            refresh_interval=self.oidc_keys_refresh_seconds,
        )

    @property
    def edge(self) -> EdgeConfig:
        return EdgeConfig(
            max_body_bytes=self.max_body_bytes,
            api_docs=self.api_docs,
            auth_failures_per_minute=self.auth_failures_per_minute,
            trusted_proxies=parse_networks(self.trusted_proxies),
        )

    @property
    def static_roles_allowed(self) -> frozenset[Role]:
        if self.static_tokens_allowed_roles is not None:
            return _roles(self.static_tokens_allowed_roles, "STATIC_TOKENS_ALLOWED_ROLES")
        return SERVICE_ROLES if self.oidc_issuer else frozenset(Role)

    @property
    def database_name(self) -> str:
        """This service's own MongoDB database (each service names the setting after itself)."""
        raise NotImplementedError

    @property
    def token_roles(self) -> dict[str, Role]:
        return parse_api_tokens(self.api_tokens.get_secret_value())
