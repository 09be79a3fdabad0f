from datetime import timedelta

import pytest
from django.utils import timezone

from iam.models import ServiceRole
from tests.conftest import bearer
from tests.factories import UserFactory, grant, service_role
from tokens.services import token_create

pytestmark = pytest.mark.django_db


def admin_token(user, *roles):
    return token_create(
        owner=user,
        application=None,
        name="admin api",
        role_codes=list(roles),
        expires_at=timezone.now() + timedelta(days=7),
    ).plaintext


def test_advanced_health_check_needs_its_permission(api, world, main_admin):
    response = bearer(api, admin_token(main_admin, ServiceRole.DEVELOPER)).get("/api/v1/admin/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": {"ok": True}, "cache": {"ok": True}}}


def test_developer_role_alone_reads_the_health_check(api, world):
    developer = UserFactory(tenant=world.tenant)
    grant(developer, service_role(ServiceRole.DEVELOPER))
    assert bearer(api, admin_token(developer, ServiceRole.DEVELOPER)).get("/api/v1/admin/health").status_code == 200


def test_missing_permission_gives_403_naming_it(api, world):
    response = bearer(api, world.issue().plaintext).get("/api/v1/admin/health")
    assert response.status_code == 403
    assert response.json() == {
        "error": {
            "code": "missing_permission",
            "message": "The token lacks the permission iam.health.advanced.",
            "missing_permissions": ["iam.health.advanced"],
        }
    }


def test_user_administrator_reads_only_their_tenants_audit_trail(api, world, other_world, user_admin):
    world.issue("mine")
    other_world.issue("theirs")
    response = bearer(api, admin_token(user_admin, ServiceRole.USER_ADMINISTRATOR)).get("/api/v1/admin/audit-events")
    assert response.status_code == 200
    tenants = {event["tenant"] for event in response.json()["results"]}
    assert tenants == {"acme"}
    assert any(event["changes"].get("name") == "mine" for event in response.json()["results"])


def test_main_administrator_reads_every_tenant_and_can_filter(api, world, other_world, main_admin):
    world.issue("mine")
    other_world.issue("theirs")
    client = bearer(api, admin_token(main_admin, ServiceRole.MAIN_ADMINISTRATOR))
    tenants = {event["tenant"] for event in client.get("/api/v1/admin/audit-events").json()["results"]}
    assert {"acme", "globex"} <= tenants
    filtered = client.get("/api/v1/admin/audit-events", {"tenant": "globex", "action": "token.created"}).json()
    assert [event["changes"]["name"] for event in filtered["results"]] == ["theirs"]


def test_bad_filter_values_get_400_not_500(api, world, main_admin):
    client = bearer(api, admin_token(main_admin, ServiceRole.MAIN_ADMINISTRATOR))
    response = client.get("/api/v1/admin/audit-events", {"since": "yesterday", "action": "nope"})
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"since", "action"}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        # Each of these was a 500: a date that overflows in UTC, an id past the database's integers.
        ({"since": "0001-01-01T00:00:00+15:00"}, "since"),
        ({"until": "9999-12-31T23:59:59-15:00"}, "until"),
        ({"token": "99999999999999999999999"}, "token"),
        ({"token": "1e60"}, "token"),
        # These were ignored: a typo in a filter silently returned everything.
        ({"since": ""}, "since"),
        ({"tenant": ""}, "tenant"),
        ({"limit": "lots"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"offset": "99999999999999999999999"}, "offset"),
    ],
)
def test_out_of_range_or_empty_filters_and_pages_are_400_naming_the_parameter(api, world, main_admin, query, field):
    client = bearer(api, admin_token(main_admin, ServiceRole.MAIN_ADMINISTRATOR))
    response = client.get("/api/v1/admin/audit-events", query)
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field]


def test_a_page_holds_at_most_500_events(api, world, main_admin):
    client = bearer(api, admin_token(main_admin, ServiceRole.MAIN_ADMINISTRATOR))
    assert client.get("/api/v1/admin/audit-events", {"limit": "500"}).status_code == 200
    assert client.get("/api/v1/admin/audit-events", {"limit": "501"}).status_code == 400


def test_administrative_permissions_follow_the_role_held_now(api, world, main_admin):
    from iam.services import role_grant_remove

    token = admin_token(main_admin, ServiceRole.DEVELOPER)
    role_grant_remove(user=main_admin, role=service_role(ServiceRole.DEVELOPER), actor=None)
    assert bearer(api, token).get("/api/v1/admin/health").status_code == 401
