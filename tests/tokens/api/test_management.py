"""The management API for users' tokens (seed 004), scoped to a tenant."""

from datetime import timedelta

import pytest
from django.utils import timezone

from iam.models import AuditAction, AuditEvent, ServiceRole
from iam.tenancy import tenant_set_api_issuance
from tests.conftest import bearer
from tests.factories import administrative_pat
from tokens.credentials import integration_credential_create
from tokens.models import IntegrationCredential, PersonalAccessToken, TokenStatus
from tokens.services import token_create

pytestmark = pytest.mark.django_db


def admin_pat(user, role=ServiceRole.USER_ADMINISTRATOR) -> str:
    return administrative_pat(user, role).plaintext


def url(user, name=None) -> str:
    base = f"/api/v1/users/{user.pk}/personal-access-tokens"
    return f"{base}/{name}" if name else base


def create_body(world, **overrides):
    body = {
        "name": "Nightly import",
        "expiresAt": (timezone.now() + timedelta(days=30)).isoformat(),
        "applicationSlug": world.application.slug,
        "roles": ["reader"],
    }
    body.update(overrides)
    return body


def test_user_administrator_lists_tokens_without_secrets(api, world, user_admin):
    issued = world.issue("listed")
    response = bearer(api, admin_pat(user_admin)).get(url(world.user))
    assert response.status_code == 200
    (token,) = response.json()
    assert token["name"] == "listed" and token["status"] == "active" and token["roles"] == ["reader", "writer"]
    assert token["prefix"] == issued.token.display_prefix
    assert issued.plaintext not in response.content.decode() and "token" not in token


def test_another_tenants_user_is_404(api, world, other_world, user_admin):
    assert bearer(api, admin_pat(user_admin)).get(url(other_world.user)).status_code == 404
    assert bearer(api, admin_pat(user_admin)).get("/api/v1/users/999999/personal-access-tokens").status_code == 404


def test_an_end_users_token_lacks_the_permission(api, world):
    response = bearer(api, world.issue().plaintext).get(url(world.user))
    assert response.status_code == 403 and response.json()["error"]["code"] == "missing_permission"


def test_creation_is_refused_until_the_tenant_allows_it(api, world, user_admin):
    client = bearer(api, admin_pat(user_admin))
    refused = client.post(url(world.user), create_body(world), format="json")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "api_issuance_disabled"
    assert not PersonalAccessToken.objects.filter(owner=world.user).exists()
    tenant_set_api_issuance(tenant=world.tenant, allowed=True, actor=user_admin)
    assert AuditEvent.objects.filter(action=AuditAction.TENANT_API_ISSUANCE_SWITCHED, actor=user_admin).exists()
    created = client.post(url(world.user), create_body(world), format="json")
    assert created.status_code == 201
    body = created.json()
    assert body["token"].startswith("pat_") and body["name"] == "Nightly import" and body["roles"] == ["reader"]
    event = AuditEvent.objects.get(action=AuditAction.TOKEN_CREATED, token_id=body["id"])
    assert event.actor == user_admin
    assert body["token"] not in client.get(url(world.user)).content.decode()


def test_created_tokens_follow_every_rule(api, world, user_admin):
    tenant_set_api_issuance(tenant=world.tenant, allowed=True, actor=None)
    client = bearer(api, admin_pat(user_admin))
    response = client.post(
        url(world.user), create_body(world, roles=["admin"], expiresAt="2000-01-01T00:00:00Z"), format="json"
    )
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"roles", "expiresAt"}


