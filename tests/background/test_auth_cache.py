"""The cache of authenticated tokens (with Redis): every change that can alter
an authentication is seen by the very next request, and steady state costs
no query."""

import dataclasses
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from core.errors import InvalidToken
from iam.services import role_grant_remove, role_set_pat_eligible, user_set_active, user_set_pat_creation_right
from iam.tenancy import tenant_application_set_pats_allowed
from tenants.models import Tenant
from tests.background.conftest import RoundTrips, wait_for
from tests.conftest import bearer
from tests.factories import RoleFactory, TenantFactory, grant
from tokens import authcache, keys
from tokens.bearer import bearer_authenticate, leases_take_ahead
from tokens.idle import idle_tokens_sweep
from tokens.models import PersonalAccessToken
from tokens.oauth import oauth_client_create, revoke, token_exchange
from tokens.rules import evaluate
from tokens.services import token_delete, token_edit, token_revoke
from tokens.verification import credential_load

pytestmark = pytest.mark.django_db

ME = "/api/v1/me"


def warm(client, django_assert_num_queries) -> None:
    """Authenticate until the token is served from the cache (no query)."""
    assert client.get(ME).status_code == 200
    with django_assert_num_queries(0):
        assert client.get(ME).status_code == 200


def permissions(client) -> set[str]:
    return set(client.get(ME).json()["permissions"])


REFUSING_CHANGES = {
    "token revoked": lambda w, t: token_revoke(token=t, actor=None, actor_label="test"),
    "token deleted by its owner": lambda w, t: token_delete(token=t, actor=w.user),
    "owner deactivated": lambda w, t: user_set_active(user=w.user, active=False, actor=None),
    "owner's PAT right removed": lambda w, t: user_set_pat_creation_right(user=w.user, allowed=False, actor=None),
    "role no longer PAT-eligible": lambda w, t: role_set_pat_eligible(role=w.reader, eligible=False, actor=None),
    "role grant removed": lambda w, t: role_grant_remove(user=w.user, role=w.writer, actor=None),
    "application switched off": lambda w, t: tenant_application_set_pats_allowed(
        tenant=w.tenant, application=w.application, allowed=False, actor=None
    ),
    "ended by the unused-token policy (a batched UPDATE)": lambda w, t: _ended_for_being_unused(w, t),
    "an edit adds a role that needs approval": lambda w, t: _edited_to_need_approval(w, t),
    # Outside the services (a shell, a data migration): still seen.
    "owner deactivated by a plain save": lambda w, t: _plain_save(w.user, is_active=False),
    "owner moved to another tenant": lambda w, t: _plain_save(w.user, tenant=TenantFactory(slug="elsewhere")),
}


def _ended_for_being_unused(world, token) -> None:
    # Rows changed without a signal, as the sweep's own UPDATE is: only its invalidation can tell the cache.
    now = timezone.now()
    Tenant.objects.filter(pk=world.tenant.pk).update(unused_token_days=7)
    PersonalAccessToken.objects.filter(pk=token.pk).update(
        created_at=now - timedelta(days=30),
        last_used_at=now - timedelta(days=30),
        unused_warned_at=now - timedelta(days=8),
    )
    assert idle_tokens_sweep(now)["ended"] == 1


def _edited_to_need_approval(world, token) -> None:
    role = RoleFactory(application=world.application, code="audit", needs_token_approval=True)
    grant(world.user, role)
    token_edit(token=token, actor=world.user, role_codes=[world.reader.code, role.code])


def _plain_save(instance, **fields) -> None:
    for name, value in fields.items():
        setattr(instance, name, value)
    instance.save()


@pytest.mark.parametrize("change", REFUSING_CHANGES, ids=list(REFUSING_CHANGES))
def test_a_change_that_stops_a_cached_token_is_seen_by_the_next_request(
    api, world, with_redis, django_assert_num_queries, change
):
    issued = world.issue()
    client = bearer(api, issued.plaintext)
    warm(client, django_assert_num_queries)
    REFUSING_CHANGES[change](world, issued.token)
    assert client.get(ME).status_code == 401


