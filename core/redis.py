"""The process's one Redis client (usage counts, limits, the token cache's marks)."""

import redis
from django.conf import settings

_client: redis.Redis | None = None


def redis_client() -> redis.Redis | None:
    """The shared Redis client, or None when the service runs without Redis."""
    global _client
    if not settings.REDIS_URL:
        return None
    if _client is None:
        # Short timeouts: a Redis outage slows a request by at most a second, never hangs it.
        _client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5, decode_responses=True
        )
    return _client


def redis_client_forget() -> None:
    """Drop the client, so the next use connects afresh (after REDIS_URL changed)."""
    global _client
    _client = None
