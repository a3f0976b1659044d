from services.common.service import serve

from .app import create_app
from .settings import AuthorizationsSettings

settings = AuthorizationsSettings()
serve(create_app(settings), settings.authorizations_port, settings.bind_host)
