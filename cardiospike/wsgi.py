"""WSGI entry point, for deployments that serve plain HTTP only (no websockets)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cardiospike.settings")
application = get_wsgi_application()
