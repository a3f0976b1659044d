from services.common.service import serve

from .app import create_app
from .settings import IntakeSettings

settings = IntakeSettings()
serve(create_app(settings), settings.intake_port, settings.bind_host)
