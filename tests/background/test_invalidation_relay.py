"""A change made by a process that cannot reach Redis, while the others can:
they are serving the entries it names, so it is kept in the database and
relayed by a process that reaches Redis (Celery beat's ``relay_invalidations``)."""

import os
import subprocess
import sys
from datetime import timedelta
from io import StringIO

import pytest
import redis
from django.conf import settings
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from iam.models import User
from tests.background.conftest import REDIS_TEST_URL, wait_for
from tests.test_readme import database_url
from tokens import authcache
from tokens.models import PendingInvalidation
from tokens.services import token_revoke
from tokens.tasks import relay_invalidations

pytestmark = pytest.mark.django_db(transaction=True)

# Another server process: authenticates each secret it reads, with its own cache and listener.
OTHER_PROCESS = """
import sys
import django
django.setup()
from core.errors import InvalidToken
from tokens import authcache
from tokens.bearer import bearer_authenticate
assert authcache.wait_until_listening()
print("ready", flush=True)
for line in sys.stdin:
    try:
        bearer_authenticate(line.strip(), ip="127.0.0.1")
        print("ok", authcache.cache_size(), flush=True)
    except InvalidToken:
        print("refused", authcache.cache_size(), flush=True)
"""


@pytest.fixture
def other_process(with_redis):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "REDIS_URL": REDIS_TEST_URL,
    }
    process = subprocess.Popen(
        [sys.executable, "-c", OTHER_PROCESS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=settings.BASE_DIR,
    )
    assert process.stdout.readline().strip() == "ready"

    def authenticate(secret: str) -> str:
        process.stdin.write(secret + "\n")
        process.stdin.flush()
        return process.stdout.readline().strip()

    yield authenticate
    process.kill()
    process.wait(timeout=10)


@pytest.fixture
def redis_out_of_reach(monkeypatch):
    """This process's broadcasts cannot reach Redis (its listener, and everyone else, still can)."""
    unreachable = redis.Redis.from_url("redis://127.0.0.1:1/15", socket_connect_timeout=0.2)
    monkeypatch.setattr(authcache, "redis_client", lambda: unreachable)
    return monkeypatch


def test_a_revoke_whose_broadcast_failed_is_relayed_to_the_process_still_serving_the_token(
    world, with_redis, other_process, redis_out_of_reach, caplog, celery_worker_for
):
    issued = world.issue()
    assert other_process(issued.plaintext) == "ok 1"
    assert other_process(issued.plaintext) == "ok 1"  # from its cache

    token_revoke(token=issued.token, actor=None, actor_label="test")

    # The other process never heard: it serves the cached token until the relay
    # (without it, until TOKEN_CACHE_SECONDS).
    assert "kept for relaying" in caplog.text
    assert list(PendingInvalidation.objects.values_list("scope", flat=True).distinct()) == [f"token:{issued.token.pk}"]
    assert other_process(issued.plaintext) == "ok 1"
    assert relay_invalidations() == 0  # still out of this process's reach: nothing lost
    assert PendingInvalidation.objects.exists()

    redis_out_of_reach.undo()
    celery_worker_for(REDIS_TEST_URL)  # a real worker, which reaches Redis, runs beat's task
    relay_invalidations.delay()
    assert wait_for(lambda: not PendingInvalidation.objects.exists())
    assert other_process(issued.plaintext).startswith("refused")
    assert relay_invalidations() == 0


def test_a_change_rolled_back_leaves_nothing_to_relay(world, with_redis, redis_out_of_reach):
    issued = world.issue()
    with pytest.raises(RuntimeError), transaction.atomic():
        token_revoke(token=issued.token, actor=None, actor_label="test")
        assert PendingInvalidation.objects.count() == 1  # kept in the change's own transaction
        raise RuntimeError("the change fails after its broadcast")
    assert not PendingInvalidation.objects.exists()


def test_a_change_older_than_the_relay_horizon_is_dropped_unbroadcast(world, with_redis, caplog):
    """Every entry loaded before it has been reloaded since."""
    long_ago = timezone.now() - authcache.relay_horizon() - timedelta(seconds=1)
    PendingInvalidation.objects.create(scope="tenant:1", created_at=long_ago)
    PendingInvalidation.objects.create(scope="user:2", created_at=timezone.now())
    PendingInvalidation.objects.create(scope="user:2", created_at=timezone.now())
    with with_redis.pubsub() as heard:
        heard.subscribe(authcache.channel_of(with_redis))
        assert heard.get_message(timeout=1)["type"] == "subscribe"
        assert relay_invalidations() == 1  # the recent scope, once
        message = heard.get_message(timeout=1)
    assert message["data"].decode().partition(" ")[2] == "user:2"
    assert not PendingInvalidation.objects.exists()


def test_beat_relays_invalidations_every_few_seconds():
    entry = settings.CELERY_BEAT_SCHEDULE["relay-invalidations"]
    assert entry["task"] == "tokens.tasks.relay_invalidations"
    assert entry["schedule"] <= 5


def test_after_an_sql_edit_token_cache_clear_makes_every_process_reload(world, with_redis, other_process):
    issued = world.issue()
    assert other_process(issued.plaintext) == "ok 1"
    User.objects.filter(pk=world.user.pk).update(is_active=False)  # as in SQL: no signal
    assert other_process(issued.plaintext) == "ok 1"  # nobody heard of it

    out = StringIO()
    call_command("token_cache_clear", stdout=out)

    assert "Every listening process emptied its token cache." in out.getvalue()
    assert other_process(issued.plaintext).startswith("refused")


def test_token_cache_clear_out_of_reach_of_redis_is_kept_for_the_relay(with_redis, redis_out_of_reach):
    out = StringIO()
    call_command("token_cache_clear", stdout=out)
    assert "kept and relayed" in out.getvalue()
    assert list(PendingInvalidation.objects.values_list("scope", flat=True)) == [authcache.ALL]


def test_token_cache_clear_without_redis_says_nothing_is_cached():
    out = StringIO()
    call_command("token_cache_clear", stdout=out)
    assert "nothing to clear" in out.getvalue()


def test_many_changes_kept_are_relayed_as_one_clear_of_everything(with_redis):
    now = timezone.now()
    PendingInvalidation.objects.bulk_create(
        PendingInvalidation(scope=f"token:{n}", created_at=now) for n in range(authcache.RELAY_ALL_ABOVE + 1)
    )
    with with_redis.pubsub() as heard:
        heard.subscribe(authcache.channel_of(with_redis))
        assert heard.get_message(timeout=1)["type"] == "subscribe"
        assert relay_invalidations() == 1
        message = heard.get_message(timeout=1)
    assert message["data"].decode().partition(" ")[2] == authcache.ALL
    assert not PendingInvalidation.objects.exists()