@pytest.mark.parametrize(
    "body",
    [{"name": 5}, {"roles": "reader"}, {"expiresAt": 123}, {"applicationId": "nope"}, {"unknown": 1}, {"name": None}],
)
def test_bad_bodies_are_400(api, world, user_admin, body):
    tenant_set_api_issuance(tenant=world.tenant, allowed=True, actor=None)
    response = bearer(api, admin_pat(user_admin)).post(url(world.user), create_body(world, **body), format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "validation_failed"
    assert not PersonalAccessToken.objects.filter(owner=world.user).exists()


def test_errors_name_the_fields_the_client_sent(api, world, user_admin):
    tenant_set_api_issuance(tenant=world.tenant, allowed=True, actor=None)
    client = bearer(api, admin_pat(user_admin))
    unknown = client.post(url(world.user), create_body(world, applicationSlug="nope"), format="json")
    assert unknown.json()["error"]["fields"] == {"applicationSlug": ["No such application."]}
    both = client.post(url(world.user), create_body(world, applicationId=str(world.application.pk)), format="json")
    assert set(both.json()["error"]["fields"]) == {"applicationId", "applicationSlug"}
    item = client.post(url(world.user), create_body(world, roles=["reader", ""]), format="json")
    assert item.json()["error"]["fields"] == {"roles.1": ["This field may not be blank."]}
    assert not PersonalAccessToken.objects.filter(owner=world.user).exists()


def test_rename_and_delete(api, world, user_admin):
    world.issue("old name")
    client = bearer(api, admin_pat(user_admin))
    renamed = client.patch(url(world.user, "old name"), {"name": "new name"}, format="json")
    assert renamed.status_code == 200 and renamed.json()["name"] == "new name"
    assert client.delete(url(world.user, "new name")).status_code == 204
    assert PersonalAccessToken.objects.get(name="new name").status == TokenStatus.REVOKED
    assert client.delete(url(world.user, "missing")).status_code == 404


def test_the_purpose_changes_with_or_without_a_new_name_and_an_empty_patch_is_400(api, world, user_admin):
    from iam.models import AuditAction, AuditEvent

    world.issue("sync", purpose="old purpose")
    client = bearer(api, admin_pat(user_admin))
    described = client.patch(url(world.user, "sync"), {"purpose": "  Calendar   sync "}, format="json")
    assert described.status_code == 200 and described.json()["purpose"] == "Calendar sync"
    assert described.json()["name"] == "sync"
    event = AuditEvent.objects.filter(action=AuditAction.TOKEN_EDITED).latest("pk")
    assert event.changes == {"purpose": ["old purpose", "Calendar sync"]} and event.actor == user_admin
    both = client.patch(url(world.user, "sync"), {"name": "cal", "purpose": ""}, format="json")
    assert both.status_code == 200 and both.json()["name"] == "cal" and both.json()["purpose"] == ""
    empty = client.patch(url(world.user, "cal"), {}, format="json")
    assert empty.status_code == 400 and "name" in empty.json()["error"]["fields"]
    too_long = client.patch(url(world.user, "cal"), {"purpose": "p" * 501}, format="json")
    assert too_long.status_code == 400 and PersonalAccessToken.objects.get(name="cal").purpose == ""


def test_integration_credential_with_the_scope_manages_its_tenant_only(api, world, other_world):
    manage = integration_credential_create(
        tenant=world.tenant, name="hr sync", actor=None, scopes=[IntegrationCredential.Scope.TOKENS_MANAGE]
    )
    world.issue("seen")
    api.credentials(HTTP_AUTHORIZATION=f"Basic {manage.plaintext}")
    assert [t["name"] for t in api.get(url(world.user)).json()] == ["seen"]
    assert api.get(url(other_world.user)).status_code == 404
    assert api.delete(url(world.user, "seen")).status_code == 204
    event = AuditEvent.objects.get(action=AuditAction.TOKEN_REVOKED)
    assert event.actor is None and "hr sync" in event.actor_label


def test_integration_credential_without_the_scope_is_403(api, world, credential):
    api.credentials(HTTP_AUTHORIZATION=f"Basic {credential.plaintext}")
    response = api.get(url(world.user))
    assert response.status_code == 403 and response.json()["error"]["code"] == "missing_scope"


def test_a_database_failure_after_the_write_leaves_nothing_issued_or_renamed(api, world, user_admin, monkeypatch):
    """A 503 must mean "not done": a token whose secret the client never saw
    would otherwise exist, and a retry with its name would be refused."""
    from django.db import OperationalError

    from tokens.api import management

    tenant_set_api_issuance(tenant=world.tenant, allowed=True, actor=None)
    client = bearer(api, admin_pat(user_admin))
    kept = token_create(
        owner=world.user,
        application=world.application,
        name="kept",
        role_codes=["reader"],
        expires_at=timezone.now() + timedelta(days=7),
    ).token
    events = AuditEvent.objects.count()

    def connection_lost(tokens):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(management, "serialize_tokens", connection_lost)
    created = client.post(url(world.user), create_body(world), format="json")
    renamed = client.patch(url(world.user, "kept"), {"name": "renamed"}, format="json")
    assert created.status_code == renamed.status_code == 503
    assert created.json()["error"]["code"] == "service_unavailable"
    assert not PersonalAccessToken.objects.filter(owner=world.user, name="Nightly import").exists()
    kept.refresh_from_db()
    assert kept.name == "kept" and AuditEvent.objects.count() == events
    monkeypatch.undo()
    assert client.post(url(world.user), create_body(world), format="json").status_code == 201


def test_a_duplicate_name_is_a_conflict_named_for_the_owner_not_you(api, world, user_admin):
    tenant_set_api_issuance(tenant=world.tenant, allowed=True, actor=None)
    client = bearer(api, admin_pat(user_admin))
    assert client.post(url(world.user), create_body(world), format="json").status_code == 201
    again = client.post(url(world.user), create_body(world), format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "name_taken"
    (message,) = again.json()["error"]["fields"]["name"]
    assert message == f"{world.user.username} already has a token named “Nightly import”." and "You" not in message
    # Renaming another token to it: the same conflict, the same words.
    other = client.post(url(world.user), create_body(world, name="Other"), format="json").json()
    renamed = client.patch(url(world.user, "Other"), {"name": "Nightly import"}, format="json")
    assert renamed.status_code == 409 and renamed.json()["error"]["fields"]["name"] == [message]
    assert PersonalAccessToken.objects.get(pk=other["id"]).name == "Other"
    # Several problems at once are still one 400 with every field.
    both = client.post(url(world.user), create_body(world, roles=["nope"]), format="json")
    assert both.status_code == 400 and set(both.json()["error"]["fields"]) == {"name", "roles"}
