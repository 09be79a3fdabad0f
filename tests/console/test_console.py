"""The administrator console: who sees what, revocation, warnings before
changes that make tokens inactive, the audit trail and the dashboard."""

import csv
import io
import re

import pytest
from django.test import Client

from iam.models import AuditAction, AuditEvent
from tests.conftest import bearer
from tests.console.forms import form_data
from tokens.models import PersonalAccessToken, TokenStatus
from tokens.rules import token_state

pytestmark = pytest.mark.django_db

LISTS = {
    "tenants": "/admin/tenants/tenant/",
    "applications": "/admin/tenants/application/",
    "switches": "/admin/tenants/tenantapplication/",
    "roles": "/admin/iam/role/",
    "users": "/admin/iam/user/",
    "tokens": "/admin/tokens/personalaccesstoken/",
    "audit": "/admin/iam/auditevent/",
    "dashboard": "/admin/dashboard/",
    "credentials": "/admin/tokens/integrationcredential/",
    "oauth_clients": "/admin/tokens/oauthclient/",
    "webhooks": "/admin/tokens/webhookendpoint/",
    "webhook_deliveries": "/admin/tokens/webhookdelivery/",
}
# Which administrator kind may open which page (200); everyone else gets 403.
ALLOWED = {
    "main": set(LISTS),
    "user": {"tenants", "users", "tokens", "audit", "dashboard", "credentials", "webhooks", "webhook_deliveries"},
    "application": {"applications", "switches", "roles", "oauth_clients"},
}


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admins(main_admin, user_admin, app_admin):
    return {"main": main_admin, "user": user_admin, "application": app_admin}


@pytest.mark.parametrize("kind", ["main", "user", "application"])
def test_every_console_page_is_open_only_to_the_kinds_that_may_use_it(admins, kind):
    client = signed_in(admins[kind])
    assert client.get("/admin/").status_code == 200
    for page, url in LISTS.items():
        expected = 200 if page in ALLOWED[kind] else 403
        assert client.get(url).status_code == expected, (kind, page)


def test_end_users_and_anonymous_visitors_get_no_console(world):
    end_user = signed_in(world.user)
    assert end_user.get("/admin/", follow=True).status_code == 403
    assert end_user.get("/admin/tokens/personalaccesstoken/", follow=True).status_code == 403
    anonymous = Client().get("/admin/tokens/personalaccesstoken/", follow=True)
    assert anonymous.redirect_chain[-1][0].startswith("/accounts/login/?next=")


def test_the_overview_cannot_be_sorted_by_the_computed_status(world, main_admin):
    world.issue("mine")
    changelist = signed_in(main_admin).get(LISTS["tokens"]).context["cl"]
    status_column = changelist.list_display.index("status_badge")
    for direction in ("", "-"):
        response = signed_in(main_admin).get(f"{LISTS['tokens']}?o={direction}{status_column}")
        assert response.status_code == 200
        assert "effective_status" not in str(response.context["cl"].queryset.query.order_by)


def test_user_administrator_sees_only_their_tenants_users_and_tokens(world, other_world, user_admin):
    mine, theirs = world.issue("mine").token, other_world.issue("theirs").token
    client = signed_in(user_admin)
    tokens_page = client.get(LISTS["tokens"]).content.decode()
    assert "mine" in tokens_page and "theirs" not in tokens_page
    users_page = client.get(LISTS["users"]).content.decode()
    assert world.user.username in users_page and other_world.user.username not in users_page
    # Another tenant's ids typed into URLs: 404, and nothing happens.
    assert client.get(f"/admin/tokens/personalaccesstoken/{theirs.pk}/change/").status_code == 404
    assert client.get(f"/admin/tokens/personalaccesstoken/{theirs.pk}/revoke/").status_code == 404
    assert client.post(f"/admin/tokens/personalaccesstoken/{theirs.pk}/revoke/").status_code == 404
    assert client.get(f"/admin/iam/user/{other_world.user.pk}/change/").status_code == 404
    assert client.post(f"/admin/iam/user/{other_world.user.pk}/change/", {"username": "x"}).status_code == 404
    # A bulk action with a foreign id in it touches only what the administrator may see.
    client.post(LISTS["tokens"], {"action": "revoke_selected", "_selected_action": [mine.pk, theirs.pk], "post": "yes"})
    assert PersonalAccessToken.objects.get(pk=theirs.pk).status == TokenStatus.ACTIVE
    assert PersonalAccessToken.objects.get(pk=mine.pk).status == TokenStatus.REVOKED
    assert client.get(f"/admin/tokens/personalaccesstoken/{mine.pk}/change/").status_code == 200


