"""ASGI entry point: daphne serves HTTP and websockets from this one application.

daphne cardiospike.asgi:application
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cardiospike.settings")

# Django must be set up before anything imports models (consumers, auth middleware).
django.setup(set_prefix=False)

from django.conf import settings  # noqa: E402

from cardiospike.handlers import SyncChainASGIHandler  # noqa: E402

django_asgi_app = SyncChainASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from monitoring.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Origin checked against ALLOWED_HOSTS (no cross-site websocket hijacking), then the
        # Django session resolves scope["user"]; consumers refuse anonymous users themselves.
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)

if settings.PERIODIC_IN_SERVER:
    # no broker, so no celery beat: the server runs its schedule (monitoring/periodic.py)
    from monitoring.periodic import ScheduleInServer

    application = ScheduleInServer(application)
