from __future__ import annotations

from pydantic import Field

from services.common.settings import ClinicZone, ServiceSettings

CONSUMER_GROUP = "stepwise.caseload"


class CaseloadSettings(ServiceSettings):
    caseload_port: int = 8005
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
        description="Where staff reach the console (https://… behind a TLS proxy: its cookie is then Secure).",
    )
    console_idle_minutes: float = Field(
        default=15, gt=0, le=720, description="A console session without a request for this long is signed out."
    )

    def service_urls(self) -> dict[str, str]:
        """Where the console acts, by service."""
        return {"intake": self.intake_url, "care_plan": self.care_plan_url,
                "notifications": self.notifications_url, "authorizations": self.authorizations_url}  # fmt: skip

    rebuild_on_start: bool = Field(
        default=True,
        description="Rebuild the projection from the topics at start when it was built by another projection version.",
    )