def test_a_narrowed_token_loses_the_permission_at_once_and_regains_it(
    api, world, with_redis, django_assert_num_queries
):
    issued = world.issue()
    client = bearer(api, issued.plaintext)
    warm(client, django_assert_num_queries)
    assert permissions(client) == {"orders.read", "orders.write"}
    token_edit(token=issued.token, actor=world.user, role_codes=[world.reader.code])
    assert permissions(client) == {"orders.read"}
    token_edit(token=issued.token, actor=world.user, role_codes=[world.reader.code, world.writer.code])
    assert permissions(client) == {"orders.read", "orders.write"}
    world.writer.delete()
    assert permissions(client) == {"orders.read"}


def test_a_reactivated_owner_is_let_in_again_at_once(api, world, with_redis, django_assert_num_queries):
    issued = world.issue()
    client = bearer(api, issued.plaintext)
    warm(client, django_assert_num_queries)
    user_set_active(user=world.user, active=False, actor=None)
    assert client.get(ME).status_code == 401
    user_set_active(user=world.user, active=True, actor=None)
    assert client.get(ME).status_code == 200


def test_a_lowered_request_limit_applies_at_once(api, world, with_redis, django_assert_num_queries):
    issued = world.issue()
    client = bearer(api, issued.plaintext)
    warm(client, django_assert_num_queries)  # two requests served this minute
    world.tenant.token_requests_per_minute = 3
    world.tenant.save(update_fields=["token_requests_per_minute"])
    statuses = [client.get(ME).status_code for _ in range(3)]
    # Never more than the new limit in the minute (leases taken under the old
    # limit count against it, so the rest of the minute may be refused).
    assert statuses.count(200) <= 1 and statuses[-1] == 429


def test_expiry_is_exact_for_a_cached_token(world, with_redis):
    issued = world.issue(days=1)
    for _ in range(2):
        bearer_authenticate(issued.plaintext, ip="10.0.0.1")
    assert authcache.cache_lookup(keys.digest(issued.plaintext)) is not None
    expires_at = issued.token.expires_at
    assert bearer_authenticate(issued.plaintext, ip="10.0.0.1", now=expires_at - timedelta(microseconds=1))
    for at_or_after in (expires_at, expires_at + timedelta(seconds=1)):
        with pytest.raises(InvalidToken):
            bearer_authenticate(issued.plaintext, ip="10.0.0.1", now=at_or_after)


def test_a_cached_token_is_handed_to_each_request_as_its_own_copy(world, with_redis):
    issued = world.issue()
    first = bearer_authenticate(issued.plaintext, ip="10.0.0.1")
    assert authcache.cache_lookup(keys.digest(issued.plaintext)) is not None
    first.token.name, first.token.owner.username = "changed by a request", "someone else"
    second = bearer_authenticate(issued.plaintext, ip="10.0.0.1")  # from the cache
    assert second.token is not first.token and second.token.owner is not first.token.owner
    assert (second.token.name, second.token.owner.username) == (issued.token.name, world.user.username)


@pytest.mark.parametrize("status", ["active", "revoked", "deleted"])
@pytest.mark.parametrize("owner_is_active", [True, False])
def test_a_cached_state_is_the_rules_state_at_every_instant(world, status, owner_is_active):
    """An entry evaluates the rules once for the time before expiry; at any
    instant it must answer what the rules answer then."""
    issued = world.issue(days=1)
    loaded = credential_load(issued.plaintext)
    facts = dataclasses.replace(loaded.facts, status=status, owner_is_active=owner_is_active)
    entry = authcache.Entry.of(dataclasses.replace(loaded, facts=facts), stale_after=0)
    expires_at = facts.expires_at
    for now in (timezone.now(), expires_at - timedelta(microseconds=1), expires_at, expires_at + timedelta(days=1)):
        assert entry.state(now) == evaluate(facts, now)


def test_another_tenants_changes_leave_the_cache_alone(api, world, other_world, with_redis, django_assert_num_queries):
    issued = world.issue()
    client = bearer(api, issued.plaintext)
    warm(client, django_assert_num_queries)
    other = other_world.issue()
    token_revoke(token=other.token, actor=None, actor_label="test")
    tenant_application_set_pats_allowed(
        tenant=other_world.tenant, application=other_world.application, allowed=False, actor=None
    )
    with django_assert_num_queries(0):
        assert client.get(ME).status_code == 200


