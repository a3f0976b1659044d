from pathlib import Path

from pydantic import Field

from services.common.phones import DEFAULT_REGION, PhoneRegion
from services.common.settings import ServiceSettings

from .domain.measures import DEFAULT_MEASURES_POLICY
from .domain.placement import DEFAULT_PLACEMENT_POLICY


class IntakeSettings(ServiceSettings):
    intake_port: int = 8001
    intake_db: str = Field(default="stepwise_intake", description="This service's own MongoDB database.")

    @property
    def database_name(self) -> str:
        return self.intake_db

    intake_placement_policy_file: Path = Field(
        default=DEFAULT_PLACEMENT_POLICY, description="Level-of-care placement rules (YAML) a clinic may replace."
    )
    intake_measures_policy_file: Path = Field(
        default=DEFAULT_MEASURES_POLICY,
        description="Reliable change and caseness per instrument, crisis resources (YAML) a clinic may replace.",
    )
    clinic_phone_region: PhoneRegion = DEFAULT_REGION


SOURCE = "/stepwise/intake"
CONSUMER_GROUP = "stepwise.intake"
