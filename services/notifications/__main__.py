from services.common.service import serve

from .app import create_app
from .settings import NotificationsSettings

settings = NotificationsSettings()
serve(create_app(settings), settings.notifications_port, settings.bind_host)
