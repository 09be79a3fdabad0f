"""Real Redis servers and a real Celery worker for the background-work tests."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager

import pytest
import redis
from django.test import override_settings
from kombu import pools as kombu_pools

from core.redis import redis_client_forget
from iam.celery import app as celery_app
from tokens import authcache, bearer, usage

REDIS_TEST_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/15")


def _require_redis(url: str) -> None:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        message = f"Redis is not reachable at {url} (make services)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@contextmanager
def _use_redis(url: str):
    """The service running with Redis at ``url``: cache, usage counters and the
    Celery broker (tasks are queued there, not run in-process)."""
    caches = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"socket_timeout": 0.5, "socket_connect_timeout": 0.5},
        }
    }
    _configure_celery(broker_url=url, task_always_eager=False)
    try:
        with override_settings(REDIS_URL=url, CACHES=caches, CELERY_BROKER_URL=url):
            yield
    finally:
        _configure_celery(broker_url="memory://", task_always_eager=True)


def _configure_celery(**conf) -> None:
    celery_app.conf.update(**conf)
    # Forget connections to the previous broker.
    if celery_app._pool is not None:
        celery_app._pool.force_close_all()
        celery_app._pool = None
    celery_app.amqp._producer_pool = None
    kombu_pools.reset()


def wait_for(predicate, timeout: float = 15.0) -> bool:
    """Whether ``predicate()`` became true within ``timeout`` seconds (work done by another thread or process)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


class RoundTrips:
    """Counts what this thread sends to Redis (a pipeline is one send), as the
    benchmark does; the listener's own connection is left out."""

    def __init__(self, monkeypatch):
        import threading

        import redis.connection

        self.count, thread = 0, threading.current_thread()
        original = redis.connection.AbstractConnection.send_packed_command

        def counted(connection, *args, **kwargs):
            if threading.current_thread() is thread:
                self.count += 1
            return original(connection, *args, **kwargs)

        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)


@pytest.fixture
def with_redis():
    """The service configured with the shared test Redis (database 15, emptied)."""
    _require_redis(REDIS_TEST_URL)
    client = redis.Redis.from_url(REDIS_TEST_URL)
    client.flushdb()
    _forget_process_state()
    with _use_redis(REDIS_TEST_URL):
        from django.core.cache import cache

        cache.clear()
        assert authcache.wait_until_listening(), "the token cache's listener did not subscribe"
        yield client
    _forget_process_state()
    client.flushdb()


def _forget_process_state() -> None:
    """What this process keeps between requests: its Redis client, cached
    tokens, leases of request allowances and buffered uses."""
    redis_client_forget()
    authcache.cache_clear()
    bearer._leases.clear()
    bearer._blocked.clear()
    bearer._unsettled.clear()
    bearer._uncounted.clear()
    with usage._buffer_lock:
        usage._buffer.clear(), usage._buffer_last.clear(), usage._buffer_addresses.clear()
        usage._buffer_since = None


class RedisServer:
    """A throwaway redis-server of our own, to stop and start in fault tests."""

    def __init__(self, persist: bool = False):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        # Persisting keeps the data across a restart (saved on shutdown), as a
        # production Redis with snapshots does; by default a restart empties it.
        self.folder = tempfile.mkdtemp(prefix="iam-redis-") if persist else None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server"),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--appendonly",
                "no",
                *(["--save", "3600 1", "--dir", self.folder] if self.folder else ["--save", ""]),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(50):
            try:
                redis.Redis.from_url(self.url, socket_connect_timeout=0.2).ping()
                return
            except redis.RedisError:
                time.sleep(0.1)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def own_redis():
    """The service configured with a Redis server the test can stop and start."""
    yield from _serve_redis(RedisServer())


@pytest.fixture
def own_persistent_redis():
    """Like own_redis, but what Redis holds survives a stop and start."""
    yield from _serve_redis(RedisServer(persist=True))


def _serve_redis(server: RedisServer):
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (make services)")
        pytest.skip("redis-server is not installed (make services)")
    server.start()
    _forget_process_state()
    with _use_redis(server.url):
        yield server
    _forget_process_state()
    server.stop()
    if server.folder:
        shutil.rmtree(server.folder, ignore_errors=True)


@pytest.fixture
def celery_worker_for(transactional_db):
    """Start a real Celery worker (threads in this process) on a Redis broker."""
    from celery.contrib.testing.worker import start_worker

    started = []

    def start(url: str):
        _configure_celery(broker_url=url, task_always_eager=False, result_backend=None)
        context = start_worker(celery_app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=10)
        context.__enter__()
        started.append(context)
        return context

    yield start
    for context in started:
        context.__exit__(None, None, None)
