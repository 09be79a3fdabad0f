"""Redis outages and several server processes: nothing lost, nobody let in."""

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from iam.models import ServiceRole
from tests.conftest import bearer
from tests.factories import service_role
from tokens import usage
from tokens.models import PersonalAccessToken, TokenUsageDay
from tokens.services import token_create

pytestmark = pytest.mark.django_db

ME = "/api/v1/me"


def total_uses(token) -> int:
    return sum(TokenUsageDay.objects.filter(token=token).values_list("count", flat=True))


def test_redis_down_the_api_still_authenticates_and_counts_are_not_lost_or_doubled(api, world, own_redis):
    issued = world.issue()
    client = bearer(api, issued.plaintext)
    for _ in range(2):
        assert client.get(ME).status_code == 200  # counted in Redis
    own_redis.stop()
    for _ in range(3):
        response = client.get(ME)
        assert response.status_code == 200  # from the database; limits fail open
    from rest_framework.test import APIClient

    assert APIClient().get(ME, HTTP_AUTHORIZATION="Bearer pat_" + "A" * 36).status_code == 401
    usage.usage_flush_local()  # what the outage counted in memory
    assert total_uses(issued.token) == 3
    own_redis.start()  # an empty Redis comes back (its counts were lost with it)
    usage._client = None
    client.get(ME)
    usage.usage_flush_from_redis()
    usage.usage_flush_from_redis()
    assert total_uses(issued.token) == 4


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
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": _database_url(),
        "REDIS_URL": own_redis.url,
    }
    ports = [_free_port(), _free_port()]
    servers = [
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
            while _call(port, victim.plaintext) != 200:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert _call(ports[1], victim.plaintext) == 200  # warm: the second process has served this token
        path = f"/api/v1/users/{world.user.pk}/personal-access-tokens/victim"
        assert _call(ports[0], admin_token, path, method="DELETE") == 204
        assert _call(ports[1], victim.plaintext) == 401
        assert _call(ports[0], victim.plaintext) == 401
        assert PersonalAccessToken.objects.get(pk=victim.token.pk).status == "revoked"
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=10)
