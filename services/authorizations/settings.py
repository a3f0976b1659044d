from pathlib import Path

from pydantic import Field

from services.common.settings import ClinicZone, ServiceSettings

from .domain.policy import DEFAULT_POLICY_FILE


class AuthorizationsSettings(ServiceSettings):
    authorizations_port: int = 8004
    authorizations_db: str = Field(
        default="stepwise_authorizations", description="This service's own MongoDB database."
    )

    @property
    def database_name(self) -> str:
        return self.authorizations_db

    authorizations_policy_file: Path = Field(
        default=DEFAULT_POLICY_FILE, description="Payers' rules, default codes and the clinic's closures (YAML)."
    )
    clinic_timezone: ClinicZone = Field(default="America/New_York", description="IANA zone of the clinic's days.")
    review_lead_business_days: int = Field(
        default=2, ge=0, le=30,
        description="A review is due this many business days (weekends and the policy's closures skipped) before "
        "the earliest of its dates; a payer's own lead time in the policy wins.",
    )  # fmt: skip
    units_low_days: int = Field(
        default=7, ge=1, le=60, description="Units are low when fewer remain than the calendar's next days need."
    )
    timer_poll_seconds: float = Field(
        default=60.0, gt=0, description="How often coverage due its daily look (reviews falling due) is looked for."
    )


SOURCE = "/stepwise/authorizations"
CONSUMER_GROUP = "stepwise.authorizations"
