from pydantic import Field

from services.common.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    intake_port: int = 8001
    intake_db: str = Field(default="stepwise_intake", description="This service's own MongoDB database.")


SOURCE = "/stepwise/intake"