def test_a_change_to_one_token_leaves_its_neighbours_cached(api, world, with_redis, django_assert_num_queries):
    issued = world.issue("kept")
    client = bearer(api, issued.plaintext)
    warm(client, django_assert_num_queries)
    neighbour = world.issue("neighbour")  # same owner, same tenant
    neighbour_client = bearer(APIClient(), neighbour.plaintext)
    warm(neighbour_client, django_assert_num_queries)
    token_edit(token=neighbour.token, actor=world.user, name="renamed")
    token_revoke(token=neighbour.token, actor=None, actor_label="test")
    with django_assert_num_queries(0):
        assert client.get(ME).status_code == 200
    assert neighbour_client.get(ME).status_code == 401


def test_another_redis_databases_invalidations_are_not_heard(api, world, with_redis, django_assert_num_queries):
    """Pub/Sub channels span a server's databases: a deployment (or a benchmark)
    on another database must not empty this one's cache."""
    import time

    issued = world.issue()
    client = bearer(api, issued.plaintext)
    warm(client, django_assert_num_queries)
    other_database = authcache.channel_of(with_redis).rpartition(":")[0] + ":12"
    with_redis.publish(other_database, "nonce *")
    time.sleep(0.3)
    with django_assert_num_queries(0):
        assert client.get(ME).status_code == 200


def test_exchanged_access_tokens_are_cached_and_stop_with_their_pat_or_their_revocation(
    api, world, with_redis, django_assert_num_queries
):
    oauth = oauth_client_create(application=world.application, name="crm", actor=None, token_exchange=True)
    issued = world.issue()

    def exchanged() -> str:
        from tokens.oauth import PAT_TOKEN_TYPE

        return token_exchange(client=oauth.client, subject_token=issued.plaintext, subject_token_type=PAT_TOKEN_TYPE)[
            "access_token"
        ]

    first, second = exchanged(), exchanged()
    client = bearer(api, first)
    warm(client, django_assert_num_queries)
    revoke(client=oauth.client, value=first)
    assert client.get(ME).status_code == 401
    client = bearer(api, second)
    warm(client, django_assert_num_queries)
    token_revoke(token=issued.token, actor=None, actor_label="test")
    assert client.get(ME).status_code == 401


def test_without_redis_nothing_is_cached(api, world, django_assert_num_queries):
    issued = world.issue()
    client = bearer(api, issued.plaintext)
    assert client.get(ME).status_code == 200
    for _ in range(3):
        with django_assert_num_queries(1):
            assert client.get(ME).status_code == 200
    assert authcache.cache_size() == 0


def test_the_cache_keeps_at_most_its_size(api, world, with_redis, settings):
    settings.TOKEN_CACHE_SIZE = 3
    for token in [world.issue(name=f"t{number}").plaintext for number in range(5)]:
        for _ in range(2):
            assert bearer(api, token).get(ME).status_code == 200
    assert authcache.cache_size() == 3


def test_an_entry_is_reloaded_when_it_is_older_than_the_setting(api, world, with_redis, django_assert_num_queries):
    issued = world.issue()
    client = bearer(api, issued.plaintext)
    warm(client, django_assert_num_queries)
    for entry in list(authcache._entries.values()):
        object.__setattr__(entry, "stale_after", 0)  # as if TOKEN_CACHE_SECONDS had passed
    with django_assert_num_queries(1):
        assert client.get(ME).status_code == 200


def test_a_change_waits_until_every_listening_process_has_dropped_its_entries(world, with_redis):
    issued = world.issue()
    for _ in range(2):
        bearer_authenticate(issued.plaintext, ip="10.0.0.1")
    assert authcache.cache_size() == 1
    assert with_redis.pubsub_numsub(authcache.channel_of(with_redis))[0][1] == 1  # this process's listener
    token_revoke(token=issued.token, actor=None, actor_label="test")
    assert authcache.cache_size() == 0
    assert not with_redis.keys(f"{authcache.channel_of(with_redis)}:ack:*")  # every acknowledgement was collected


