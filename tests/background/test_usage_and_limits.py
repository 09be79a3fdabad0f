"""Usage tracking in Redis and the Redis-backed limits."""

from datetime import date, timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from core.redis import redis_client
from tests.background.conftest import RoundTrips
from tests.conftest import bearer
from tokens import usage
from tokens.models import PersonalAccessToken, TokenUsageDay

pytestmark = pytest.mark.django_db

ME = "/api/v1/me"


def total_uses(token) -> int:
    return sum(TokenUsageDay.objects.filter(token=token).values_list("count", flat=True))


def test_with_redis_a_request_writes_nothing_to_the_database(api, world, with_redis, django_assert_num_queries):
    issued = world.issue()
    client = bearer(api, issued.plaintext)
    # The first request reads the token (one query); from then on it comes
    # from the cache: no query at all.
    for expected_queries in (1, 0, 0, 0, 0):
        with django_assert_num_queries(expected_queries):
            assert client.get(ME, REMOTE_ADDR="10.0.0.7").status_code == 200
    usage.usage_push()  # what the process's listener does within a second
    issued.token.refresh_from_db()
    assert issued.token.last_used_at is None
    assert with_redis.hget(f"usage:counts:{timezone.now().date().isoformat()}", issued.token.pk) == b"5"
    assert usage.usage_flush_from_redis() == 5
    issued.token.refresh_from_db()
    assert total_uses(issued.token) == 5 and issued.token.last_used_ip == "10.0.0.7"
    assert issued.token.last_used_at is not None
    assert usage.usage_flush_from_redis() == 0 and total_uses(issued.token) == 5


def test_a_token_in_steady_use_pushes_its_count_each_time_and_its_last_use_once_a_minute(world, with_redis):
    """A process pushes a token's last use again only after
    TOKEN_LAST_USED_WRITE_INTERVAL_SECONDS or from another address, and each
    address once: so a token in steady use costs one command a push."""
    token_id, start = world.issue().token.pk, timezone.now()
    counts = f"usage:counts:{start.date().isoformat()}"

    def used(seconds: float, ip: str) -> None:
        usage.usage_count(token_id, ip=ip, now=start + timedelta(seconds=seconds))
        assert usage.usage_push()

    def last_pushed() -> tuple[float, str]:
        at, _, ip = with_redis.hget("usage:last", token_id).decode().partition("|")
        return round(float(at) - start.timestamp(), 3), ip

    used(0, "10.0.0.7")
    assert last_pushed() == (0, "10.0.0.7")
    with_redis.delete(f"usage:ips:{token_id}")
    used(30, "10.0.0.7")
    assert last_pushed() == (0, "10.0.0.7")  # not again within the minute
    assert not with_redis.exists(f"usage:ips:{token_id}")  # nor the address
    assert with_redis.hget(counts, token_id) == b"2"  # the count every time
    used(40, "10.0.0.8")  # another address: at once
    assert last_pushed() == (40, "10.0.0.8")
    assert with_redis.smembers(f"usage:ips:{token_id}") == {b"10.0.0.8"}
    used(90, "10.0.0.8")
    assert last_pushed() == (40, "10.0.0.8")
    used(100, "10.0.0.8")  # a minute after the last push
    assert last_pushed() == (100, "10.0.0.8")
    assert with_redis.hget(counts, token_id) == b"5"