def test_main_administrator_sees_every_tenant(world, other_world, main_admin):
    world.issue("mine")
    other_world.issue("theirs")
    page = signed_in(main_admin).get(LISTS["tokens"]).content.decode()
    assert "mine" in page and "theirs" in page


def test_tokens_cannot_be_added_changed_or_deleted_in_the_console(world, main_admin):
    token = world.issue().token
    client = signed_in(main_admin)
    assert client.get("/admin/tokens/personalaccesstoken/add/").status_code == 403
    assert client.post(f"/admin/tokens/personalaccesstoken/{token.pk}/change/", {"name": "renamed"}).status_code == 403
    assert client.get(f"/admin/tokens/personalaccesstoken/{token.pk}/delete/").status_code == 403
    page = client.get(LISTS["tokens"]).content.decode()
    assert "delete_selected" not in page and "revoke_selected" in page
    token.refresh_from_db()
    assert token.name == "integration"


def test_single_revoke_asks_for_confirmation_then_is_irreversible(api, world, user_admin):
    issued = world.issue()
    client = signed_in(user_admin)
    detail = client.get(f"/admin/tokens/personalaccesstoken/{issued.token.pk}/change/").content.decode()
    assert "Revoke personal access token" in detail
    confirmation = client.get(f"/admin/tokens/personalaccesstoken/{issued.token.pk}/revoke/").content.decode()
    assert "irreversible" in confirmation
    assert PersonalAccessToken.objects.get(pk=issued.token.pk).status == TokenStatus.ACTIVE
    client.post(f"/admin/tokens/personalaccesstoken/{issued.token.pk}/revoke/", {"reason": "leaked"})
    token = PersonalAccessToken.objects.get(pk=issued.token.pk)
    assert token.status == TokenStatus.REVOKED and token.revoked_by == user_admin
    assert AuditEvent.objects.get(token=token, action=AuditAction.TOKEN_REVOKED).reason == "leaked"
    assert bearer(api, issued.plaintext).get("/api/v1/me").status_code == 401
    detail = client.get(f"/admin/tokens/personalaccesstoken/{token.pk}/change/").content.decode()
    assert "/revoke/" not in detail


def test_bulk_revoke_confirms_first(world, user_admin):
    tokens = [world.issue(f"t{i}").token for i in range(3)]
    client = signed_in(user_admin)
    ids = [token.pk for token in tokens[:2]]
    confirmation = client.post(LISTS["tokens"], {"action": "revoke_selected", "_selected_action": ids})
    assert confirmation.status_code == 200 and "irreversible" in confirmation.content.decode()
    assert not PersonalAccessToken.objects.filter(status=TokenStatus.REVOKED).exists()
    client.post(LISTS["tokens"], {"action": "revoke_selected", "_selected_action": ids, "post": "yes"})
    assert set(PersonalAccessToken.objects.filter(status=TokenStatus.REVOKED).values_list("pk", flat=True)) == set(ids)


