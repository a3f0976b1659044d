from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr

from services.common.settings import ClinicZone, ServiceSettings

from .domain.policy import DEFAULT_POLICY_FILE


class CarePlanSettings(ServiceSettings):
    SECRETS: ClassVar[tuple[str, ...]] = (*ServiceSettings.SECRETS, "intake_token")

    care_plan_port: int = 8002
    care_plan_db: str = Field(default="stepwise_care_plan", description="This service's own MongoDB database.")

    @property
    def database_name(self) -> str:
        return self.care_plan_db

    care_plan_policy_file: Path = DEFAULT_POLICY_FILE
    clinic_timezone: ClinicZone = Field(default="America/New_York", description="IANA zone of the clinic's sessions.")
    intake_url: str = Field(default="http://localhost:8001", description="Where consents are checked.")
    intake_token: SecretStr = Field(
        default=SecretStr(""), description="Bearer token with the 'care_plan' role at intake (booking family sessions)."
    )
    timer_poll_seconds: float = Field(
        default=5.0, gt=0, description="How often due timers (no-shows, weeks) are looked for."
    )


SOURCE = "/stepwise/care-plan"
CONSUMER_GROUP = "stepwise.care_plan"
