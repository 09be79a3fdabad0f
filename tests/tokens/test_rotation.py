"""Regenerating a token (GitLab's rotate): a new secret, a grace period for the
old one, and reuse of the old one after it ends the token. Also the purpose."""

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from core.errors import IllegalTransition
from iam.models import AuditAction, AuditEvent, ServiceRole
from iam.tenancy import tenant_set_api_issuance
from tests.conftest import bearer
from tests.factories import administrative_pat
from tests.tokens.api.test_oauth import exchange
from tokens import keys
from tokens.models import PersonalAccessToken, RevocationCause, RotatedSecret, TokenStatus
from tokens.oauth import oauth_client_create
from tokens.services import token_revoke, token_rotate

pytestmark = pytest.mark.django_db

ME = "/api/v1/me"
SELF_ROTATE = "/api/v1/tokens/self/rotate"


def grace_ended(token: PersonalAccessToken) -> None:
    """As if the grace periods of the token's old secrets ended a second ago."""
    now = timezone.now()
    RotatedSecret.objects.filter(token=token).update(
        rotated_at=now - timedelta(hours=2), works_until=now - timedelta(seconds=1)
    )


def test_a_regenerated_token_keeps_everything_but_its_secret_and_the_old_one_stops_at_once(api, world):
    issued = world.issue("ci")
    rotated = token_rotate(token=issued.token, actor=world.user, expires_at=timezone.now() + timedelta(days=10))
    assert rotated.plaintext != issued.plaintext and rotated.token.pk == issued.token.pk
    assert bearer(api, issued.plaintext).get(ME).status_code == 401
    me = bearer(api, rotated.plaintext).get(ME).json()
    assert me["token"]["id"] == issued.token.pk and me["token"]["name"] == "ci"
    assert me["permissions"] == ["orders.read", "orders.write"]
    event = AuditEvent.objects.get(action=AuditAction.TOKEN_ROTATED, token_id=issued.token.pk)
    assert event.actor == world.user
    assert event.changes["secret"] == [issued.token.display_prefix, rotated.token.display_prefix]
    old = RotatedSecret.objects.get(token=issued.token)
    assert old.digest == keys.digest(issued.plaintext) and old.successor_prefix == rotated.token.display_prefix
    assert issued.plaintext not in str(old.__dict__) and rotated.plaintext not in str(event.changes)


def test_the_old_secret_works_during_its_grace_period_and_its_reuse_after_ends_the_token(
    api, client, world, django_capture_on_commit_callbacks
):
    issued = world.issue("deploy")
    rotated = token_rotate(
        token=issued.token, actor=world.user, expires_at=timezone.now() + timedelta(days=10), grace=timedelta(hours=1)
    )
    assert bearer(api, issued.plaintext).get(ME).json()["token"]["id"] == issued.token.pk
    assert bearer(api, rotated.plaintext).get(ME).status_code == 200

    grace_ended(issued.token)
    with django_capture_on_commit_callbacks(execute=True):
        assert bearer(api, issued.plaintext).get(ME, REMOTE_ADDR="203.0.113.9").status_code == 401
    token = PersonalAccessToken.objects.get(pk=issued.token.pk)
    assert token.status == TokenStatus.REVOKED and token.revocation_cause == RevocationCause.REUSE_DETECTED
    assert "203.0.113.9" in token.revocation_reason and issued.token.display_prefix in token.revocation_reason
    assert bearer(api, rotated.plaintext).get(ME).status_code == 401  # the successor ends too
    assert AuditEvent.objects.filter(action=AuditAction.TOKEN_REUSE_DETECTED, token_id=token.pk).count() == 1
    (notice,) = mail.outbox
    assert notice.to == [world.user.email] and "old secret" in notice.subject
    assert issued.plaintext not in notice.body and rotated.plaintext not in notice.body

    with django_capture_on_commit_callbacks(execute=True):  # presented again: told once
        assert bearer(api, issued.plaintext).get(ME).status_code == 401
    assert len(mail.outbox) == 1
    # The owner's page says what happened, not "an operator".
    client.force_login(world.user)
    page = client.get("/tokens/").content.decode()
    assert "used after its grace period: someone else holds it" in page and "an operator" not in page


