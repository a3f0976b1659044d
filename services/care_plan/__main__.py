from services.common.service import serve

from .app import create_app
from .settings import CarePlanSettings

settings = CarePlanSettings()
serve(create_app(settings), settings.care_plan_port, settings.bind_host)