def test_bulk_revoke_tells_each_owner_once(world, user_admin, mailoutbox, django_capture_on_commit_callbacks):
    from tests.factories import UserFactory, grant

    other = UserFactory(username="acme-other", tenant=world.tenant, email="other@acme.example")
    grant(other, world.reader)
    mine = [world.issue(f"mine {i}").token for i in range(3)]
    theirs = world.issue("theirs", owner=other, roles=("reader",)).token
    client = signed_in(user_admin)
    ids = [token.pk for token in (*mine, theirs)]
    reason = {"reason": "Leaked in a CI log"}
    with django_capture_on_commit_callbacks(execute=True):
        client.post(LISTS["tokens"], {"action": "revoke_selected", "_selected_action": ids, "post": "yes", **reason})
    assert PersonalAccessToken.objects.filter(pk__in=ids, status=TokenStatus.REVOKED).count() == 4
    assert len(mailoutbox) == 2  # one e-mail per owner, not one per token
    to = {message.to[0]: message for message in mailoutbox}
    assert sorted(to) == sorted([world.user.email, other.email])
    many = to[world.user.email]
    assert many.subject == "3 of your personal access tokens were revoked"
    assert all(f"“mine {i}”" in many.body for i in range(3)) and "Leaked in a CI log" in many.body
    assert "an administrator, revoked" in many.body
    assert to[other.email].subject == "Your personal access token “theirs” was revoked"


def test_application_administrator_cannot_revoke(world, app_admin):
    token = world.issue().token
    assert signed_in(app_admin).post(f"/admin/tokens/personalaccesstoken/{token.pk}/revoke/").status_code == 403
    assert PersonalAccessToken.objects.get(pk=token.pk).status == TokenStatus.ACTIVE


def test_a_main_administrator_is_shown_the_tokens_a_change_makes_inactive(world, main_admin):
    world.issue("uses reader", roles=("reader",))
    action = {"action": "set_unavailable_for_pat", "_selected_action": [world.reader.pk]}
    page = signed_in(main_admin).post(LISTS["roles"], action).content.decode()
    assert "uses reader" in page and world.user.username in page


def test_making_a_role_unavailable_warns_with_the_tokens_then_makes_them_inactive(world, app_admin):
    token = world.issue("uses reader", roles=("reader",)).token
    client = signed_in(app_admin)
    action = {"action": "set_unavailable_for_pat", "_selected_action": [world.reader.pk]}
    warning = client.post(LISTS["roles"], action)
    page = warning.content.decode()
    assert warning.status_code == 200 and "This change makes 1 active token inactive" in page
    assert "no longer available for personal access tokens" in page
    # An application administrator sees no tokens: a count per tenant and reason only.
    assert "uses reader" not in page and world.user.username not in page and token.display_prefix not in page
    assert world.tenant.name in page
    # The change was rolled back: its "set unavailable" message shows neither here nor on the next page.
    assert "set unavailable for PAT" not in page
    assert "set unavailable for PAT" not in client.get(LISTS["roles"]).content.decode()
    world.reader.refresh_from_db()
    assert world.reader.pat_eligible and token_state(token).is_usable
    assert not AuditEvent.objects.filter(action=AuditAction.TOKEN_INACTIVATED).exists()
    confirmed = client.post(LISTS["roles"], form_data(page, "confirm-inactivation-form"))
    assert confirmed.status_code == 302
    assert "1 role set unavailable for PAT; 1 token changed state." in client.get(LISTS["roles"]).content.decode()
    world.reader.refresh_from_db()
    assert not world.reader.pat_eligible
    assert token_state(token).inactive_reasons[0].code == "role_not_pat_eligible"
    assert AuditEvent.objects.filter(action=AuditAction.TOKEN_INACTIVATED, token=token).exists()


def test_a_change_that_inactivates_nothing_is_saved_at_once(world, app_admin):
    client = signed_in(app_admin)
    response = client.post(LISTS["roles"], {"action": "set_unavailable_for_pat", "_selected_action": [world.reader.pk]})
    assert response.status_code == 302
    world.reader.refresh_from_db()
    assert not world.reader.pat_eligible


def test_removing_a_users_right_in_the_user_form_warns_first(world, user_admin):
    token = world.issue().token
    client = signed_in(user_admin)
    url = f"/admin/iam/user/{world.user.pk}/change/"
    data = form_data(client.get(url).content.decode(), "user_form")
    data.pop("can_create_pats")
    warning = client.post(url, data)
    assert "This change makes 1 active token inactive" in warning.content.decode()
    world.user.refresh_from_db()
    assert world.user.can_create_pats
    client.post(url, form_data(warning.content.decode(), "confirm-inactivation-form"))
    world.user.refresh_from_db()
    assert not world.user.can_create_pats
    assert token_state(token).inactive_reasons[0].code == "owner_pat_right_removed"
    assert AuditEvent.objects.filter(action=AuditAction.USER_PAT_RIGHT_CHANGED, actor=user_admin).exists()


