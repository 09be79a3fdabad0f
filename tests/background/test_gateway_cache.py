"""The gateway with the token cache (Redis): steady state costs no query, and a
change to an application's rules or host names is seen by the very next request."""

import pytest

from iam.tenancy import application_route_rules_set, application_update
from tests.conftest import bearer
from tokens.services import token_revoke

pytestmark = pytest.mark.django_db

READ = [{"method": "GET", "path": "/orders/**", "permissions": ["orders.read"]}]


def ask(client, uri="/orders/1", host="crm.acme.example"):
    return client.get(
        "/auth/forward", HTTP_X_FORWARDED_METHOD="GET", HTTP_X_FORWARDED_URI=uri, HTTP_X_FORWARDED_HOST=host
    )


def test_rules_and_tokens_are_cached_and_every_change_is_seen_at_once(
    with_redis, api, world, app_admin, django_assert_num_queries
):
    application_update(application=world.application, changes={"gateway_hosts": "crm.acme.example"}, actor=app_admin)
    application_route_rules_set(application=world.application, rules=READ, actor=app_admin)
    issued = world.issue(roles=("reader",))
    client = bearer(api, issued.plaintext)
    assert ask(client).status_code == 200
    with django_assert_num_queries(0):
        assert ask(client).status_code == 200

    stricter = [{"method": "GET", "path": "/orders/**", "permissions": ["orders.read", "orders.write"]}]
    application_route_rules_set(application=world.application, rules=stricter, actor=app_admin)
    assert ask(client).json()["error"]["missing_permissions"] == ["orders.write"]

    application_update(application=world.application, changes={"gateway_hosts": "crm2.acme.example"}, actor=app_admin)
    assert ask(client).status_code == 404
    assert ask(client, host="crm2.acme.example").status_code == 403

    application_route_rules_set(application=world.application, rules=READ, actor=app_admin)
    assert ask(client, host="crm2.acme.example").status_code == 200
    token_revoke(token=issued.token, actor=None, actor_label="test")
    assert ask(client, host="crm2.acme.example").status_code == 401


def test_an_access_token_cached_by_the_gateway_is_not_the_apis(with_redis, api, world, app_admin):
    """The cache is shared: an access token for the application, cached when the
    gateway took it, is still refused by this service's API, and the other way round."""
    from tests.tokens.test_gateway import _exchanged_for

    application_update(application=world.application, changes={"gateway_hosts": "crm.acme.example"}, actor=app_admin)
    application_route_rules_set(application=world.application, rules=READ, actor=app_admin)
    for_application = bearer(api, _exchanged_for(world, f"urn:iam:application:{world.application.pk}"))
    assert ask(for_application).status_code == 200
    assert ask(for_application).status_code == 200  # from the cache
    assert for_application.get("/api/v1/me").status_code == 401
    assert ask(for_application).status_code == 200
    assert ask(for_application, host="elsewhere.example").status_code == 401  # names no application it is for
