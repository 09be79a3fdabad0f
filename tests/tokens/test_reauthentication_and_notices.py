"""Sudo mode on the self-service pages (an old sign-in confirms the password
before a token is created, regenerated, widened or extended) and the e-mail
an owner gets on every creation and regeneration of one of their tokens."""

import re
import time
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from iam.models import ServiceRole
from iam.reauth import AUTHENTICATED_AT_SESSION_KEY
from iam.tenancy import tenant_set_api_issuance
from tests.conftest import bearer
from tests.factories import PASSWORD, administrative_pat
from tokens.models import PersonalAccessToken, RotatedSecret

pytestmark = pytest.mark.django_db


def signed_in_long_ago(client, user, settings):
    """A session whose sign-in is one second older than sudo mode allows."""
    client.force_login(user)
    session = client.session
    session[AUTHENTICATED_AT_SESSION_KEY] = int(time.time()) - settings.REAUTHENTICATION_SECONDS - 1
    session.save()
    return client


def form_id(client, path: str) -> str:
    return re.search(r'name="form_id" value="([^"]+)"', client.get(path).content.decode()).group(1)


def carried_fields(page: str) -> list[tuple[str, str]]:
    return re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)


def test_an_old_sign_in_confirms_the_password_and_the_create_completes_without_retyping(client, world, settings):
    signed_in_long_ago(client, world.user, settings)
    form = {
        "form_id": form_id(client, "/tokens/new/"),
        "application": str(world.application.pk),
        "name": "Calendar sync",
        "purpose": "Team calendar",
        "expiry_preset": "30",
        "roles": [str(world.reader.pk), str(world.writer.pk)],
    }
    asked = client.post("/tokens/new/", form)
    page = asked.content.decode()
    assert asked.status_code == 200 and "Confirm your password to create a token" in page
    assert not PersonalAccessToken.objects.exists()
    carried = carried_fields(page)
    assert ("roles", str(world.reader.pk)) in carried and ("roles", str(world.writer.pk)) in carried
    assert ("name", "Calendar sync") in carried and not any(name == "reauth_password" for name, _ in carried)

    again = dict(carried)
    again["roles"] = [value for name, value in carried if name == "roles"]
    wrong = client.post("/tokens/new/", {**again, "reauth_password": "not-my-password"})
    assert wrong.status_code == 400 and "not your password" in wrong.content.decode()
    assert not PersonalAccessToken.objects.exists()

    done = client.post("/tokens/new/", {**again, "reauth_password": PASSWORD})
    assert done.status_code == 200 and re.search(r'value="(pat_[0-9A-Za-z]{36})"', done.content.decode())
    token = PersonalAccessToken.objects.get(owner=world.user)
    assert token.name == "Calendar sync" and token.purpose == "Team calendar" and token.roles.count() == 2
    # Confirmed: the next sensitive change within the window is not asked again.
    second = client.post("/tokens/new/", {**again, "form_id": form_id(client, "/tokens/new/"), "name": "Second"})
    assert second.status_code == 200 and "Confirm your password" not in second.content.decode()
    assert PersonalAccessToken.objects.filter(owner=world.user).count() == 2


def test_failed_confirmations_count_toward_the_sign_in_limits(client, world, settings):
    settings.SIGN_IN_FAILURES_PER_USERNAME = 2
    issued = world.issue("deploy")
    signed_in_long_ago(client, world.user, settings)
    path = f"/tokens/{issued.token.pk}/regenerate/"
    form = {"form_id": form_id(client, path), "expiry_preset": "30", "grace": "0"}
    assert "Confirm your password to regenerate" in client.post(path, form).content.decode()
    for _ in range(2):
        assert client.post(path, {**form, "reauth_password": "guess"}).status_code == 400
    refused = client.post(path, {**form, "reauth_password": PASSWORD})  # over the limit: not even checked
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert not RotatedSecret.objects.exists()
    # The same counters as the sign-in page: it refuses this username too.
    client.logout()
    sign_in = client.post("/accounts/login/", {"username": world.user.username, "password": PASSWORD})
    assert sign_in.status_code == 429


def test_an_edit_asks_only_when_it_widens_or_extends_the_token(client, world, settings):
    issued = world.issue("sync", roles=(world.reader.code,), days=10)
    signed_in_long_ago(client, world.user, settings)
    path = f"/tokens/{issued.token.pk}/edit/"
    expires_on = timezone.localtime(issued.token.expires_at).date().isoformat()
    same = {"name": "sync renamed", "expiry_preset": "date", "expires_on": expires_on, "roles": [world.reader.pk]}
    assert client.post(path, same).status_code == 302  # a rename narrows nothing: no question
    wider = client.post(path, {**same, "roles": [world.reader.pk, world.writer.pk]})
    assert wider.status_code == 200 and "Confirm your password to widen or extend" in wider.content.decode()
    later = (timezone.localtime(issued.token.expires_at) + timedelta(days=5)).date().isoformat()
    longer = client.post(path, {**same, "expires_on": later})
    assert longer.status_code == 200 and "Confirm your password" in longer.content.decode()
    token = PersonalAccessToken.objects.get(pk=issued.token.pk)
    assert token.expires_at == issued.token.expires_at and token.roles.count() == 1
    confirmed = client.post(path, {**same, "expires_on": later, "reauth_password": PASSWORD})
    assert confirmed.status_code == 302
    assert PersonalAccessToken.objects.get(pk=issued.token.pk).expires_at > issued.token.expires_at


