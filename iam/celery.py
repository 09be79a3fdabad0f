"""The Celery app. Without REDIS_URL, settings make tasks run in-process."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "iam.settings")

app = Celery("iam")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