def test_the_user_form_audits_a_profile_change_with_old_and_new_values(world, user_admin):
    client = signed_in(user_admin)
    url = f"/admin/iam/user/{world.user.pk}/change/"
    data = form_data(client.get(url).content.decode(), "user_form")
    data.update(first_name="Ada", email="ada@acme.example")
    assert client.post(url, data).status_code == 302
    world.user.refresh_from_db()
    assert (world.user.first_name, world.user.email) == ("Ada", "ada@acme.example")
    event = AuditEvent.objects.get(action=AuditAction.USER_CHANGED)
    assert event.actor == user_admin and event.tenant_id == world.tenant.pk
    assert event.changes["first_name"][1] == "Ada" and event.changes["email"][1] == "ada@acme.example"


def test_moving_a_user_to_another_tenant_warns_then_ends_their_tokens_use(world, other_world, main_admin):
    token = world.issue().token
    client = signed_in(main_admin)
    url = f"/admin/iam/user/{world.user.pk}/change/"
    data = form_data(client.get(url).content.decode(), "user_form")
    data["tenant"] = str(other_world.tenant.pk)
    warning = client.post(url, data)
    assert "This change makes 1 active token inactive" in warning.content.decode()
    world.user.refresh_from_db()
    assert world.user.tenant_id == world.tenant.pk and token_state(token).is_usable
    assert client.post(url, form_data(warning.content.decode(), "confirm-inactivation-form")).status_code == 302
    world.user.refresh_from_db()
    assert world.user.tenant_id == other_world.tenant.pk
    assert not token_state(token).is_usable
    # Both tenants' trails say so: the one the user left and the one they joined.
    moves = AuditEvent.objects.filter(action=AuditAction.USER_CHANGED, changes__has_key="tenant")
    assert sorted(moves.values_list("tenant_id", flat=True)) == sorted([world.tenant.pk, other_world.tenant.pk])
    assert AuditEvent.objects.filter(action=AuditAction.TOKEN_INACTIVATED, token=token).exists()


def test_only_a_main_administrator_moves_a_user_between_tenants(world, other_world, user_admin):
    from core.errors import NotPermitted
    from iam.services import user_update

    with pytest.raises(NotPermitted):
        user_update(user=world.user, changes={"tenant": other_world.tenant}, actor=user_admin)
    world.user.refresh_from_db()
    assert world.user.tenant_id == world.tenant.pk


def test_removing_a_grant_in_the_user_form_warns_first(world, user_admin):
    token = world.issue(roles=("writer",)).token
    client = signed_in(user_admin)
    url = f"/admin/iam/user/{world.user.pk}/change/"
    data = form_data(client.get(url).content.decode(), "user_form")
    total = int(data["role_grants-TOTAL_FORMS"][0])
    writer_form = next(i for i in range(total) if data[f"role_grants-{i}-role"] == [str(world.writer.pk)])
    data[f"role_grants-{writer_form}-DELETE"] = ["on"]
    warning = client.post(url, data)
    assert "This change makes 1 active token inactive" in warning.content.decode()
    assert token_state(token).is_usable
    client.post(url, form_data(warning.content.decode(), "confirm-inactivation-form"))
    assert token_state(token).inactive_reasons[0].code == "role_not_held"


def test_the_user_form_offers_only_roles_of_applications_in_the_users_tenant(world, other_world, main_admin):
    from iam.models import RoleGrant

    client = signed_in(main_admin)
    url = f"/admin/iam/user/{world.user.pk}/change/"
    page = client.get(url).content.decode()
    assert f'value="{world.reader.pk}"' in page and f'value="{other_world.reader.pk}"' not in page
    data = form_data(page, "user_form")
    total = int(data["role_grants-TOTAL_FORMS"][0])
    data["role_grants-TOTAL_FORMS"] = [str(total + 1)]
    data[f"role_grants-{total}-role"] = [str(other_world.reader.pk)]
    refused = client.post(url, data)
    assert refused.status_code == 200 and "Select a valid choice" in refused.content.decode()
    assert not RoleGrant.objects.filter(user=world.user, role=other_world.reader).exists()