def test_without_a_listener_nothing_is_served_from_the_cache(api, world, with_redis, django_assert_num_queries):
    issued = world.issue()
    client = bearer(api, issued.plaintext)
    warm(client, django_assert_num_queries)
    listener = authcache._listener()
    listener._subscribed.clear()  # as when its connection is lost
    try:
        with django_assert_num_queries(1):
            assert client.get(ME).status_code == 200
    finally:
        listener._subscribed.set()


def test_a_blocked_address_stops_lookups_but_not_a_token_already_verified(
    api, world, with_redis, settings, django_assert_num_queries
):
    settings.AUTH_FAILURES_PER_MINUTE_PER_IP = 3
    issued = world.issue()
    client = bearer(api, issued.plaintext)
    warm(client, django_assert_num_queries)
    for _ in range(3):
        assert bearer(APIClient(), "pat_" + "A" * 36).get(ME).status_code == 401
    assert bearer(APIClient(), "pat_" + "B" * 36).get(ME).status_code == 429  # no lookup
    assert client.get(ME).status_code == 200  # verified before: served
    other = world.issue("other").plaintext
    assert bearer(APIClient(), other).get(ME).status_code == 429  # never verified here: needs a lookup


# ---------------------------------------------------------------- the cold path


def test_a_token_not_seen_before_costs_one_query_and_no_redis_round_trip(
    api, world, with_redis, monkeypatch, django_assert_num_queries
):
    from core.ratelimit import rate_limit_key

    monkeypatch.setattr(authcache, "_tick_hooks", [])  # no lease taken ahead by the listener
    world.tenant.token_requests_per_minute = 1000  # leases of 10
    world.tenant.save()
    issued = world.issue()
    client = bearer(api, issued.plaintext)
    assert bearer(APIClient(), world.issue("warm").plaintext).get(ME).status_code == 200  # connections opened
    trips = RoundTrips(monkeypatch)
    with django_assert_num_queries(1):
        assert client.get(ME).status_code == 200
    assert trips.count == 0
    # Its second request takes a lease, and counts the first with it: one round trip.
    with django_assert_num_queries(0):
        assert client.get(ME).status_code == 200
    assert trips.count == 1
    # A failure is counted in one round trip.
    assert bearer(APIClient(), keys.generate()).get(ME).status_code == 401
    assert trips.count == 2
    assert int(with_redis.get(rate_limit_key(f"token-requests:{issued.token.pk}", window=60))) == 10 + 1


def test_a_lease_is_taken_when_redis_has_lost_its_scripts(api, world, with_redis, monkeypatch):
    """Leases are taken by a Lua script the listener loads when it subscribes; a
    Redis that lost it (restarted, or SCRIPT FLUSH) gets it again on its first use."""
    from core.ratelimit import rate_limit_key

    monkeypatch.setattr(authcache, "_tick_hooks", [])  # the second request takes the lease
    world.tenant.token_requests_per_minute = 1000  # leases of 10
    world.tenant.save()
    issued = world.issue()
    client = bearer(api, issued.plaintext)
    assert client.get(ME).status_code == 200
    with_redis.script_flush()
    trips = RoundTrips(monkeypatch)
    assert client.get(ME).status_code == 200
    assert trips.count == 3  # refused as unknown, loaded, run
    assert client.get(ME).status_code == 200  # from the lease
    assert trips.count == 3
    assert int(with_redis.get(rate_limit_key(f"token-requests:{issued.token.pk}", window=60))) == 10 + 1


def test_the_listener_loads_the_scripts_again_when_it_reconnects(api, world, with_redis, monkeypatch):
    """After a restart (its connection lost, the scripts gone) a request does
    not pay for loading them: the listener does, before it trusts its cache again."""
    from core.redis import redis_client
    from tokens.bearer import _LEASES_TAKE

    monkeypatch.setattr(authcache, "_tick_hooks", [])  # the second request takes the lease
    issued = world.issue()
    client = bearer(api, issued.plaintext)
    with_redis.script_flush()
    with_redis.client_kill_filter(_type="pubsub")  # the listener's connection, as a restart drops it
    assert wait_for(lambda: with_redis.script_exists(_LEASES_TAKE.sha)[0] and authcache.cache_trusted())
    redis_client().ping()  # the service's own connection opened
    assert client.get(ME).status_code == 200  # loaded: a query, served before its first count
    trips = RoundTrips(monkeypatch)
    assert client.get(ME).status_code == 200
    assert trips.count == 1  # the lease, run at once


