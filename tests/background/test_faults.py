"""Redis outages and several server processes: nothing lost, nobody let in."""

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from core.redis import redis_client_forget
from iam.models import ServiceRole
from tests.background.conftest import REDIS_TEST_URL, _forget_process_state, _require_redis, _use_redis
from tests.conftest import bearer
from tests.factories import service_role
from tokens import authcache, usage
from tokens.models import PersonalAccessToken, TokenUsageDay
from tokens.services import token_create, token_revoke

pytestmark = pytest.mark.django_db

ME = "/api/v1/me"


def total_uses(token) -> int:
    return sum(TokenUsageDay.objects.filter(token=token).values_list("count", flat=True))


def test_redis_down_the_api_still_authenticates_and_counts_are_not_lost_or_doubled(api, world, own_redis):
    issued = world.issue()
    client = bearer(api, issued.plaintext)
    for _ in range(2):
        assert client.get(ME).status_code == 200
    usage.usage_push()  # counted in Redis
    own_redis.stop()
    for _ in range(3):
        response = client.get(ME)
        assert response.status_code == 200  # from the cache or the database; limits fail open
    from rest_framework.test import APIClient

    assert APIClient().get(ME, HTTP_AUTHORIZATION="Bearer pat_" + "A" * 36).status_code == 401
    assert not usage.usage_push()  # Redis is down: the process keeps what it counted
    own_redis.start()  # an empty Redis comes back (what it held was lost with it)
    redis_client_forget()
    client.get(ME)
    usage.usage_flush_local()
    usage.usage_flush_from_redis()
    usage.usage_flush_from_redis()
    assert total_uses(issued.token) == 4  # the three of the outage and the one after


def test_health_check_reports_a_redis_outage_without_failing(api, world, own_redis, main_admin):
    token = token_create(
        owner=main_admin,
        application=None,
        name="health",
        role_codes=[ServiceRole.DEVELOPER],
        expires_at=timezone.now() + timedelta(days=1),
    ).plaintext
    own_redis.stop()
    response = bearer(api, token).get("/api/v1/admin/health")
    assert response.status_code == 503
    assert response.json()["checks"]["cache"]["ok"] is False and response.json()["checks"]["database"]["ok"]


def test_a_listener_left_behind_by_a_changed_redis_does_not_empty_its_successors_cache(
    api, world, own_redis, django_assert_num_queries
):
    """A process whose Redis URL changes (as between two tests) starts a new
    listener; the old one, still retrying its dead server, winds down without
    touching the cache its successor now fills."""
    client = bearer(api, world.issue().plaintext)
    assert client.get(ME).status_code == 200
    left_behind = authcache._current
    own_redis.stop()  # the old listener now reconnects in a loop
    _require_redis(REDIS_TEST_URL)
    _forget_process_state()
    with _use_redis(REDIS_TEST_URL):
        assert authcache.wait_until_listening()
        assert client.get(ME).status_code == 200
        left_behind._drop_subscription()  # as when it finally gives up on its dead server
        left_behind.join(timeout=5)
        assert not left_behind.is_alive()
        with django_assert_num_queries(0):
            assert client.get(ME).status_code == 200


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def _call(port: int, token: str, path: str = ME, method: str = "GET") -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method, headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except urllib.error.URLError:
        return 0  # not listening yet


@pytest.mark.django_db(transaction=True)
def test_a_revoke_through_one_process_is_refused_by_the_next_request_to_another(world, own_redis):
    for code in ServiceRole:
        service_role(code)
    from tests.factories import UserFactory, grant

    admin = UserFactory(tenant=world.tenant, username="revoker")
    grant(admin, service_role(ServiceRole.USER_ADMINISTRATOR))
    admin_token = token_create(
        owner=admin,
        application=None,
        name="manage",
        expires_at=timezone.now() + timedelta(days=1),
        role_codes=[ServiceRole.USER_ADMINISTRATOR],
    ).plaintext
    victim = world.issue("victim")
    with servers(2, own_redis.url) as ports:
        for _ in range(3):  # warm: the second process serves this token from its cache
            assert _call(ports[1], victim.plaintext) == 200
        path = f"/api/v1/users/{world.user.pk}/personal-access-tokens/victim"
        assert _call(ports[0], admin_token, path, method="DELETE") == 204
        assert _call(ports[1], victim.plaintext) == 401
        assert _call(ports[0], victim.plaintext) == 401
        assert PersonalAccessToken.objects.get(pk=victim.token.pk).status == "revoked"


@pytest.mark.django_db(transaction=True)
def test_a_revoke_made_while_redis_is_down_is_refused_by_an_idle_process_once_redis_is_back(
    world, own_persistent_redis
):
    """The revoker could not tell anyone; the other process served the token
    from its cache before the outage and made no request during it. Redis
    comes back with its old data: the other process must not trust its cache."""
    victim = world.issue("victim")
    with servers(1, own_persistent_redis.url) as (port,):
        for _ in range(3):
            assert _call(port, victim.plaintext) == 200  # now cached there
        redis.Redis.from_url(own_persistent_redis.url).set("before the outage", 1)
        own_persistent_redis.stop()
        token_revoke(token=victim.token, actor=None, actor_label="incident response")
        own_persistent_redis.start()
        back = redis.Redis.from_url(own_persistent_redis.url)
        assert back.exists("before the outage")  # Redis kept its data across the restart
        deadline = time.monotonic() + 10
        while back.pubsub_numsub(authcache.channel_of(back))[0][1] < 1:  # the server's listener is back
            assert time.monotonic() < deadline, "the server never subscribed again"
            time.sleep(0.05)
        assert _call(port, victim.plaintext) == 401


@contextmanager
def servers(count: int, redis_url: str):
    """``count`` real server processes on the test database and ``redis_url``; yields their ports."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _database_url(),
        "REDIS_URL": redis_url,
    }
    ports = [_free_port() for _ in range(count)]
    processes = [
        subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--nothreading"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    try:
        for port in ports:
            deadline = time.monotonic() + 20
            while _call(port, "pat_probe") == 0:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        yield ports
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)


@pytest.mark.django_db(transaction=True)
def test_webhook_events_made_while_redis_is_down_wait_in_the_database_and_go_out_after(world, own_redis):
    from tests.tokens.test_webhooks import Receiver
    from tokens.models import DeliveryStatus, WebhookDelivery
    from tokens.webhooks import webhook_deliveries_due, webhook_deliveries_send, webhook_endpoint_create

    hooks = Receiver()
    try:
        endpoint = webhook_endpoint_create(tenant=world.tenant, url=hooks.url, events=["token.created"], actor=None)
        own_redis.stop()
        issued = world.issue("made during the outage")  # the broker cannot be reached: the row waits
        assert issued.token.pk and hooks.received == []
        assert WebhookDelivery.objects.get().status == DeliveryStatus.PENDING
        own_redis.start()
        redis_client_forget()
        assert webhook_deliveries_due() == [endpoint.endpoint.pk]  # what the sweep queues
        assert webhook_deliveries_send(endpoint.endpoint.pk) == 1
        assert len(hooks.received) == 1 and WebhookDelivery.objects.get().status == DeliveryStatus.DELIVERED
    finally:
        hooks.close()