def test_switching_an_application_off_for_a_tenant_warns_first(world, app_admin):
    token = world.issue().token
    client = signed_in(app_admin)
    url = f"/admin/tenants/application/{world.application.pk}/change/"
    data = form_data(client.get(url).content.decode(), "application_form")
    data.pop("tenant_links-0-allows_pats")
    warning = client.post(url, data)
    assert "This change makes 1 active token inactive" in warning.content.decode()
    client.post(url, form_data(warning.content.decode(), "confirm-inactivation-form"))
    assert token_state(token).inactive_reasons[0].code == "application_disallows_pats"


def test_user_administrator_cannot_grant_administrator_roles(world, user_admin):
    client = signed_in(user_admin)
    page = client.get(f"/admin/iam/user/{world.user.pk}/change/").content.decode()
    options = re.findall(r"<option[^>]*>([^<]*)</option>", page)
    # Roles by name and application, not by code; no administrator role (this service's own).
    assert "Writer (acme CRM)" in options and not any(option.endswith("(this service)") for option in options)


def test_audit_trail_is_scoped_filterable_and_exports_csv(world, other_world, user_admin):
    world.issue("mine")
    other_world.issue("theirs")
    client = signed_in(user_admin)
    page = client.get(LISTS["audit"], {"action__exact": "token.created"}).content.decode()
    assert "mine" in page and "theirs" not in page
    export = client.get("/admin/iam/auditevent/export.csv", {"action__exact": "token.created"})
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert rows[0][:4] == ["occurred_at", "tenant", "actor", "action"]
    assert [row[5] for row in rows[1:]] == ["mine"]
    assert signed_in(user_admin).post(LISTS["audit"] + "1/change/", {}).status_code in (403, 404)


def test_dashboard_counts_only_what_the_administrator_may_see(world, other_world, user_admin):
    world.issue("a")
    other_world.issue("b")
    page = signed_in(user_admin).get(LISTS["dashboard"]).content.decode()
    assert "<svg" in page and "Tokens by status" in page and "Token use per day" in page
    assert "<title>active: 1</title>" in page
    assert "<title>next 30 days: 1</title>" in page


def test_overview_query_count_does_not_grow_with_the_page(world, main_admin, django_assert_max_num_queries):
    client = signed_in(main_admin)
    for i in range(3):
        world.issue(f"few {i}")
    with django_assert_max_num_queries(20) as few:
        client.get(LISTS["tokens"])
    for i in range(30):
        world.issue(f"many {i}")
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(LISTS["tokens"])
    assert "many 29" in response.content.decode()


def test_dashboard_query_count_is_fixed(world, main_admin, django_assert_max_num_queries):
    for i in range(10):
        world.issue(f"t{i}")
    client = signed_in(main_admin)
    with django_assert_max_num_queries(14):
        assert client.get(LISTS["dashboard"]).status_code == 200


def test_expiring_and_use_filters(world, main_admin):
    from django.utils import timezone

    soon = world.issue("soon", days=5).token
    world.issue("later", days=60)
    PersonalAccessToken.objects.filter(pk=soon.pk).update(last_used_at=timezone.now())
    client = signed_in(main_admin)
    seven = client.get(LISTS["tokens"], {"expiring": "7"}).content.decode()
    assert "soon" in seven and "later" not in seven
    never = client.get(LISTS["tokens"], {"use": "never"}).content.decode()
    assert "later" in never and ">soon<" not in never


def test_search_by_display_prefix(world, main_admin):
    issued = world.issue("findme")
    world.issue("other")
    page = signed_in(main_admin).get(LISTS["tokens"], {"q": issued.token.display_prefix}).content.decode()
    assert "findme" in page and ">other<" not in page


