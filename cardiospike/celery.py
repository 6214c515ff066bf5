"""The Celery application.

Configuration comes from Django settings under the ``CELERY_`` prefix, so the same
environment variables drive the web process and the workers. With ``REDIS_URL`` unset the
settings make every task run eagerly in the calling process (no broker needed).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cardiospike.settings")

app = Celery("cardiospike")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
