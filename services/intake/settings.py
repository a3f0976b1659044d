from dataclasses import dataclass
from pathlib import Path

from pydantic import AnyHttpUrl, Field

from services.common.edge import Network
from services.common.phones import DEFAULT_REGION, PhoneRegion
from services.common.settings import ServiceSettings

from .domain.measures import DEFAULT_MEASURES_POLICY
from .domain.placement import DEFAULT_PLACEMENT_POLICY


@dataclass(frozen=True)
class OutcomesSettings:
    min_group: int


@dataclass(frozen=True)
class LinkSettings:
    base_url: str
    hours: int
    per_minute: int
    trusted_proxies: tuple[Network, ...] = ()

    @property
    def secure(self) -> bool:
        """Links are served over HTTPS: the page's cookie is sent only over HTTPS."""
        return self.base_url.startswith("https://")


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
    outcomes_min_group: int = Field(
        default=5, ge=1, description="GET /v1/outcomes suppresses any instrument with fewer episodes than this."
    )

    public_base_url: AnyHttpUrl = Field(
        default=AnyHttpUrl("http://localhost:8001"),
        description="Where patients open questionnaire links (GET /q/{token} of this service, behind your proxy). "
        "A neutral host: a link naming a substance-use program discloses that its reader is a patient there.",
    )
    questionnaire_link_hours: int = Field(default=72, ge=1, le=24 * 30, description="How long a link stays open.")
    questionnaire_requests_per_minute: int = Field(
        default=20, ge=1, description="Page requests (GET and POST /q/…) one client may make in a minute."
    )

    @property
    def outcomes(self) -> OutcomesSettings:
        return OutcomesSettings(min_group=self.outcomes_min_group)

    @property
    def links(self) -> LinkSettings:
        return LinkSettings(
            base_url=str(self.public_base_url).rstrip("/"),
            hours=self.questionnaire_link_hours,
            per_minute=self.questionnaire_requests_per_minute,
            trusted_proxies=self.edge.trusted_proxies,
        )


SOURCE = "/stepwise/intake"
CONSUMER_GROUP = "stepwise.intake"
