"""CSRF on every state-changing form: the sign-in and sign-out, the self-service
pages, and every add form, change form, action and custom view of the console.

Each case posts a valid request twice with a client that enforces CSRF and
holds the CSRF cookie, as a victim's browser would: without the token it is
refused with 403 and the database is left exactly as it was; with the token
the same request goes through and writes, so the refusal was the CSRF check's.

The API is exempt by design (its credentials travel in a header, never a
cookie); the last tests prove the session cookie opens nothing there.
"""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.authentication import SessionAuthentication

from core.errors import json_not_found
from iam.models import Role, User
from tenants.models import TenantApplication
from tests.conftest import World
from tests.console.forms import form_data
from tests.factories import PASSWORD, ApplicationFactory, RoleFactory, TenantApplicationFactory, grant
from tokens.credentials import integration_credential_create
from tokens.models import IntegrationCredential, OAuthClient, PersonalAccessToken, WebhookEndpoint
from tokens.oauth import oauth_client_create
from tokens.webhooks import webhook_endpoint_create

pytestmark = pytest.mark.django_db

STRONG_PASSWORD = "Quartz-lantern-harbour-42"


@dataclass
class Objects:
    world: World
    main_admin: User
    token: PersonalAccessToken
    pending: PersonalAccessToken  # awaits a user administrator's approval
    spare_role: Role  # no token uses these: their switches take effect at once
    unused_eligible_role: Role
    switch_on: TenantApplication  # no token relies on these either
    switch_off: TenantApplication
    credential: IntegrationCredential
    oauth_client: OAuthClient
    webhook: WebhookEndpoint


@pytest.fixture
def objects(world, main_admin) -> Objects:
    spare_role = RoleFactory(application=world.application, code="spare", pat_eligible=False)
    grant(world.user, RoleFactory(application=world.application, code="audit", needs_token_approval=True))
    return Objects(
        world=world,
        main_admin=main_admin,
        token=world.issue("to be changed").token,
        pending=world.issue("to be decided", roles=("audit",)).token,
        spare_role=spare_role,
        unused_eligible_role=RoleFactory(application=world.application, code="unused", pat_eligible=True),
        switch_on=TenantApplicationFactory(tenant=world.tenant, allows_pats=True),
        switch_off=TenantApplicationFactory(tenant=world.tenant, allows_pats=False),
        credential=integration_credential_create(tenant=world.tenant, name="portal", actor=None).credential,
        oauth_client=oauth_client_create(application=world.application, name="backend", actor=None).client,
        webhook=webhook_endpoint_create(
            tenant=world.tenant, url="http://127.0.0.1:9/hooks", events=["token.created"], actor=None
        ).endpoint,
    )


def database_snapshot() -> dict[str, list[dict]]:
    """Every row of every table (the test database is small)."""
    return {
        model._meta.label: list(model.objects.order_by("pk").values())
        for model in apps.get_models(include_auto_created=True)
    }


def browser(user: User | None, page: str) -> tuple[Client, str]:
    """A client that enforces CSRF, signed in as ``user``, after opening ``page``
    (which sets the CSRF cookie, as it would in a browser)."""
    client = Client(enforce_csrf_checks=True)
    if user is not None:
        client.force_login(user)
    response = client.get(page)
    assert response.status_code == 200, page
    assert settings.CSRF_COOKIE_NAME in client.cookies
    return client, response.content.decode()


Prepared = tuple[Client, str, dict]


def console_form(url: str, form_id: str, /, **changes) -> Callable[[Objects], Prepared]:
    """The console's form at ``url`` as the browser would submit it, with ``changes``."""

    def prepare(o: Objects) -> Prepared:
        client, page = browser(o.main_admin, url.format(o=o))
        data = form_data(page, form_id)
        data.update({name: value(o) if callable(value) else value for name, value in changes.items()})
        return client, url.format(o=o), data

    return prepare


def console_post(url: str, data: Callable[[Objects], dict], page: str | None = None) -> Callable[[Objects], Prepared]:
    def prepare(o: Objects) -> Prepared:
        client, _ = browser(o.main_admin, (page or url).format(o=o))
        return client, url.format(o=o), data(o)

    return prepare


