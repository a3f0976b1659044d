"""Settings every service shares; each service extends them with its own port and database."""

from __future__ import annotations

import socket

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .auth import Role

ROLES = frozenset(Role)


def parse_api_tokens(raw: str) -> dict[str, Role]:
    """``token:role,token:role`` → {token: role}; a clear error names the bad entry (never the token)."""
    tokens: dict[str, Role] = {}
    for position, entry in enumerate(filter(None, (part.strip() for part in raw.split(","))), start=1):
        token, separator, role = entry.rpartition(":")
        if not separator or not token:
            raise ValueError(f"API_TOKENS entry {position} is not token:role")
        if role not in ROLES:
            raise ValueError(
                f"API_TOKENS entry {position} has unknown role {role!r}; roles: {sorted(role.value for role in Role)}"
            )
        tokens[token] = Role(role)
    return tokens


class ServiceSettings(BaseSettings):
    # hide_input_in_errors: a bad setting must not print API_TOKENS (or any secret) into logs.
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", hide_input_in_errors=True)

    kafka_bootstrap_servers: str = "localhost:9092"
    kafka_topic_partitions: int = Field(default=3, ge=1)
    kafka_topic_replication: int = Field(default=1, ge=1)
    mongodb_url: str = "mongodb://localhost:27017/?directConnection=true"
    api_tokens: str = Field(default="", description="token:role,token:role")
    log_level: str = "INFO"
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
        default=100, ge=1, le=5_000, description="How long a consumer waits for records when the broker has none."
    )
    outbox_relay_enabled: bool = Field(
        default=True, description="Relay stored events to Kafka; off for an API-only instance."
    )
    kafka_consumers_enabled: bool = Field(
        default=True, description="Consume events; off for an instance that serves HTTP and runs timers only."
    )
    outbox_poll_seconds: float = Field(default=1.0, gt=0)
    outbox_lease_seconds: float = Field(default=5.0, gt=0)
    clock_offset_seconds: float = Field(
        default=0.0, description="Shifts the service's clock: for tests and drills of timers only, never production."
    )

    @field_validator("api_tokens")
    @classmethod
    def _tokens_parse(cls, value: str) -> str:
        parse_api_tokens(value)
        return value

    @property
    def database_name(self) -> str:
        """This service's own MongoDB database (each service names the setting after itself)."""
        raise NotImplementedError

    @property
    def token_roles(self) -> dict[str, Role]:
        return parse_api_tokens(self.api_tokens)