def test_a_grace_period_never_revives_an_expired_secret(api, world):
    issued = world.issue(days=1)
    now = timezone.now()
    PersonalAccessToken.objects.filter(pk=issued.token.pk).update(
        created_at=now - timedelta(days=2), expires_at=now - timedelta(minutes=1)
    )
    issued.token.refresh_from_db()
    rotated = token_rotate(
        token=issued.token, actor=world.user, expires_at=timezone.now() + timedelta(days=3), grace=timedelta(hours=24)
    )
    assert bearer(api, rotated.plaintext).get(ME).status_code == 200
    assert bearer(api, issued.plaintext).get(ME).status_code == 401


def test_a_token_regenerates_itself_as_a_bearer(api, world):
    issued = world.issue(days=30)
    response = bearer(api, issued.plaintext).post(SELF_ROTATE, {"gracePeriodSeconds": 600}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["token"].startswith("pat_") and body["id"] == issued.token.pk and body["name"] == issued.token.name
    lifetime = timezone.datetime.fromisoformat(body["expiresAt"]) - timezone.now()
    assert timedelta(days=29, hours=23) < lifetime <= timedelta(days=30)  # as long as the secret it replaces
    assert body["previousSecretWorksUntil"]
    assert bearer(api, body["token"]).get(ME).status_code == 200
    assert bearer(api, issued.plaintext).get(ME).status_code == 200  # in its grace period
    refused = bearer(api, issued.plaintext).post(SELF_ROTATE, {}, format="json")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "secret_replaced"
    again = bearer(api, body["token"]).post(SELF_ROTATE, {}, format="json")
    assert again.status_code == 201 and bearer(api, body["token"]).get(ME).status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"gracePeriodSeconds": 86401}, "gracePeriodSeconds"),
        ({"gracePeriodSeconds": -1}, "gracePeriodSeconds"),
        ({"gracePeriodSeconds": "600"}, "gracePeriodSeconds"),
        ({"expiresAt": "2020-01-01T00:00:00Z"}, "expiresAt"),
        ({"expiresAt": "2999-01-01T00:00:00Z"}, "expiresAt"),
        ({"expiresAt": "tomorrow"}, "expiresAt"),
    ],
)
def test_bad_rotation_requests_are_400_and_change_nothing(api, world, body, field):
    issued = world.issue()
    response = bearer(api, issued.plaintext).post(SELF_ROTATE, body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert PersonalAccessToken.objects.get(pk=issued.token.pk).digest == issued.token.digest
    assert not RotatedSecret.objects.exists()


def test_an_exchanged_access_token_cannot_regenerate_its_pat(api, world):
    client = oauth_client_create(application=world.application, name="crm", actor=None, token_exchange=True)
    access = exchange(api, client, world.issue().plaintext).json()["access_token"]
    response = bearer(api, access).post(SELF_ROTATE, {}, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "pat_required"


def test_the_management_api_regenerates_only_where_the_tenant_allows_issuing(api, world, other_world, user_admin):
    issued = world.issue("sync")
    client = bearer(api, administrative_pat(user_admin, ServiceRole.USER_ADMINISTRATOR).plaintext)
    url = f"/api/v1/users/{world.user.pk}/personal-access-tokens/sync/rotate"
    refused = client.post(url, {}, format="json")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "api_issuance_disabled"
    tenant_set_api_issuance(tenant=world.tenant, allowed=True, actor=user_admin)
    created = client.post(url, {"gracePeriodSeconds": 60}, format="json")
    assert created.status_code == 201 and created.json()["token"].startswith("pat_")
    assert PersonalAccessToken.objects.get(pk=issued.token.pk).digest == keys.digest(created.json()["token"])
    assert AuditEvent.objects.get(action=AuditAction.TOKEN_ROTATED).actor == user_admin
    other = other_world.issue("sync")
    assert client.post(f"/api/v1/users/{other_world.user.pk}/personal-access-tokens/sync/rotate").status_code == 404
    assert PersonalAccessToken.objects.get(pk=other.token.pk).digest == other.token.digest


def test_only_its_owner_regenerates_an_administrative_token(api, world, user_admin):
    from tests.factories import UserFactory, grant, service_role

    developer = UserFactory(username="dev", tenant=world.tenant)
    grant(developer, service_role(ServiceRole.DEVELOPER))
    administrative_pat(developer, ServiceRole.DEVELOPER)
    name = PersonalAccessToken.objects.get(owner=developer).name
    tenant_set_api_issuance(tenant=world.tenant, allowed=True, actor=user_admin)
    client = bearer(api, administrative_pat(user_admin, ServiceRole.USER_ADMINISTRATOR).plaintext)
    refused = client.post(f"/api/v1/users/{developer.pk}/personal-access-tokens/{name}/rotate", {}, format="json")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "administrative_token"
    assert not RotatedSecret.objects.exists()


def test_revoked_and_embedding_tokens_are_not_regenerated(world, user_admin):
    revoked = world.issue("revoked")
    token_revoke(token=revoked.token, actor=user_admin)
    with pytest.raises(IllegalTransition):
        token_rotate(token=revoked.token, actor=world.user)
    embedding = world.issue("embedded").token
    PersonalAccessToken.objects.filter(pk=embedding.pk).update(kind="embed")
    with pytest.raises(IllegalTransition):
        token_rotate(token=embedding, actor=world.user)
    assert not RotatedSecret.objects.exists()


def test_unknown_and_replaced_secrets_cost_one_query(api, world, django_assert_num_queries):
    issued = world.issue()
    token_rotate(token=issued.token, actor=world.user)
    for secret in (keys.generate(), issued.plaintext):
        with django_assert_num_queries(1):
            assert bearer(api, secret).get(ME).status_code == 401


def test_the_regenerate_page_shows_the_new_secret_once(client, world, django_capture_on_commit_callbacks):
    issued = world.issue("laptop")
    client.force_login(world.user)
    page = client.get(f"/tokens/{issued.token.pk}/regenerate/")
    assert page.status_code == 200
    form_id = re.search(r'name="form_id" value="([^"]+)"', page.content.decode()).group(1)
    form = {"form_id": form_id, "expiry_preset": "30", "grace": "3600"}
    shown = client.post(f"/tokens/{issued.token.pk}/regenerate/", form)
    secret = re.search(r'value="(pat_[^"]+)"', shown.content.decode()).group(1)
    assert bearer_ok(secret) and "keeps working until" in shown.content.decode()
    again = client.post(f"/tokens/{issued.token.pk}/regenerate/", form)  # a reload of the POST
    assert again.status_code == 302 and RotatedSecret.objects.count() == 1
    assert "keeps working until" in client.get(f"/tokens/{issued.token.pk}/edit/").content.decode()
    assert "Regenerate" in client.get("/tokens/").content.decode()


def bearer_ok(secret: str) -> bool:
    from rest_framework.test import APIClient

    return bearer(APIClient(), secret).get(ME).status_code == 200


def test_the_purpose_is_kept_shown_and_audited(api, client, world, user_admin):
    issued = world.issue("calendar", purpose="  Syncs the team   calendar  ")
    assert issued.token.purpose == "Syncs the team calendar"
    created = AuditEvent.objects.get(action=AuditAction.TOKEN_CREATED, token_id=issued.token.pk)
    assert created.changes["purpose"] == "Syncs the team calendar"
    client.force_login(world.user)
    assert "Syncs the team calendar" in client.get("/tokens/").content.decode()
    tenant_set_api_issuance(tenant=world.tenant, allowed=True, actor=user_admin)
    admin = bearer(api, administrative_pat(user_admin, ServiceRole.USER_ADMINISTRATOR).plaintext)
    body = {
        "name": "x",
        "purpose": "p" * 501,
        "expiresAt": (timezone.now() + timedelta(days=3)).isoformat(),
        "applicationSlug": world.application.slug,
        "roles": ["reader"],
    }
    too_long = admin.post(f"/api/v1/users/{world.user.pk}/personal-access-tokens", body, format="json")
    assert too_long.status_code == 400 and "purpose" in too_long.json()["error"]["fields"]
    listed = admin.get(f"/api/v1/users/{world.user.pk}/personal-access-tokens").json()
    assert [token["purpose"] for token in listed] == ["Syncs the team calendar"]


def test_replaced_secrets_are_forgotten_a_month_after_their_token_ended_or_expired(world, user_admin):
    from tokens.maintenance import rotated_secrets_prune

    live, ended, expired = (world.issue(name) for name in ("live", "ended", "expired"))
    for issued in (live, ended, expired):
        token_rotate(token=issued.token, actor=world.user)
    token_revoke(token=ended.token, actor=user_admin)
    long_ago = timezone.now() - timedelta(days=31)
    PersonalAccessToken.objects.filter(pk=ended.token.pk).update(revoked_at=long_ago)
    assert rotated_secrets_prune() == 1
    PersonalAccessToken.objects.filter(pk=expired.token.pk).update(
        created_at=long_ago - timedelta(days=7), expires_at=long_ago
    )
    assert rotated_secrets_prune() == 1
    assert list(RotatedSecret.objects.values_list("token_id", flat=True)) == [live.token.pk]
