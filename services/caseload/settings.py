from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr

from services.common.settings import ClinicZone, ServiceSettings

CONSUMER_GROUP = "stepwise.caseload"


class CaseloadSettings(ServiceSettings):
    SECRETS: ClassVar[tuple[str, ...]] = (*ServiceSettings.SECRETS, "console_oidc_client_secret")

    caseload_port: int = 8005
    # A read side: under load its routine lane gathers about a second of events, so that an episode's events of
    # that second are one write of its projection (``EpisodeRecords``); worklists are then up to a second behind.
    # Safety alerts ride the urgent lane, which keeps its 16 records and 50 ms.
    kafka_max_batch: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="Most records caseload applies in one batch (an episode's events of a batch are one write of its "
        "projection).",
    )
    kafka_batch_wait_ms: int = Field(
        default=1_000,
        ge=1,
        le=5_000,
        description="While caseload has records, how long the broker may hold its next fetch for more: about a "
        "second of events gathered, a worklist up to that much behind under load.",
    )
    caseload_db: str = Field(default="stepwise_caseload", description="This service's own MongoDB database.")

    @property
    def database_name(self) -> str:
        return self.caseload_db

    clinic_timezone: ClinicZone = Field(default="America/New_York", description="Whose day `today` and the census are.")
    intake_url: str = Field(
        default="http://localhost:8001",
        description="Where names are looked up with `names=true`, with the caller's own token (never stored).",
    )
    caseload_missed_in_a_row: int = Field(
        default=2,
        ge=1,
        description="Sessions missed in a row that put an episode on the missed_sessions worklist: keep it equal to "
        "the count of care_plan's first consecutive-miss rule (its default policy's `missed_2_in_a_row`, after Virtual "
        "IOP outreach practice), so the list shows who that rule acts on.",
    )
    stream_poll_seconds: float = Field(
        default=0.5, gt=0, le=10, description="How often the worklist stream looks for changed episodes."
    )
    care_plan_url: str = Field(
        default="http://localhost:8002", description="Where the console records attendance, with the person's token."
    )
    notifications_url: str = Field(
        default="http://localhost:8003",
        description="Where the console acknowledges safety alerts, with the person's token.",
    )
    authorizations_url: str = Field(
        default="http://localhost:8004",
        description="Where the console reads and records authorizations, with the person's token.",
    )
    console_base_url: str = Field(
        default="",
        description="Where staff reach the console, ending in /console (https://… behind a TLS proxy: its cookie is "
        "then Secure); with OIDC_ISSUER, <CONSOLE_BASE_URL>/callback is the redirect URI registered at the provider.",
    )
    # The console's sign-in at the clinic's OpenID Connect provider (OIDC_ISSUER): console/sign_in.py.
    console_oidc_client_id: str = Field(
        default="", description="The console's client id at the provider (required with OIDC_ISSUER)."
    )
    console_oidc_client_secret: SecretStr = Field(
        default=SecretStr(""),
        description="The console's client secret at the provider (required with OIDC_ISSUER); a secret: "
        "CONSOLE_OIDC_CLIENT_SECRET_FILE.",
    )
    console_oidc_scopes: str = Field(
        default="openid profile",
        description="The scopes the console asks for, space-separated, openid among them; add offline_access where "
        "the provider gives a refresh token only with it (Entra ID, Okta), and the API's own scope where its access "
        "tokens need one (Entra ID: api://<application id>/<scope>).",
    )
    console_idle_minutes: float = Field(
        default=15, gt=0, le=720, description="A console session without a request for this long is signed out."
    )

    def console_sign_in_problems(self) -> list[str]:
        """What the console's sign-in at the provider lacks (OIDC_ISSUER set): said by readiness and the log."""
        if not self.oidc_issuer:
            return []
        missing = {
            "CONSOLE_OIDC_CLIENT_ID is not set": not self.console_oidc_client_id,
            "CONSOLE_OIDC_CLIENT_SECRET (or CONSOLE_OIDC_CLIENT_SECRET_FILE) is not set":
                not self.console_oidc_client_secret.get_secret_value(),
            "CONSOLE_BASE_URL is not the console's address ending in /console (the redirect URI is "
            "<CONSOLE_BASE_URL>/callback)": not self.console_base_url.rstrip("/").endswith("/console"),
            "CONSOLE_OIDC_SCOPES lacks openid": "openid" not in self.console_oidc_scopes.split(),
        }  # fmt: skip
        return [problem for problem, found in missing.items() if found]

    @property
    def console_redirect_uri(self) -> str:
        return f"{self.console_base_url.rstrip('/')}/callback"

    def service_urls(self) -> dict[str, str]:
        """Where the console acts, by service."""
        return {"intake": self.intake_url, "care_plan": self.care_plan_url,
                "notifications": self.notifications_url, "authorizations": self.authorizations_url}  # fmt: skip

    rebuild_on_start: bool = Field(
        default=True,
        description="Rebuild the projection from the topics at start when it was built by another projection version.",
    )
