"""How every Celery task of the service retries: on transient failures
(connections, timeouts, a database that went away), with backoff."""

from django.db import OperationalError

TRANSIENT = (ConnectionError, TimeoutError, OSError, OperationalError)
RETRY = {"autoretry_for": TRANSIENT, "retry_backoff": True, "retry_backoff_max": 300, "max_retries": 8}