def test_the_listener_counts_a_first_request_and_takes_the_lease_ahead_of_the_second(
    api, world, with_redis, monkeypatch, django_assert_num_queries
):
    """What the cache's listener does about once a second: the first requests
    served uncounted are counted, with their tokens' first leases, in one round
    trip for all of them; their next requests then need none."""
    from core.ratelimit import rate_limit_key

    monkeypatch.setattr(authcache, "_tick_hooks", [])  # this test takes the listener's part
    world.tenant.token_requests_per_minute = 1000  # leases of 10
    world.tenant.save()
    issued = [world.issue(f"t{number}") for number in range(3)]
    clients = [bearer(APIClient(), one.plaintext) for one in issued]
    assert bearer(APIClient(), world.issue("warm").plaintext).get(ME).status_code == 200  # connections opened
    for client in clients:
        assert client.get(ME).status_code == 200
    trips = RoundTrips(monkeypatch)
    leases_take_ahead()
    assert trips.count == 1
    for client in clients:
        with django_assert_num_queries(0):
            assert client.get(ME).status_code == 200
    assert trips.count == 1
    leases_take_ahead()  # nothing left to count: no round trip
    assert trips.count == 1
    for one in issued:  # each first request counted, with a lease of 10
        assert int(with_redis.get(rate_limit_key(f"token-requests:{one.token.pk}", window=60))) == 10 + 1


def test_the_listener_takes_the_leases_ahead_itself_and_keeps_listening_past_a_failing_hook(
    api, world, with_redis, monkeypatch
):
    import time

    from core.ratelimit import rate_limit_key

    def broken() -> None:
        raise RuntimeError("a periodic hook that fails")

    monkeypatch.setattr(authcache, "_tick_hooks", [broken, *authcache._tick_hooks])
    world.tenant.token_requests_per_minute = 1000  # leases of 10
    world.tenant.save()
    issued = world.issue()
    client = bearer(api, issued.plaintext)
    if time.time() % 60 > 55:  # the lease is for this minute: not one that ends before the listener's tick
        time.sleep(61 - time.time() % 60)
    assert client.get(ME).status_code == 200
    counted = rate_limit_key(f"token-requests:{issued.token.pk}", window=60)
    deadline = time.monotonic() + 5
    while with_redis.get(counted) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert int(with_redis.get(counted)) == 10 + 1  # the first request, with a lease, within a tick
    token_revoke(token=issued.token, actor=None, actor_label="test")
    assert client.get(ME).status_code == 401  # the listener still drops what a change names


def test_the_first_request_served_before_it_is_counted_still_counts_toward_the_limit(api, world, with_redis):
    world.tenant.token_requests_per_minute = 2
    world.tenant.save()
    client = bearer(api, world.issue().plaintext)
    assert [client.get(ME).status_code for _ in range(3)] == [200, 200, 429]


def test_an_invalidation_drops_exactly_the_entries_it_names(api, world, other_world, with_redis):
    """Each scope visits only its own entries (``authcache._named``), and what
    an entry leaves behind is gone with it."""
    from iam.services import role_grant_add

    first, second = world.issue("first"), world.issue("second", roles=(world.reader.code,))
    elsewhere = other_world.issue("elsewhere")
    for issued in (first, second, elsewhere):
        assert bearer(api, issued.plaintext).get(ME).status_code == 200

    def cached() -> set[str]:
        return {entry.loaded().token.name for entry in authcache._entries.values()}

    assert cached() == {"first", "second", "elsewhere"}
    authcache.cache_clear(f"token:{first.token.pk}")
    assert cached() == {"second", "elsewhere"}
    authcache.cache_clear(f"role:{world.writer.pk}")  # only "first" granted the writer role
    assert cached() == {"second", "elsewhere"}
    authcache.cache_clear(f"tenant:{world.tenant.pk}")
    assert cached() == {"elsewhere"}
    authcache.cache_clear(f"user:{other_world.user.pk}")
    assert cached() == set() and authcache._named == {}
    # Changes name their scope: a grant drops its holder's tokens only.
    for issued in (first, elsewhere):
        assert bearer(api, issued.plaintext).get(ME).status_code == 200
    role_grant_remove(user=world.user, role=world.admin_role, actor=None)
    assert cached() == {"elsewhere"}
    role_grant_add(user=world.user, role=world.admin_role, actor=None)
    assert bearer(api, first.plaintext).get(ME).status_code == 200
    role_set_pat_eligible(role=other_world.reader, eligible=False, actor=None)
    assert cached() == {"first"}