def test_user_administrator_cannot_take_over_another_administrators_account(world, user_admin, main_admin):
    client = signed_in(user_admin)
    assert client.get(f"/admin/iam/user/{main_admin.pk}/change/").status_code == 200  # may look
    assert client.post(f"/admin/iam/user/{main_admin.pk}/change/", {"username": "x"}).status_code == 403
    response = client.post(
        f"/admin/iam/user/{main_admin.pk}/password/", {"password1": "Taken-over-123!", "password2": "Taken-over-123!"}
    )
    assert response.status_code == 403
    main_admin.refresh_from_db()
    assert main_admin.is_active and not main_admin.check_password("Taken-over-123!")


def test_integration_credentials_are_shown_once_and_scoped(world, other_world, user_admin):
    from tokens.credentials import integration_credential_authenticate
    from tokens.models import IntegrationCredential

    client = signed_in(user_admin)
    add = "/admin/tokens/integrationcredential/add/"
    page = client.get(add).content.decode()
    assert other_world.tenant.name not in page  # a user administrator creates for their own tenant only
    response = client.post(add, {"tenant": world.tenant.pk, "name": "portal", "scopes": ["embed"]})
    secret = re.search(r'value="(itc_[0-9A-Za-z]{36})"', response.content.decode()).group(1)
    assert "no-store" in response["Cache-Control"]
    assert integration_credential_authenticate(secret).name == "portal"
    listing = client.get("/admin/tokens/integrationcredential/").content.decode()
    assert "portal" in listing and secret not in listing
    foreign = client.post(add, {"tenant": other_world.tenant.pk, "name": "sneaky", "scopes": ["embed"]})
    assert foreign.status_code == 200 and not IntegrationCredential.objects.filter(name="sneaky").exists()
    credential = IntegrationCredential.objects.get(name="portal")
    client.post(
        "/admin/tokens/integrationcredential/", {"action": "revoke_credentials", "_selected_action": [credential.pk]}
    )
    assert integration_credential_authenticate(secret) is None


def test_oauth_clients_are_registered_by_application_administrators(world, app_admin, user_admin):
    from tokens.models import OAuthClient
    from tokens.oauth import oauth_client_authenticate

    assert signed_in(user_admin).get("/admin/tokens/oauthclient/").status_code == 403
    client = signed_in(app_admin)
    response = client.post(
        "/admin/tokens/oauthclient/add/",
        {
            "application": world.application.pk,
            "name": "crm backend",
            "token_exchange_enabled": "on",
            "allowed_scopes": "orders.read",
            "access_token_lifetime": 600,
        },
    )
    secret = re.search(r'value="(ocs_[0-9A-Za-z]{36})"', response.content.decode()).group(1)
    registered = OAuthClient.objects.get(name="crm backend")
    assert registered.allowed_scopes == ["orders.read"] and registered.token_exchange_enabled
    assert oauth_client_authenticate(registered.client_id, secret) == registered


def test_the_api_issuance_policy_is_switched_in_the_console_and_audited(world, main_admin):
    client = signed_in(main_admin)
    url = f"/admin/tenants/tenant/{world.tenant.pk}/change/"
    data = form_data(client.get(url).content.decode(), "tenant_form")
    data["admins_may_issue_pats_via_api"] = ["on"]
    assert client.post(url, data).status_code == 302
    world.tenant.refresh_from_db()
    assert world.tenant.admins_may_issue_pats_via_api
    assert AuditEvent.objects.filter(action=AuditAction.TENANT_API_ISSUANCE_SWITCHED, actor=main_admin).exists()


def test_large_lists_never_count_the_whole_table(world, main_admin):
    client = signed_in(main_admin)
    for url in (LISTS["tokens"], LISTS["audit"]):
        page = client.get(url, {"_facets": "True"}).content.decode()
        assert "Show counts" not in page and "Hide counts" not in page


