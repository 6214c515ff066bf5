# Importing the Celery app here makes `@shared_task` bind to it in every process that loads
# Django (the web server, the worker, the tests), as the Celery docs for Django recommend.
from cardiospike.celery import app as celery_app

__all__ = ["celery_app"]
