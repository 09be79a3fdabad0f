"""Regression tests for the defects a person trying the product hit within
minutes (issue "Real use never breaks"). Each drives the product through the
surfaces people use: the HTTP API, the pages, the console, the e-mails."""

from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from iam.models import AuditAction, AuditEvent
from iam.services import role_grant_remove, user_set_pat_creation_right
from iam.tenancy import tenant_application_set_pats_allowed
from tests.conftest import bearer
from tests.factories import administrative_pat
from tokens.credentials import integration_credential_create
from tokens.models import PersonalAccessToken, RevocationCause, TokenKind, TokenStatus

pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def issue_embedding(api, world, credential, seconds: int = 600) -> dict:
    response = api.post(
        "/api/ext/users/personal-access-token",
        {"email": world.user.email, "appId": str(world.application.pk), "sessionExpiry": 5, "patExpiry": seconds},
        format="json",
        HTTP_AUTHORIZATION=f"Basic {credential.plaintext}",
    )
    assert response.status_code == 201, response.content
    return response.json()


# ---------------------------------------- 1. the owner's list after an end without an administrator


def test_the_owners_list_renders_after_a_leak_report_and_says_why(api, world):
    token = world.issue("leaky").plaintext
    assert api.post("/api/v1/leaked-tokens", {"token": token}, format="json").status_code == 202
    page = signed_in(world.user).get("/tokens/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "because someone reported it leaked" in text
    assert "by an administrator" not in text


def test_the_owners_list_survives_a_portal_that_issues_an_embedding_token_on_every_page_load(api, world):
    credential = integration_credential_create(tenant=world.tenant, name="portal", actor=None)
    for _ in range(8):  # the limit is 10 a minute per credential
        issue_embedding(api, world, credential)
    page = signed_in(world.user).get("/tokens/")
    assert page.status_code == 200
    text = page.content.decode()
    assert text.count("by a newer embedding token") == 7
    assert "by an administrator" not in text
    names = list(PersonalAccessToken.objects.filter(owner=world.user).values_list("name", flat=True))
    assert len(set(names)) == len(names) == 8  # never named alike
    assert all(name.startswith(f"Embedding · {world.application.name} · pat_") for name in names)


# ---------------------------------------------------------------- 2. every end's cause, told truthfully


def test_each_cause_of_revocation_is_recorded_and_told_to_the_owner(
    api, world, user_admin, django_capture_on_commit_callbacks
):
    credential = integration_credential_create(
        tenant=world.tenant, name="sync", actor=None, scopes=["tokens.manage", "embed"]
    )
    by_admin = world.issue("by admin").token
    by_integration = world.issue("by integration").token
    leaked = world.issue("leaked")
    console = signed_in(user_admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = console.post(
            f"/admin/tokens/personalaccesstoken/{by_admin.pk}/revoke/", {"reason": "Left the  team"}, follow=True
        )
        assert response.status_code == 200
        api.delete(
            f"/api/v1/users/{world.user.pk}/personal-access-tokens/{by_integration.name}",
            HTTP_AUTHORIZATION=f"Basic {credential.plaintext}",
        )
        api.post("/api/v1/leaked-tokens", {"token": leaked.plaintext}, format="json")
        issue_embedding(api, world, credential)
        issue_embedding(api, world, credential)

    causes = dict(
        PersonalAccessToken.objects.filter(status=TokenStatus.REVOKED).values_list("name", "revocation_cause")
    )
    embedded = PersonalAccessToken.objects.filter(kind=TokenKind.EMBED, status=TokenStatus.REVOKED).get()
    assert causes == {
        "by admin": RevocationCause.ADMINISTRATOR,
        "by integration": RevocationCause.INTEGRATION,
        "leaked": RevocationCause.LEAK_REPORT,
        embedded.name: RevocationCause.EMBED_REPLACED,
    }
    assert PersonalAccessToken.objects.get(pk=by_admin.pk).revocation_reason == "Left the team"

    page = signed_in(world.user).get("/tokens/").content.decode()
    assert f"Revoked by {user_admin.username} (an administrator)" in page and "Reason: “Left the team”" in page
    assert "Ended by the integration credential “sync”" in page
    assert "because someone reported it leaked" in page
    assert "by a newer embedding token" in page

    # One e-mail per cause an owner must act on; none for a replaced embedding token.
    bodies = {message.subject: message.body for message in mail.outbox}
    assert len(mail.outbox) == 3
    assert (
        f"{user_admin.username}, an administrator, revoked"
        in bodies["Your personal access token “by admin” was revoked"]
    )
    assert "Reason given: Left the team" in bodies["Your personal access token “by admin” was revoked"]
    assert "The integration credential “sync”" in bodies["Your personal access token “by integration” was revoked"]
    assert "reported leaked" in "".join(mail.outbox[i].subject for i in range(3))

    # The audit trail records the cause with each revocation.
    events = AuditEvent.objects.filter(action__in=[AuditAction.TOKEN_REVOKED, AuditAction.TOKEN_REPORTED_LEAKED])
    assert sorted(event.changes["cause"] for event in events) == sorted(causes.values())


# ---------------------------------------------------------------- 3. embedding tokens are not the owner's to extend


def test_the_owner_cannot_extend_an_embedding_token(api, world):
    credential = integration_credential_create(tenant=world.tenant, name="portal", actor=None)
    body = issue_embedding(api, world, credential, seconds=3)
    token = PersonalAccessToken.objects.get(kind=TokenKind.EMBED)
    PersonalAccessToken.objects.filter(pk=token.pk).update(
        created_at=timezone.now() - timedelta(seconds=30), expires_at=timezone.now() - timedelta(seconds=5)
    )
    owner = signed_in(world.user)
    assert owner.get(f"/tokens/{token.pk}/edit/").status_code == 409
    later = (timezone.now() + timedelta(days=363)).date().isoformat()
    response = owner.post(
        f"/tokens/{token.pk}/edit/", {"name": "mine now", "expires_on": later, "roles": [str(world.reader.pk)]}
    )
    assert response.status_code == 409
    assert "cannot be edited" in response.content.decode()
    token.refresh_from_db()
    assert token.expires_at < timezone.now() and token.name.startswith("Embedding · ")
    # And the link still opens nothing.
    assert Client().get(body["redirectUrl"].removeprefix("http://127.0.0.1:8000")).status_code == 401
    # The list shows its kind and no edit link; deleting stays allowed.
    page = owner.get("/tokens/").content.decode()
    assert ">Embedding</span>" in page and f"/tokens/{token.pk}/edit/" not in page
    assert owner.post(f"/tokens/{token.pk}/delete/").status_code == 302
    assert PersonalAccessToken.objects.get(pk=token.pk).status == TokenStatus.DELETED


# ---------------------------------------------------------------- 6. advice that helps, for each cause


@pytest.mark.parametrize(
    ("cause", "reason", "advice"),
    [
        ("role", "You no longer hold the role “Writer”.", "Edit the token and leave “Writer” out"),
        ("right", "You are no longer allowed to use personal access tokens.", "Editing the token will not help."),
        ("switch", "no longer allows personal access tokens in your tenant.", "Ask an application administrator"),
    ],
)
def test_an_inactive_token_says_what_will_help(world, user_admin, cause, reason, advice):
    token = world.issue("sync").token
    if cause == "role":
        role_grant_remove(user=world.user, role=world.writer, actor=user_admin)
    elif cause == "right":
        user_set_pat_creation_right(user=world.user, allowed=False, actor=user_admin)
    else:
        tenant_application_set_pats_allowed(
            tenant=world.tenant, application=world.application, allowed=False, actor=None
        )
    owner = signed_in(world.user)
    page = owner.get("/tokens/").content.decode()
    assert reason in page and advice in page
    assert "The owner" not in page and "Edit its permissions, or ask an administrator" not in page
    edit = owner.get(f"/tokens/{token.pk}/edit/").content.decode()
    assert "Inactive" in edit and reason in edit
    if cause == "role":
        assert "Writer" in edit and "you no longer hold it" in edit  # the lost role does not vanish silently
    # Saving without fixing the cause says it is still inactive.
    day = timezone.localtime(token.expires_at).date().isoformat()
    response = owner.post(
        f"/tokens/{token.pk}/edit/",
        {"name": "renamed", "expires_on": day, "roles": [str(world.reader.pk), str(world.writer.pk)]},
        follow=True,
    )
    text = response.content.decode()
    if cause == "role":
        assert response.status_code == 400 and "is not one of the available choices" in text  # the lost role
    else:
        assert "saved, but it is still inactive" in text and advice in text


def test_an_edit_that_fixes_the_cause_reactivates_and_says_saved(world, user_admin):
    token = world.issue("sync").token
    role_grant_remove(user=world.user, role=world.writer, actor=user_admin)
    day = timezone.localtime(token.expires_at).date().isoformat()
    response = signed_in(world.user).post(
        f"/tokens/{token.pk}/edit/", {"name": "sync", "expires_on": day, "roles": [str(world.reader.pk)]}, follow=True
    )
    text = response.content.decode()
    assert "Token “sync” saved." in text and "still inactive" not in text


# ---------------------------------------------------------------- 8. the management API: same kinds on every verb


def test_the_management_api_ends_and_refuses_to_rename_embedding_tokens_it_lists(api, world, user_admin):
    credential = integration_credential_create(tenant=world.tenant, name="portal", actor=None)
    issue_embedding(api, world, credential)
    api.credentials()
    client = bearer(api, administrative_pat(user_admin, "user_administrator").plaintext)
    listed = client.get(f"/api/v1/users/{world.user.pk}/personal-access-tokens").json()
    embedding = next(item for item in listed if item["kind"] == "embed")
    url = f"/api/v1/users/{world.user.pk}/personal-access-tokens/{embedding['name']}"
    rename = client.patch(url, {"name": "hidden"}, format="json")
    assert rename.status_code == 409 and rename.json()["error"]["code"] == "embedding_token"
    assert client.delete(url).status_code == 204
    ended = PersonalAccessToken.objects.get(pk=embedding["id"])
    assert ended.status == TokenStatus.REVOKED and ended.revocation_cause == RevocationCause.ADMINISTRATOR


# ---------------------------------------------------------------- 9. administrative tokens from the profile menu


def test_holders_of_service_roles_make_edit_and_delete_administrative_tokens_in_the_browser(api, main_admin):
    import re

    from tests.factories import service_role

    owner = signed_in(main_admin)
    page = owner.get("/tokens/new/").content.decode()
    assert (
        "This service&#x27;s API (administrative token)" in page or "This service's API (administrative token)" in page
    )
    assert "No application allows" not in page
    form_id = re.search(r'name="form_id" value="([^"]+)"', page).group(1)
    developer = service_role("developer")
    response = owner.post(
        "/tokens/new/",
        {
            "form_id": form_id,
            "application": "administrative",
            "name": "health probe",
            "expiry_preset": "7",
            "roles": [str(developer.pk)],
        },
    )
    assert response.status_code == 200, response.content.decode()[-2000:]
    secret = re.search(r"pat_[0-9A-Za-z]{36}", response.content.decode()).group(0)
    assert bearer(api, secret).get("/api/v1/admin/health").status_code in (200, 503)
    token = PersonalAccessToken.objects.get(name="health probe")
    assert token.is_administrative and ">Administrative</span>" in owner.get("/tokens/").content.decode()
    day = timezone.localtime(token.expires_at).date().isoformat()
    assert (
        owner.post(
            f"/tokens/{token.pk}/edit/", {"name": "probe", "expires_on": day, "roles": [str(developer.pk)]}
        ).status_code
        == 302
    )
    assert owner.post(f"/tokens/{token.pk}/delete/").status_code == 302
    assert PersonalAccessToken.objects.get(pk=token.pk).status == TokenStatus.DELETED


def test_an_end_user_is_not_offered_administrative_tokens(world):
    page = signed_in(world.user).get("/tokens/new/").content.decode()
    assert "administrative token" not in page


# ---------------------------------------------------------------- 7. a tighter lifetime reaches existing tokens


def test_lowering_a_tenants_maximum_lifetime_is_confirmed_audited_and_shortens_longer_tokens(
    world, main_admin, django_capture_on_commit_callbacks
):
    from tests.console.forms import form_data

    long_lived = world.issue("yearly", days=300).token
    short_lived = world.issue("weekly", days=7).token
    console = signed_in(main_admin)
    url = f"/admin/tenants/tenant/{world.tenant.pk}/change/"
    data = form_data(console.get(url).content.decode(), "tenant_form")
    data["pat_max_lifetime_days"] = ["30"]
    warning = console.post(url, data)
    page = warning.content.decode()
    assert warning.status_code == 200 and "It shortens the expiry of 1 live token" in page
    assert "yearly" in page and "weekly" not in page
    world.tenant.refresh_from_db()
    assert world.tenant.pat_max_lifetime_days is None  # nothing saved before the confirmation
    assert not AuditEvent.objects.filter(action=AuditAction.TENANT_POLICY_CHANGED).exists()

    with django_capture_on_commit_callbacks(execute=True):
        confirmed = console.post(url, form_data(page, "confirm-inactivation-form"))
    assert confirmed.status_code == 302
    world.tenant.refresh_from_db()
    assert world.tenant.pat_max_lifetime_days == 30
    long_lived.refresh_from_db()
    short_lived.refresh_from_db()
    assert timedelta(days=29) < long_lived.expires_at - timezone.now() <= timedelta(days=30)
    assert short_lived.expires_at - timezone.now() < timedelta(days=8)  # already within the policy
    policy = AuditEvent.objects.get(action=AuditAction.TENANT_POLICY_CHANGED)
    assert policy.actor == main_admin and policy.changes == {"pat_max_lifetime_days": [None, 30]}
    shortened = AuditEvent.objects.get(action=AuditAction.TOKEN_EXPIRY_SHORTENED)
    assert shortened.token_id == long_lived.pk and shortened.actor == main_admin
    assert [message.to for message in mail.outbox] == [[world.user.email]]
    assert "now expires sooner" in mail.outbox[0].subject and "yearly" in mail.outbox[0].body


def test_every_tenant_policy_change_is_audited_with_old_and_new_values(world, main_admin):
    from tests.console.forms import form_data

    console = signed_in(main_admin)
    url = f"/admin/tenants/tenant/{world.tenant.pk}/change/"
    data = form_data(console.get(url).content.decode(), "tenant_form")
    data.update(token_requests_per_minute=["60"], reminder_days=["[14, 3]"], admins_may_issue_pats_via_api=["on"])
    data.pop("notify_new_ip", None)
    assert console.post(url, data).status_code == 302
    changes = AuditEvent.objects.get(action=AuditAction.TENANT_POLICY_CHANGED).changes
    assert changes == {
        "token_requests_per_minute": [600, 60],
        "reminder_days": [[7, 1], [14, 3]],
        "notify_new_ip": [True, False],
    }
    assert AuditEvent.objects.filter(action=AuditAction.TENANT_API_ISSUANCE_SWITCHED, actor=main_admin).exists()


# ---------------------------------------------------------------- 10. OAuth client names


def test_an_oauth_client_name_is_not_taken_twice_in_an_application(world):
    from io import StringIO

    from django.core.management import CommandError, call_command

    call_command("create_oauth_client", "--app", world.application.slug, "--name", "backend", stdout=StringIO())
    with pytest.raises(CommandError, match="already has an OAuth client named"):
        call_command("create_oauth_client", "--app", world.application.slug, "--name", "backend", stdout=StringIO())
