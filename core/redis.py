"""The process's one Redis client (usage counts, limits, the token cache's marks)."""

import redis
from django.conf import settings
from redis.commands.core import Script

_client: redis.Redis | None = None
_scripts: list[Script] = []


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


def redis_script(source: str) -> Script:
    """A Lua script that does the work of many commands in one (EVALSHA), atomically.
    Call it with ``client=``; ``redis_scripts_load`` puts it in Redis ahead of its first use."""
    script = Script(None, source.encode())
    _scripts.append(script)
    return script


def redis_scripts_load(client: redis.Redis) -> None:
    """Load every script into Redis, so none costs a NOSCRIPT retry on a request.
    Call on every (re)connection: a restarted Redis has none (redis-py loads one it lacks, too)."""
    for script in _scripts:
        client.script_load(script.script)
