"""Regression tests for the findings of a security review (see the commit)."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from iam.models import Role, ServiceRole
from iam.tenancy import tenant_set_api_issuance
from tests.conftest import bearer
from tests.factories import RoleFactory, administrative_pat, grant
from tokens.credentials import integration_credential_create
from tokens.models import PersonalAccessToken
from tokens.oauth import oauth_client_create

pytestmark = pytest.mark.django_db


def admin_pat(user, role=ServiceRole.USER_ADMINISTRATOR) -> str:
    return administrative_pat(user, role).plaintext


def test_a_user_administrator_cannot_issue_tokens_for_an_administrator_or_administrative_ones(
    api, world, user_admin, main_admin
):
    tenant_set_api_issuance(tenant=world.tenant, allowed=True, actor=None)
    client = bearer(api, admin_pat(user_admin))
    administrative = client.post(
        f"/api/v1/users/{main_admin.pk}/personal-access-tokens",
        {
            "name": "stolen",
            "expiresAt": (timezone.now() + timedelta(days=3)).isoformat(),
            "roles": ["main_administrator"],
        },
        format="json",
    )
    # No application named, so no token: the API asks for one (an administrative token is never issued here).
    assert administrative.status_code == 400
    assert set(administrative.json()["error"]["fields"]) == {"applicationId", "applicationSlug"}
    grant(main_admin, world.reader)
    for_admin = client.post(
        f"/api/v1/users/{main_admin.pk}/personal-access-tokens",
        {
            "name": "stolen",
            "expiresAt": (timezone.now() + timedelta(days=3)).isoformat(),
            "applicationSlug": world.application.slug,
            "roles": ["reader"],
        },
        format="json",
    )
    assert for_admin.status_code == 403 and for_admin.json()["error"]["code"] == "owner_is_administrator"
    assert not PersonalAccessToken.objects.filter(owner=main_admin, name="stolen").exists()


def test_a_deactivated_administrators_account_stays_read_only_to_user_administrators(world, user_admin, main_admin):
    main_admin.is_active = False
    main_admin.save()
    client = Client()
    client.force_login(user_admin)
    response = client.post(
        f"/admin/iam/user/{main_admin.pk}/password/", {"password1": "Taken-over-123!", "password2": "Taken-over-123!"}
    )
    assert response.status_code == 403
    main_admin.refresh_from_db()
    assert not main_admin.check_password("Taken-over-123!")


def test_application_roles_cannot_carry_this_services_permissions(api, world):
    from django.core.exceptions import ValidationError

    role = RoleFactory.build(application=world.application, code="sneaky", permissions=["iam.tokens.manage"])
    with pytest.raises(ValidationError):
        role.full_clean()
    for bad in (5, [1], "crm.read", ["no spaces allowed"]):
        with pytest.raises(ValidationError):
            RoleFactory.build(application=world.application, code="bad", permissions=bad).full_clean()
    # Even a row written around the validation grants nothing of the admin API.
    Role.objects.filter(pk=world.reader.pk).update(permissions=["orders.read", "iam.tokens.manage", "iam.audit.read"])
    token = world.issue(roles=("reader",)).plaintext
    assert bearer(api, token).get(f"/api/v1/users/{world.user.pk}/personal-access-tokens").status_code == 403
    assert bearer(api, token).get("/api/v1/admin/audit-events").status_code == 403


def test_introspection_does_not_accept_embedding_tokens(api, world):
    import base64

    credential = integration_credential_create(tenant=world.tenant, name="portal", actor=None)
    embed = api.post(
        "/api/ext/users/personal-access-token",
        {"email": world.user.email, "appId": str(world.application.pk), "sessionExpiry": 5, "patExpiry": 600},
        format="json",
        HTTP_AUTHORIZATION=f"Basic {credential.plaintext}",
    ).json()["personalAccessToken"]
    client = oauth_client_create(application=world.application, name="c", actor=None)
    basic = base64.b64encode(f"{client.client.client_id}:{client.secret}".encode()).decode()
    response = api.generic(
        "POST",
        "/oauth/introspect",
        f"token={embed}",
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=f"Basic {basic}",
    )
    assert response.json() == {"active": False}


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/introspect"])
def test_nul_characters_are_a_400(api, path):
    response = api.generic(
        "POST", path, "client_id=%00&client_secret=x&token=%00", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 400
    assert api.get("/api/v1/users/1/personal-access-tokens/a%00b").status_code == 400