def test_a_push_costs_the_same_round_trips_for_one_token_or_many(world, with_redis, monkeypatch):
    """Each day's counts, the last uses and the new addresses are each one
    command (Lua scripts for the counts and addresses), in one transaction,
    whatever the number of tokens; a Redis that lost the scripts gets them again."""
    tokens = [world.issue(f"t{number}").token.pk for number in range(3)]
    now = timezone.now()
    trips = RoundTrips(monkeypatch)

    def pushed(ids, ip=None, when=now) -> int:
        before = trips.count
        for token_id in ids:
            usage.usage_count(token_id, ip=ip, now=when)
        assert usage.usage_push()
        return trips.count - before

    pushed(tokens[:1])  # connected
    assert pushed(tokens[:1]) == pushed(range(10_000, 10_500)) == 2  # the scripts checked, then the transaction
    with_redis.script_flush()
    assert pushed(tokens) == 2 + 1  # the counts' script loaded again
    with_redis.script_flush()
    pushed(tokens, ip="10.0.0.7")  # and the addresses' (each new one is then noticed: a task queued)
    assert pushed(tokens, when=now - timedelta(days=1)) == 2
    for day, counts in ((now, [b"4", b"2", b"2"]), (now - timedelta(days=1), [b"1"] * 3)):
        assert with_redis.hmget(f"usage:counts:{day.date().isoformat()}", tokens) == counts
    assert all(with_redis.smembers(f"usage:ips:{token_id}") == {b"10.0.0.7"} for token_id in tokens)
    assert with_redis.hget("usage:counts:" + now.date().isoformat(), 10_499) == b"1"


def test_a_flush_that_dies_after_committing_is_not_counted_twice(api, world, with_redis, monkeypatch):
    issued = world.issue()
    client = bearer(api, issued.plaintext)
    for _ in range(4):
        client.get(ME)
    real_client = redis_client()
    monkeypatch.setattr(real_client, "delete", lambda *keys: 0)  # the process dies before deleting its batch
    usage.usage_flush_from_redis()
    assert total_uses(issued.token) == 4
    monkeypatch.undo()
    usage.usage_flush_from_redis()  # finds the applied batch, drops it
    client.get(ME)
    usage.usage_flush_from_redis()
    assert total_uses(issued.token) == 5
    assert not list(with_redis.scan_iter("usage:flushing:*"))


def test_without_redis_use_is_written_at_most_once_a_minute_and_counted(api, world):
    issued = world.issue()
    client = bearer(api, issued.plaintext)
    for _ in range(3):
        client.get(ME)
    usage.usage_flush_local()
    assert total_uses(issued.token) == 3
    assert TokenUsageDay.objects.get(token=issued.token).day == date.today()


def test_per_token_request_limit_is_configurable_per_tenant(api, world, with_redis):
    world.tenant.token_requests_per_minute = 3
    world.tenant.save()
    client = bearer(api, world.issue().plaintext)
    codes = [client.get(ME).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    response = client.get(ME)
    assert response.json()["error"]["code"] == "rate_limited" and 1 <= int(response["Retry-After"]) <= 60
    # Another token of the same tenant has its own allowance.
    assert bearer(api, world.issue("other").plaintext).get(ME).status_code == 200


@override_settings(AUTH_FAILURES_PER_MINUTE_PER_IP=5)
def test_failed_authentications_are_throttled_per_address_only(api, world, with_redis):
    valid = world.issue().plaintext
    for _ in range(5):
        assert api.get(ME, HTTP_AUTHORIZATION="Bearer pat_" + "A" * 36, REMOTE_ADDR="10.6.6.6").status_code == 401
    blocked = api.get(ME, HTTP_AUTHORIZATION=f"Bearer {valid}", REMOTE_ADDR="10.6.6.6")
    assert blocked.status_code == 429 and blocked["Retry-After"]
    assert api.get(ME, HTTP_AUTHORIZATION=f"Bearer {valid}", REMOTE_ADDR="10.7.7.7").status_code == 200


def test_token_creation_is_limited_to_ten_a_minute_per_user(client, world):
    import re
    import time

    client.force_login(world.user)
    if time.time() % 60 > 50:  # the limit counts in fixed minutes: start with one that will not end midway
        time.sleep(61 - time.time() % 60)
    statuses = []
    for i in range(11):
        page = client.get("/tokens/new/").content.decode()
        form_id = re.search(r'name="form_id" value="([^"]+)"', page).group(1)
        response = client.post(
            "/tokens/new/",
            {
                "form_id": form_id,
                "application": str(world.application.pk),
                "name": f"t{i}",
                "expiry_preset": "30",
                "roles": [str(world.reader.pk)],
            },
        )
        statuses.append(response.status_code)
    assert statuses == [200] * 10 + [400]
    assert "Too many token creations" in response.content.decode()
    assert PersonalAccessToken.objects.filter(owner=world.user).count() == 10