@pytest.mark.parametrize(
    ("kind", "add", "form", "fields", "action"),
    [
        ("main", "/admin/tenants/tenant/add/", "tenant_form", {"name": "Initech", "slug": "initech"}, "tenant.created"),
        (
            "application",
            "/admin/tenants/application/add/",
            "application_form",
            {"name": "Ledger", "slug": "ledger", "tenant_links-TOTAL_FORMS": "0"},
            "application.created",
        ),
        (
            "user",
            "/admin/iam/user/add/",
            "user_form",
            {
                "username": "new-hire",
                "email": "new@acme.example",
                "password1": "a long passphrase 1",
                "password2": "a long passphrase 1",
            },
            "user.created",
        ),
        (
            "application",
            "/admin/iam/role/add/",
            "role_form",
            {"code": "auditor", "name": "Auditor", "permissions": '["orders.read"]'},
            "role.created",
        ),
    ],
)
def test_what_an_administrator_adds_in_the_console_is_audited(world, admins, kind, add, form, fields, action):
    client = signed_in(admins[kind])
    data = form_data(client.get(add).content.decode(), form)
    data.update(fields)
    if kind == "user":
        data["tenant"] = str(world.tenant.pk)  # a user administrator's own tenant
    if "/role/" in add:
        data["application"] = str(world.application.pk)
    response = client.post(add, data)
    assert response.status_code == 302, response.content.decode()[-3000:]
    event = AuditEvent.objects.get(action=action)
    assert event.actor == admins[kind]
    assert (fields.get("slug") or fields.get("username") or fields["code"]) in str(event.changes)


def test_renaming_an_application_is_audited_with_old_and_new_names(world, app_admin):
    client = signed_in(app_admin)
    url = f"/admin/tenants/application/{world.application.pk}/change/"
    data = form_data(client.get(url).content.decode(), "application_form")
    data["name"] = "Acme CRM 2"
    assert client.post(url, data).status_code == 302
    event = AuditEvent.objects.get(action=AuditAction.APPLICATION_CHANGED)
    assert event.changes["name"] == [world.application.name, "Acme CRM 2"] and event.actor == app_admin


def test_a_users_page_counts_the_tokens_the_viewer_sees_by_their_real_status(
    world, other_world, user_admin, main_admin
):
    """By effective status, as the overview shows them; a user moved into the
    tenant left their tokens in the old one, which its administrator never sees."""
    from datetime import timedelta

    from django.utils import timezone

    from iam.services import user_update

    world.issue("live")
    expired = world.issue("old").token
    past = timezone.now() - timedelta(days=1)
    PersonalAccessToken.objects.filter(pk=expired.pk).update(created_at=past - timedelta(days=9), expires_at=past)
    page = signed_in(user_admin).get(f"/admin/iam/user/{world.user.pk}/change/").content.decode()
    assert "2 tokens</a> (1 active, 1 expired)" in page
    assert f"?owner={world.user.pk}" in page

    moved = other_world.user
    for name in ("a", "b", "c"):
        other_world.issue(name)
    user_update(user=moved, changes={"tenant": world.tenant}, actor=main_admin)
    page = signed_in(user_admin).get(f"/admin/iam/user/{moved.pk}/change/").content.decode()
    assert "No tokens." in page and "3 tokens" not in page
    # A main administrator sees them: inactive, since their owner left the tenant.
    page = signed_in(main_admin).get(f"/admin/iam/user/{moved.pk}/change/").content.decode()
    assert "3 tokens</a> (3 inactive)" in page


@pytest.mark.parametrize("page", ["password", "history"])
def test_the_password_and_history_pages_breadcrumbs_name_the_menu_and_lead_back(world, main_admin, page):
    """They name the console's menu, not the model's Django app (an application
    is in *Authorization*, its app is *Tenants and applications*)."""
    from iam.templatetags.console import console_entry, console_menu

    obj = world.user if page == "password" else world.application
    opts = type(obj)._meta
    base = f"/admin/{opts.app_label}/{opts.model_name}/"
    response = signed_in(main_admin).get(f"{base}{obj.pk}/{page}/")
    assert response.status_code == 200
    crumbs = re.search(r'<div class="breadcrumbs">(.*?)</div>', response.content.decode(), re.S).group(1)
    links = re.findall(r'<a href="([^"]+)">([^<]+)</a>', crumbs)
    assert links == [("/admin/", "Home"), (base, console_entry(opts)), (f"{base}{obj.pk}/change/", str(obj))]
    assert console_menu(opts) in crumbs
    assert ("Change password" if page == "password" else "History") in crumbs
    if page == "history":
        assert str(opts.app_config.verbose_name) not in crumbs