def test_a_session_from_before_sudo_mode_is_asked_too(client, world):
    client.force_login(world.user)
    session = client.session
    del session[AUTHENTICATED_AT_SESSION_KEY]
    session.save()
    issued = world.issue("old-session")
    path = f"/tokens/{issued.token.pk}/regenerate/"
    response = client.post(path, {"form_id": form_id(client, path), "expiry_preset": "30", "grace": "0"})
    assert "Confirm your password" in response.content.decode() and not RotatedSecret.objects.exists()


def test_the_owner_is_told_of_every_creation_and_regeneration_whoever_did_it(
    api, client, world, user_admin, django_capture_on_commit_callbacks
):
    client.force_login(world.user)
    form = {
        "form_id": form_id(client, "/tokens/new/"),
        "application": str(world.application.pk),
        "name": "Calendar sync",
        "expiry_preset": "30",
        "roles": [str(world.reader.pk)],
    }
    with django_capture_on_commit_callbacks(execute=True):
        page = client.post("/tokens/new/", form, REMOTE_ADDR="203.0.113.9").content.decode()
    secret = re.search(r'value="(pat_[0-9A-Za-z]{36})"', page).group(1)
    (created,) = mail.outbox
    token = PersonalAccessToken.objects.get(owner=world.user)
    assert created.to == [world.user.email] and "“Calendar sync” was created" in created.subject
    for fact in ("by you", world.application.name, "Reader", "203.0.113.9", token.display_prefix, "/tokens/"):
        assert fact in created.body
    assert f"{timezone.localtime(token.expires_at):%d %B %Y}" in created.body
    assert secret not in created.body and secret[: len(token.display_prefix) + 1] not in created.body

    tenant_set_api_issuance(tenant=world.tenant, allowed=True, actor=user_admin)
    admin = bearer(api, administrative_pat(user_admin, ServiceRole.USER_ADMINISTRATOR).plaintext)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        rotated = admin.post(
            f"/api/v1/users/{world.user.pk}/personal-access-tokens/Calendar sync/rotate", {}, format="json"
        )
    assert rotated.status_code == 201
    (regenerated,) = mail.outbox
    assert "was regenerated" in regenerated.subject and "by acme-user-admin, an administrator" in regenerated.body
    assert rotated.json()["prefix"] in regenerated.body and rotated.json()["token"] not in regenerated.body

    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        itself = bearer(api, rotated.json()["token"]).post("/api/v1/tokens/self/rotate", {}, format="json")
    assert itself.status_code == 201
    (self_rotated,) = mail.outbox
    assert "by the token itself" in self_rotated.body and itself.json()["token"] not in self_rotated.body


def test_embedding_tokens_send_no_notice(api, world, credential, django_capture_on_commit_callbacks):
    body = {"userId": world.user.pk, "appSlug": world.application.slug, "sessionExpiry": 5, "patExpiry": 60}
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/ext/users/personal-access-token",
            body,
            format="json",
            HTTP_AUTHORIZATION=f"Basic {credential.plaintext}",
        )
    assert response.status_code == 201 and mail.outbox == []


def test_narrowing_a_tokens_networks_needs_no_password_but_widening_them_does(client, world, settings):
    issued = world.issue("printer", roles=(world.reader.code,))
    signed_in_long_ago(client, world.user, settings)
    path = f"/tokens/{issued.token.pk}/edit/"
    expires_on = timezone.localtime(issued.token.expires_at).date().isoformat()
    form = {"name": "printer", "expires_on": expires_on, "roles": [world.reader.pk]}
    assert client.post(path, {**form, "allowed_networks": "192.0.2.0/24"}).status_code == 302  # from any: narrower
    assert client.post(path, {**form, "allowed_networks": "192.0.2.0/25"}).status_code == 302  # narrower still
    wider = client.post(path, {**form, "allowed_networks": "192.0.2.0/24"})
    assert wider.status_code == 200 and "Confirm your password" in wider.content.decode()
    anywhere = client.post(path, {**form, "allowed_networks": ""})
    assert anywhere.status_code == 200 and "Confirm your password" in anywhere.content.decode()
    assert PersonalAccessToken.objects.get(pk=issued.token.pk).allowed_networks == ["192.0.2.0/25"]