def test_entries_pushed_out_by_the_size_limit_leave_no_names_behind(api, world, with_redis, settings):
    settings.TOKEN_CACHE_SIZE = 2
    tokens = [world.issue(f"t{number}") for number in range(4)]
    for issued in tokens:
        assert bearer(api, issued.plaintext).get(ME).status_code == 200
    assert authcache.cache_size() == 2
    live = set(authcache._entries)
    assert set().union(*(authcache._keys_named(scope) for scope in authcache._named)) == live
    assert f"token:{tokens[0].token.pk}" not in authcache._named


def test_an_address_blocked_by_other_processes_costs_this_one_a_single_lookup(
    api, world, with_redis, settings, django_assert_num_queries
):
    """Other processes' failures are in Redis only: this process learns of them
    from the reply to its own first failure, then refuses before any lookup."""
    from core.ratelimit import rate_limit_key

    settings.AUTH_FAILURES_PER_MINUTE_PER_IP = 5
    with_redis.set(rate_limit_key("auth-failures:10.4.4.4", window=60), 7, ex=61)  # as other processes counted
    guess = {"HTTP_AUTHORIZATION": f"Bearer {keys.generate()}", "REMOTE_ADDR": "10.4.4.4"}
    with django_assert_num_queries(1):
        assert api.get(ME, **guess).status_code == 401  # looked up, counted: the reply says 8
    with django_assert_num_queries(0):
        assert api.get(ME, **guess).status_code == 429
    valid = world.issue().plaintext
    assert api.get(ME, HTTP_AUTHORIZATION=f"Bearer {valid}", REMOTE_ADDR="10.4.4.4").status_code == 429
    assert api.get(ME, HTTP_AUTHORIZATION=f"Bearer {valid}", REMOTE_ADDR="10.5.5.5").status_code == 200


def test_a_replaced_secret_is_never_cached_and_stops_when_its_grace_ends(world, with_redis):
    from tokens.services import token_rotate

    issued = world.issue()
    bearer_authenticate(issued.plaintext, ip="10.0.0.1")  # the current secret, cached
    rotated = token_rotate(token=issued.token, actor=world.user, grace=timedelta(hours=1))
    assert authcache.cache_lookup(keys.digest(issued.plaintext)) is None  # the rotation dropped it
    assert bearer_authenticate(issued.plaintext, ip="10.0.0.1").token.pk == issued.token.pk
    assert authcache.cache_lookup(keys.digest(issued.plaintext)) is None
    grace_end = issued.token.rotated_secrets.get().works_until
    with pytest.raises(InvalidToken):
        bearer_authenticate(issued.plaintext, ip="10.0.0.1", now=grace_end)
    assert bearer_authenticate(rotated.plaintext, ip="10.0.0.1", now=grace_end)  # until the reuse is handled


def test_a_cached_token_is_refused_outside_its_networks_and_a_tenants_new_networks_apply_at_once(
    api, world, main_admin, with_redis, django_assert_num_queries
):
    from iam.tenancy import tenant_update

    issued = world.issue("office", allowed_networks=["127.0.0.0/8", "203.0.113.0/24"])
    client = bearer(api, issued.plaintext)
    warm(client, django_assert_num_queries)  # from 127.0.0.1, the test client's address
    # The cached entry is checked against each request's address (a refusal reloads it, as any refusal does).
    assert client.get(ME, REMOTE_ADDR="198.51.100.1").status_code == 401
    assert client.get(ME, REMOTE_ADDR="203.0.113.5").status_code == 200
    tenant_update(tenant=world.tenant, changes={"allowed_networks": ["203.0.113.0/24"]}, actor=main_admin)
    assert client.get(ME).status_code == 401  # 127.0.0.1: in the token's list, no longer in the tenant's
    assert client.get(ME, REMOTE_ADDR="203.0.113.5").status_code == 200