def self_service(
    url: str, data: Callable[[Objects, str], dict], page: str | None = None
) -> Callable[[Objects], Prepared]:
    def prepare(o: Objects) -> Prepared:
        client, html = browser(o.world.user, (page or url).format(o=o))
        return client, url.format(o=o), data(o, html)

    return prepare


def sign_in(o: Objects) -> Prepared:
    client, _ = browser(None, "/accounts/login/")
    return client, "/accounts/login/", {"username": o.world.user.username, "password": PASSWORD}


def create_token_data(o: Objects, page: str) -> dict:
    return {
        "form_id": re.search(r'name="form_id" value="([^"]+)"', page).group(1),
        "application": str(o.world.application.pk),
        "name": "Calendar sync",
        "expiry_preset": "30",
        "roles": [str(o.world.reader.pk)],
    }


def in_days(days: int) -> str:
    return (timezone.now() + timedelta(days=days)).date().isoformat()


def action(name: str, selected: Callable[[Objects], int], **extra) -> Callable[[Objects], dict]:
    return lambda o: {"action": name, "_selected_action": [selected(o)], "index": "0", **extra}


TOKEN_LIST = "/admin/tokens/personalaccesstoken/"

# Keyed by what each case covers, so test_every_console_form_is_covered can
# list the console's forms and actions and demand a case for each.
CASES: dict[str, Callable[[Objects], Prepared]] = {
    "sign-in": sign_in,
    "sign-out": self_service("/accounts/logout/", lambda o, page: {}, page="/tokens/"),
    "self-service:create": self_service("/tokens/new/", create_token_data),
    "self-service:edit": self_service(
        "/tokens/{o.token.pk}/edit/",
        lambda o, page: {"name": "renamed", "expires_on": in_days(40), "roles": [str(o.world.reader.pk)]},
    ),
    "self-service:delete": self_service("/tokens/{o.token.pk}/delete/", lambda o, page: {}),
    "console:sign-out": console_post("/admin/logout/", lambda o: {}, page="/admin/"),
    "console:password_change": console_post(
        "/admin/password_change/",
        lambda o: {"old_password": PASSWORD, "new_password1": STRONG_PASSWORD, "new_password2": STRONG_PASSWORD},
    ),
    "tokens.personalaccesstoken:revoke": console_post(
        "/admin/tokens/personalaccesstoken/{o.token.pk}/revoke/", lambda o: {"reason": "leaked"}
    ),
    "tokens.personalaccesstoken:action:revoke_selected": console_post(
        TOKEN_LIST, action("revoke_selected", lambda o: o.token.pk, post="yes")
    ),
    "tokens.personalaccesstoken:decide": console_post(
        "/admin/tokens/personalaccesstoken/{o.pending.pk}/decide/", lambda o: {"decision": "approve", "post": "yes"}
    ),
    "tokens.personalaccesstoken:action:approve_selected": console_post(
        TOKEN_LIST, action("approve_selected", lambda o: o.pending.pk, post="yes")
    ),
    "tokens.personalaccesstoken:action:deny_selected": console_post(
        TOKEN_LIST, action("deny_selected", lambda o: o.pending.pk, post="yes", note="not now")
    ),
    "tenants.tenant:add": console_form(
        "/admin/tenants/tenant/add/", "tenant_form", name="Initech", slug="initech", pat_max_lifetime_days=""
    ),
    "tenants.tenant:change": console_form(
        "/admin/tenants/tenant/{o.world.tenant.pk}/change/", "tenant_form", name="Acme renamed"
    ),
    "tenants.application:add": console_form(
        "/admin/tenants/application/add/", "application_form", name="Billing", slug="billing"
    ),
    "tenants.application:change": console_form(
        "/admin/tenants/application/{o.world.application.pk}/change/", "application_form", name="CRM renamed"
    ),
    "tenants.tenantapplication:add": console_form(
        "/admin/tenants/tenantapplication/add/",
        "tenantapplication_form",
        tenant=lambda o: str(o.world.tenant.pk),
        application=lambda o: str(ApplicationFactory().pk),
        allows_pats="on",
    ),
    "tenants.tenantapplication:change": console_form(
        "/admin/tenants/tenantapplication/{o.switch_off.pk}/change/", "tenantapplication_form", allows_pats="on"
    ),
    "tenants.tenantapplication:action:allow_pats": console_post(
        "/admin/tenants/tenantapplication/", action("allow_pats", lambda o: o.switch_off.pk)
    ),
    "tenants.tenantapplication:action:disallow_pats": console_post(
        "/admin/tenants/tenantapplication/", action("disallow_pats", lambda o: o.switch_on.pk)
    ),
    "iam.role:add": console_form(
        "/admin/iam/role/add/",
        "role_form",
        application=lambda o: str(o.world.application.pk),
        code="auditor",
        name="Auditor",
        permissions='["orders.audit"]',
    ),
    "iam.role:change": console_form("/admin/iam/role/{o.spare_role.pk}/change/", "role_form", name="Spare renamed"),
    "iam.role:action:set_available_for_pat": console_post(
        "/admin/iam/role/", action("set_available_for_pat", lambda o: o.spare_role.pk)
    ),
    "iam.role:action:set_unavailable_for_pat": console_post(
        "/admin/iam/role/", action("set_unavailable_for_pat", lambda o: o.unused_eligible_role.pk)
    ),
    "iam.user:add": console_form(
        "/admin/iam/user/add/",
        "user_form",
        username="dana",
        email="dana@acme.example",
        tenant=lambda o: str(o.world.tenant.pk),
        usable_password="true",
        password1=STRONG_PASSWORD,
        password2=STRONG_PASSWORD,
    ),
    "iam.user:change": console_form("/admin/iam/user/{o.world.user.pk}/change/", "user_form", first_name="Renamed"),
    "iam.user:password": console_post(
        "/admin/iam/user/{o.world.user.pk}/password/",
        lambda o: {"password1": STRONG_PASSWORD, "password2": STRONG_PASSWORD},
    ),
    "tokens.integrationcredential:add": console_form(
        "/admin/tokens/integrationcredential/add/",
        "integrationcredential_form",
        tenant=lambda o: str(o.world.tenant.pk),
        name="crm sync",
        scopes="embed",
    ),
    "tokens.integrationcredential:action:revoke_credentials": console_post(
        "/admin/tokens/integrationcredential/", action("revoke_credentials", lambda o: o.credential.pk)
    ),
    "tokens.oauthclient:add": console_form(
        "/admin/tokens/oauthclient/add/",
        "oauthclient_form",
        application=lambda o: str(o.world.application.pk),
        name="reporting",
        access_token_lifetime="600",
    ),
    "tokens.oauthclient:change": console_form(
        "/admin/tokens/oauthclient/{o.oauth_client.pk}/change/", "oauthclient_form", name="backend renamed"
    ),
    "tokens.oauthclient:action:revoke_clients": console_post(
        "/admin/tokens/oauthclient/", action("revoke_clients", lambda o: o.oauth_client.pk)
    ),
    "tokens.webhookendpoint:add": console_form(
        "/admin/tokens/webhookendpoint/add/",
        "webhookendpoint_form",
        tenant=lambda o: str(o.world.tenant.pk),
        url="http://127.0.0.1:9/other-hooks",
    ),
    "tokens.webhookendpoint:test": console_post(
        "/admin/tokens/webhookendpoint/{o.webhook.pk}/test/",
        lambda o: {},
        page="/admin/tokens/webhookendpoint/{o.webhook.pk}/change/",
    ),
    "tokens.webhookendpoint:active": console_post(
        "/admin/tokens/webhookendpoint/{o.webhook.pk}/active/",
        lambda o: {"active": "0"},
        page="/admin/tokens/webhookendpoint/{o.webhook.pk}/change/",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_post_without_the_csrf_token_is_refused_and_writes_nothing(objects, case):
    client, url, data = CASES[case](objects)
    data.pop("csrfmiddlewaretoken", None)
    before = database_snapshot()

    refused = client.post(url, data)
    assert refused.status_code == 403
    assert b"CSRF verification failed" in refused.content
    assert database_snapshot() == before

    # The same request with the token goes through: the 403 above was the CSRF check's.
    accepted = client.post(url, {**data, "csrfmiddlewaretoken": client.cookies[settings.CSRF_COOKIE_NAME].value})
    assert accepted.status_code in (200, 302), accepted.content.decode()[:2000]
    assert database_snapshot() != before


def test_every_console_form_is_covered(objects):
    """A form or action added to the console without a case above fails here."""
    request = RequestFactory().get("/admin/")
    request.user = objects.main_admin
    required = set()
    for model, model_admin in admin.site._registry.items():
        label = model._meta.label_lower
        if model_admin.has_add_permission(request):
            required.add(f"{label}:add")
        some_object = model_admin.get_queryset(request).first()
        if some_object is not None and model_admin.has_change_permission(request, some_object):
            required.add(f"{label}:change")
        if some_object is not None and model is User:
            required.add(f"{label}:password")
        required |= {f"{label}:action:{name}" for name in model_admin.get_actions(request)}
    assert required - set(CASES) == set()


def _views(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _views(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern.callback


def test_only_header_authenticated_api_views_are_csrf_exempt():
    """CSRF is off only where no cookie authenticates: DRF views without
    SessionAuthentication. Anything else csrf_exempt is a hole."""
    exempt = [(route, view) for route, view in _views(get_resolver().url_patterns) if getattr(view, "csrf_exempt", 0)]
    assert exempt  # the API's views are found at all
    for route, view in exempt:
        if view is json_not_found:
            continue  # answers 404 to anything and writes nothing
        view_class = getattr(view, "cls", None)
        assert view_class is not None, f"{route} is csrf_exempt but not an API view"
        authenticators = view_class().authentication_classes
        assert not any(issubclass(auth, SessionAuthentication) for auth in authenticators), route
        assert route.startswith(("api/", "oauth/", ".well-known/", "auth/forward")), route


def test_the_session_cookie_opens_nothing_in_the_api(objects):
    """A signed-in administrator's browser, lured into posting to the API
    without a CSRF token: the cookie is not a credential there, so 401."""
    world = objects.world
    client = Client(enforce_csrf_checks=True)
    client.force_login(objects.main_admin)
    user_tokens = f"/api/v1/users/{world.user.pk}/personal-access-tokens"
    body = {
        "name": "planted",
        "expiresAt": (timezone.now() + timedelta(days=7)).isoformat(),
        "applicationId": str(world.application.pk),
        "roles": ["reader"],
    }
    before = database_snapshot()
    embedding = {"email": world.user.email, "appSlug": world.application.slug, "sessionExpiry": 5, "patExpiry": 60}
    requests = [
        client.post(user_tokens, json.dumps(body), content_type="application/json"),
        client.patch(f"{user_tokens}/{objects.token.name}", json.dumps({"name": "x"}), content_type="application/json"),
        client.delete(f"{user_tokens}/{objects.token.name}"),
        client.post("/api/ext/users/personal-access-token", json.dumps(embedding), content_type="application/json"),
    ]
    assert [response.status_code for response in requests] == [401] * len(requests)
    assert database_snapshot() == before
    assert client.get("/api/v1/me").status_code == 401


def test_the_embed_pages_take_no_posts(objects):
    """They never read or write the user's session, and only answer GET: a
    post is refused by the CSRF check, and with a token by the view."""
    client, _ = browser(objects.world.user, "/tokens/")
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    app = objects.world.application.pk
    before = database_snapshot()
    for url in (f"/embed-apps/{app}?personal-access-token=pat_x", f"/embed-apps/{app}/frame", "/demo-app/"):
        assert client.post(url).status_code == 403, url
        assert client.post(url, {"csrfmiddlewaretoken": token}).status_code == 405, url
    assert database_snapshot() == before
