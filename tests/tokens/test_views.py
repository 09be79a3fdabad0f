"""The self-service pages, through Django's test client (the browser tests
in tests/browser drive the same pages in Chromium)."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from iam.models import AuditEvent
from tests.factories import PASSWORD, UserFactory, grant, service_role
from tokens.models import PersonalAccessToken, TokenStatus
from tokens.services import token_revoke

pytestmark = pytest.mark.django_db


@pytest.fixture
def client_for(client):
    def sign_in(user):
        client.force_login(user)
        return client

    return sign_in


def create_form_id(client) -> str:
    page = client.get("/tokens/new/").content.decode()
    return re.search(r'name="form_id" value="([^"]+)"', page).group(1)


def create_payload(world, client, **overrides):
    data = {
        "form_id": create_form_id(client),
        "application": str(world.application.pk),
        "name": "Calendar sync",
        "expiry_preset": "30",
        "roles": [str(world.reader.pk)],
    }
    data.update(overrides)
    return data


def test_sign_in_with_email_rotates_the_session_key(world):
    client = Client()
    client.get("/accounts/login/")
    client.cookies["sessionid"] = "planted-session-id"
    response = client.post("/accounts/login/", {"username": world.user.email.upper(), "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/tokens/"
    assert client.cookies["sessionid"].value != "planted-session-id"
    assert client.get("/tokens/").status_code == 200


def test_wrong_password_is_refused(world):
    response = Client().post("/accounts/login/", {"username": world.user.username, "password": "nope"})
    assert response.status_code == 200 and b"Please enter a correct" in response.content


def test_sign_in_never_redirects_off_site(world):
    client = Client()
    response = client.post(
        "/accounts/login/?next=https://evil.example/",
        {"username": world.user.username, "password": PASSWORD, "next": "https://evil.example/"},
    )
    assert response.status_code == 302 and response["Location"] == "/tokens/"


def test_pages_need_a_signed_in_user(client):
    for path in ("/tokens/", "/tokens/new/", "/tokens/1/edit/", "/tokens/1/delete/"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_sign_out_is_a_post(client_for, world):
    client = client_for(world.user)
    assert client.get("/accounts/logout/").status_code == 405
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/tokens/").status_code == 302


def test_create_shows_the_secret_once_and_never_again(client_for, world):
    client = client_for(world.user)
    data = create_payload(world, client)
    response = client.post("/tokens/new/", data)
    assert response.status_code == 200
    page = response.content.decode()
    secret = re.search(r'value="(pat_[0-9A-Za-z]{36})"', page).group(1)
    assert "will not be shown again" in page
    assert "no-store" in response["Cache-Control"]
    assert secret not in str(response.cookies) and secret not in "".join(client.session.keys())
    assert secret not in str(dict(client.session))
    token = PersonalAccessToken.objects.get(owner=world.user)
    assert token.name == "Calendar sync" and list(token.roles.all()) == [world.reader]
    assert timedelta(days=29, hours=23) < token.expires_at - timezone.now() <= timedelta(days=30)
    # Resubmitting (a reload) creates nothing and shows nothing.
    again = client.post("/tokens/new/", data, follow=True)
    assert secret not in again.content.decode() and b"shown only once" in again.content
    assert PersonalAccessToken.objects.filter(owner=world.user).count() == 1
    listing = client.get("/tokens/").content.decode()
    assert "Calendar sync" in listing and secret not in listing and token.display_prefix in listing


def test_create_with_a_chosen_date(client_for, world):
    client = client_for(world.user)
    day = (timezone.now() + timedelta(days=10)).date()
    response = client.post(
        "/tokens/new/", create_payload(world, client, expiry_preset="custom", expires_on=day.isoformat())
    )
    assert response.status_code == 200
    assert PersonalAccessToken.objects.get(owner=world.user).expires_at.date() == day


@pytest.mark.parametrize(
    ("overrides", "field_message"),
    [
        ({"name": ""}, "This field is required."),
        ({"roles": []}, "Choose at least one permission."),
        ({"expiry_preset": "custom", "expires_on": ""}, "Choose an expiry date."),
        # The date is refused with the range its help text and the input's min/max give.
        ({"expiry_preset": "custom", "expires_on": "2000-01-01"}, "Choose a date from"),
        ({"expiry_preset": "custom", "expires_on": "2999-01-01"}, "Choose a date from"),
        ({"expiry_preset": "999"}, "Select a valid choice"),
        ({"application": "not-a-uuid"}, "Select a valid choice"),
        ({"name": "x" * 101}, "at most 100 characters"),
    ],
)
def test_create_validation_errors_are_shown_per_field_and_nothing_is_written(
    client_for, world, overrides, field_message
):
    client = client_for(world.user)
    response = client.post("/tokens/new/", create_payload(world, client, **overrides))
    assert response.status_code == 400
    assert field_message in response.content.decode()
    assert not PersonalAccessToken.objects.exists() and not AuditEvent.objects.filter(token__isnull=False).exists()


def test_duplicate_name_is_a_field_error(client_for, world):
    world.issue("Calendar sync")
    client = client_for(world.user)
    response = client.post("/tokens/new/", create_payload(world, client))
    assert response.status_code == 400 and "already have a token named" in response.content.decode()


def test_roles_of_another_application_are_refused(client_for, world, other_world):
    from tests.factories import TenantApplicationFactory

    TenantApplicationFactory(tenant=world.tenant, application=other_world.application)
    grant(world.user, other_world.reader)
    client = client_for(world.user)
    response = client.post("/tokens/new/", create_payload(world, client, roles=[str(other_world.reader.pk)]))
    assert response.status_code == 400 and "only" in response.content.decode()


def test_only_applications_allowing_pats_with_an_eligible_role_are_offered(client_for, world, other_world):
    from tests.factories import ApplicationFactory, RoleFactory, TenantApplicationFactory

    closed = TenantApplicationFactory(tenant=world.tenant, allows_pats=False).application
    grant(world.user, RoleFactory(application=closed))
    no_role = ApplicationFactory()
    TenantApplicationFactory(tenant=world.tenant, application=no_role)
    page = client_for(world.user).get("/tokens/new/").content.decode()
    assert world.application.name in page
    select = page.split('id="id_application"', 1)[1].split("</select>", 1)[0]
    assert closed.name not in select and no_role.name not in page
    # The application switched off in the tenant is not hidden silently: the page says why it is missing.
    note = page.split('id="switched-off"', 1)[1].split("</p>", 1)[0]
    assert closed.name in note and "switched off in your tenant" in page
    assert "Admin" not in re.sub(r"<option.*?</option>", "", page).split("Permissions", 1)[1].split("Create token")[0]


def test_user_without_the_right_sees_why_and_whom_to_ask(client_for, world, user_admin):
    world.user.can_create_pats = False
    world.user.save()
    client = client_for(world.user)
    response = client.get("/tokens/new/")
    assert response.status_code == 403
    page = response.content.decode()
    assert "not allowed to create" in page and user_admin.email in page and '<form method="post" novalidate' not in page
    assert client.post("/tokens/new/", {"name": "x"}).status_code == 403
    assert not PersonalAccessToken.objects.exists()


def test_forms_need_a_csrf_token(world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.user)
    assert client.post("/tokens/new/", {"name": "x"}).status_code == 403
    token = world.issue().token
    assert client.post(f"/tokens/{token.pk}/delete/").status_code == 403
    assert PersonalAccessToken.objects.get(pk=token.pk).status == TokenStatus.ACTIVE


def test_list_shows_states_reasons_and_revocation(client_for, world, user_admin):
    from iam.services import role_grant_remove

    active = world.issue("active one", days=3).token
    # Flagged as expiring soon: 3 days left of a 30-day lifetime (see tokens.rules.expires_soon).
    PersonalAccessToken.objects.filter(pk=active.pk).update(created_at=timezone.now() - timedelta(days=27))
    inactive = world.issue("inactive one", roles=("writer",)).token
    revoked = world.issue("revoked one").token
    role_grant_remove(user=world.user, role=world.writer, actor=user_admin)
    token_revoke(token=revoked, actor=user_admin)
    PersonalAccessToken.objects.filter(pk=active.pk).update(last_used_at=timezone.now(), last_used_ip="10.1.2.3")
    page = client_for(world.user).get("/tokens/").content.decode()
    assert "expires in 2 days" in page or "expires in 3 days" in page
    assert 'class="soon"' in page and "10.1.2.3" in page
    assert "You no longer hold the role “Writer”" in page
    assert f"Revoked by {user_admin.username} (an administrator)" in page
    assert f"/tokens/{revoked.pk}/edit/" not in page and f"/tokens/{revoked.pk}/delete/" in page
    assert f"/tokens/{inactive.pk}/edit/" in page


def test_other_users_tokens_are_404(client_for, world, other_world):
    theirs = other_world.issue().token
    client = client_for(world.user)
    assert client.get(f"/tokens/{theirs.pk}/edit/").status_code == 404
    assert client.post(f"/tokens/{theirs.pk}/delete/").status_code == 404
    assert PersonalAccessToken.objects.get(pk=theirs.pk).status == TokenStatus.ACTIVE
    assert theirs.name not in client.get("/tokens/").content.decode()


def test_edit_changes_expiry_and_reactivates_an_inactive_token(client_for, world, user_admin):
    from iam.services import role_grant_remove
    from tokens.rules import token_state

    token = world.issue("sync", roles=("reader", "writer")).token
    role_grant_remove(user=world.user, role=world.writer, actor=user_admin)
    client = client_for(world.user)
    day = (timezone.now() + timedelta(days=50)).date()
    response = client.post(
        f"/tokens/{token.pk}/edit/", {"name": "sync", "expires_on": day.isoformat(), "roles": [str(world.reader.pk)]}
    )
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.expires_at.date() == day and token_state(token).is_usable


def test_edit_refused_for_revoked_tokens(client_for, world, user_admin):
    token = world.issue().token
    token_revoke(token=token, actor=user_admin)
    client = client_for(world.user)
    response = client.get(f"/tokens/{token.pk}/edit/")
    assert response.status_code == 409 and b"cannot be edited" in response.content
    assert client.post(f"/tokens/{token.pk}/edit/", {"name": "x"}).status_code == 409


def test_deleted_tokens_disappear(client_for, world):
    token = world.issue("gone").token
    client = client_for(world.user)
    confirm = client.get(f"/tokens/{token.pk}/delete/").content.decode()
    assert "cannot be undone" in confirm
    assert client.post(f"/tokens/{token.pk}/delete/").status_code == 302
    listing = client.get("/tokens/").content.decode()
    assert "deleted." in listing and f'data-token-id="{token.pk}"' not in listing
    assert client.get(f"/tokens/{token.pk}/edit/").status_code == 404


def test_security_headers_on_pages(client_for, world):
    response = client_for(world.user).get("/tokens/")
    csp = response["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert "<script>" not in response.content.decode() and " onclick=" not in response.content.decode()


def test_production_cookie_settings():
    import iam.settings  # DEBUG is off in the test settings, as in production

    assert iam.settings.SESSION_COOKIE_SECURE and iam.settings.CSRF_COOKIE_SECURE
    assert iam.settings.SESSION_COOKIE_HTTPONLY and iam.settings.CSRF_COOKIE_HTTPONLY
    assert iam.settings.SESSION_COOKIE_SAMESITE == "Lax"


def test_static_files_are_served(client):
    response = client.get("/static/css/app.css")
    assert response.status_code == 200


def test_administrators_see_only_their_own_tokens_on_these_pages(client_for, world, main_admin):
    world.issue("not yours")
    assert "not yours" not in client_for(main_admin).get("/tokens/").content.decode()


def test_tenant_maximum_limits_the_date_picker_and_presets(client_for, world):
    world.tenant.pat_max_lifetime_days = 30
    world.tenant.save()
    page = client_for(world.user).get("/tokens/new/").content.decode()
    last = (timezone.now() + timedelta(days=30)).date().isoformat()
    assert f'max="{last}"' in page
    assert 'value="90"' not in page and 'value="365"' not in page and 'value="30"' in page


def test_service_role_users_get_admin_roles_in_nothing_here(client_for, world):
    developer = UserFactory(tenant=world.tenant)
    grant(developer, service_role("developer"))
    assert client_for(developer).get("/tokens/new/").status_code == 200


def test_the_list_is_paged_and_its_queries_do_not_grow_with_the_tokens(
    client_for, world, django_assert_max_num_queries
):
    from tokens.selectors import TOKENS_PER_PAGE

    client = client_for(world.user)
    for i in range(3):
        world.issue(f"few {i}")
    with django_assert_max_num_queries(20) as few:
        client.get("/tokens/")
    for i in range(TOKENS_PER_PAGE + 5):
        world.issue(f"many {i}")
    with django_assert_max_num_queries(len(few.captured_queries)):
        first = client.get("/tokens/").content.decode()
    newest, oldest = f"many {TOKENS_PER_PAGE + 4}", "few 0"
    assert newest in first and oldest not in first and "Page 1 of 2" in first
    second = client.get("/tokens/", {"page": 2}).content.decode()
    assert oldest in second and newest not in second
    assert "Page 2 of 2" in client.get("/tokens/", {"page": "99"}).content.decode()
    assert "Page 1 of 2" in client.get("/tokens/", {"page": "x"}).content.decode()
