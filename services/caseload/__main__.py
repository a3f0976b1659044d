from services.common.service import serve

from .app import create_app
from .settings import CaseloadSettings

settings = CaseloadSettings()
serve(create_app(settings), settings.caseload_port, settings.bind_host)
