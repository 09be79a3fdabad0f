"""Tenant isolation, as one table.

Tenant A ("acme") and tenant B ("globex") each have an application with roles,
an end user with a token, an administrator, an integration credential and an
OAuth client. Every API operation, self-service page, console page and console
action is tried by every kind of actor of tenant A, always aimed at tenant B's
objects; tenant B's own administrator (or user, or client) is the control that
shows the URL really reaches B's objects. Each row says, actor by actor, what
the rules allow:

    SEES     200, and tenant B's objects are in the answer
    HIDES    200, and nothing of tenant B is (names, slugs, display prefixes, client ids)
    OK       200, no tenant data in the answer either way
    E4xx     refused with that status; the answer mentions nothing of tenant B
    LOGIN    302 to a sign-in page
    BOUNCE   302 back to the list: an action on ids the administrator cannot see
    B302...  positive controls: the request changes tenant B's state (and not A's)

Whatever is refused or only read writes nothing: both tenants' state (tokens,
users, grants, credentials, switches, roles, clients, embed sessions) and the
whole audit trail are compared before and after every request.

The completeness tests at the end fail when an API operation (from the OpenAPI
schema), a URL of the site or the console, or a console action has no row.
"""

import base64
import json
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import partial
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import pytest
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.http import HttpResponse
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.utils import timezone

from iam.models import AuditAction, AuditEvent, Role, RoleGrant, ServiceRole, User
from iam.tenancy import tenant_set_api_issuance
from tenants.models import Application, Tenant, TenantApplication
from tests.conftest import World, make_world
from tests.console.forms import form_data
from tests.factories import UserFactory, administrative_pat, grant, service_role
from tokens.credentials import integration_credential_create
from tokens.models import (
    EmbedSession,
    IntegrationCredential,
    OAuthClient,
    PersonalAccessToken,
    RevokedAccessToken,
    WebhookDelivery,
    WebhookEndpoint,
)
from tokens.oauth import PAT_TOKEN_TYPE, oauth_client_create, token_exchange
from tokens.services import embed_token_issue
from tokens.signing import access_token_claims
from tokens.webhooks import webhook_endpoint_create, webhook_test_send

pytestmark = pytest.mark.django_db


# ---------------------------------------------------------------- what an answer may be


@dataclass(frozen=True)
class Expect:
    status: int
    sees_b: bool | None = None  # whether tenant B's objects are in the answer (None: not checked)
    writes: str = ""  # whose state the request changes: "", "a", "b" or "ab"
    location: str | None = None  # a redirect's target must contain this

    def __repr__(self) -> str:
        sees = {True: " sees B", False: " hides B", None: ""}[self.sees_b]
        return f"{self.status}{sees}{' writes ' + self.writes if self.writes else ''}"


SEES = Expect(200, sees_b=True)
HIDES = Expect(200, sees_b=False)
OK = Expect(200)
E400, E401, E403, E404 = Expect(400), Expect(401), Expect(403), Expect(404)
LOGIN = Expect(302, location="/login/")
NAMED = Expect(401, sees_b=True)  # refused, naming the application the URL names (applications are no tenant's)
BOUNCE = Expect(302)
P202 = Expect(202)
B200, B201, B204, B302 = (Expect(status, writes="b") for status in (200, 201, 204, 302))
A201, A302, AB302 = Expect(201, writes="a"), Expect(302, writes="a"), Expect(302, writes="ab")
# HISTORY on a token's or user's page opens its events in the audit trail.
HIST_T = Expect(302, location="/admin/iam/auditevent/?about=token:")
HIST_U = Expect(302, location="/admin/iam/auditevent/?about=user:")
HIST_TN = Expect(302, location="/admin/iam/auditevent/?about=tenant:")


# ---------------------------------------------------------------- who asks

# Console pages and actions: signed-in sessions.
CONSOLE = ("main", "user_admin_a", "app_admin", "end_user_a", "anonymous", "user_admin_b")
# Self-service pages: signed-in sessions; the control is B's end user, who owns B's token.
PAGES = ("main", "user_admin_a", "app_admin", "end_user_a", "anonymous", "end_user_b")
# The API: administrative PATs, an end user's PAT, tenant A's integration credentials.
# (An application administrator holds no administrative PAT: the role is not
# available for tokens; test_application_administrators_hold_no_administrative_token.)
API = (
    "main_pat",
    "user_admin_a_pat",
    "end_user_a_pat",
    "credential_a_embed",
    "credential_a_manage",
    "anonymous",
    "user_admin_b_pat",
)
# The OAuth endpoints: clients of tenant A's and tenant B's applications.
OAUTH = ("client_a", "anonymous", "client_b")
FAMILIES = {"console": CONSOLE, "pages": PAGES, "api": API, "oauth": OAUTH}

Body = dict | Callable[["Scene", Client], dict] | None


@dataclass(frozen=True)
class Row:
    family: str
    method: str
    what: str
    url: str  # with {placeholders} from Scene.ids
    expect: tuple[Expect, ...]  # one per actor of the family, in its order
    body: Body = None
    headers: dict | None = None  # besides the actor's credential (a proxy's, for the gateway)

    def __post_init__(self):
        assert len(self.expect) == len(FAMILIES[self.family]), f"{self.what}: one expectation per actor"


def console(method, what, url, *expect, body=None) -> Row:
    return Row("console", method, what, url, expect, body)


def page(method, what, url, *expect, body=None) -> Row:
    return Row("pages", method, what, url, expect, body)


def api(method, what, url, *expect, body=None, headers=None) -> Row:
    return Row("api", method, what, url, expect, body, headers)


def oauth(what, url, *expect, body) -> Row:
    return Row("oauth", "POST", what, url, expect, body)


def action(name: str, *ids: str, **extra) -> dict:
    return {"action": name, "_selected_action": [f"{{{key}}}" for key in ids], **extra}


def main_form(path: str, form_id: str, **changes) -> Callable[["Scene", Client], dict]:
    """The console form a main administrator gets for ``path``, with changes:
    what a legitimate administrator would submit, replayed by every actor."""

    def build(scene: "Scene", client: Client) -> dict:
        data = form_data(scene.client("main").get(path.format(**scene.ids)).content.decode(), form_id)
        data.update({key: [value] for key, value in changes.items()})
        return data

    return build


def granting_b_role_to_a_user(scene: "Scene", client: Client) -> dict:
    """A's user's console form, as a main administrator gets it, with one more
    grant: a role of B's application."""
    data = main_form(U + "{a_user}/change/", "user_form")(scene, client)
    index = int(data["role_grants-TOTAL_FORMS"][0])
    data["role_grants-TOTAL_FORMS"] = [str(index + 1)]
    data[f"role_grants-{index}-role"] = [str(scene.ids["b_role"])]
    data[f"role_grants-{index}-user"] = [str(scene.ids["a_user"])]
    return data


def with_form_id(**fields) -> Callable[["Scene", Client], dict]:
    """A self-service create form, with the one-time form id the actor's own GET hands out."""

    def build(scene: "Scene", client: Client) -> dict:
        client.get("/tokens/new/")
        form_ids = client.session.get("token_create_form_ids", [""])
        return {**{key: value.format(**scene.ids) for key, value in fields.items()}, "form_id": form_ids[-1]}

    return build


T = "/admin/tokens/personalaccesstoken/"
U = "/admin/iam/user/"
EV = "/admin/iam/auditevent/"
CR = "/admin/tokens/integrationcredential/"
OC = "/admin/tokens/oauthclient/"
WH = "/admin/tokens/webhookendpoint/"
WD = "/admin/tokens/webhookdelivery/"
TN = "/admin/tenants/tenant/"
AP = "/admin/tenants/application/"
SW = "/admin/tenants/tenantapplication/"
RO = "/admin/iam/role/"
GR = "/admin/auth/group/"
# A user administrator is offered no tenant filter: naming one is a 400 (StrictLookupsMixin).
IN_TENANT_B = "?tenant__id__exact={b_tenant}"
AUTOCOMPLETE = "/admin/autocomplete/?app_label={}&model_name={}&field_name={}&term={}"
AUTOCOMPLETE_OWNERS = AUTOCOMPLETE.format("tokens", "personalaccesstoken", "owner", "Zebulon")
AUTOCOMPLETE_TOKENS = AUTOCOMPLETE.format("iam", "auditevent", "token", "{b_token_prefix}")
AUTOCOMPLETE_TENANTS = AUTOCOMPLETE.format("iam", "user", "tenant", "Glob")
NEW_PASSWORD = "Isolation-Hijack-2026!"
NO_GRANTS = {"role_grants-TOTAL_FORMS": "0", "role_grants-INITIAL_FORMS": "0"}
HEALTH = "/api/v1/admin/health"
AUDIT = "/api/v1/admin/audit-events"
AUDIT_OF_B = AUDIT + "?tenant=globex"
AUDIT_OF_B_TOKEN = AUDIT + "?token={b_token}"
MANAGE = "/api/v1/users/{b_user}/personal-access-tokens"
B_TOKEN = MANAGE + "/{b_token_name}"
B_TOKEN_AS_A = "/api/v1/users/{a_user}/personal-access-tokens/{b_token_name}"  # A's user, B's token's name
EMBED = "/api/ext/users/personal-access-token"
EMBED_OPEN = "/embed-apps/{b_app}?personal-access-token={a_embed}"  # A's embedding token at B's application
LEAKS = "/api/v1/leaked-tokens"
JWKS = "/.well-known/jwks.json"
METADATA = "/.well-known/oauth-authorization-server"
EXCHANGE_B = {
    "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
    "subject_token": "{b_pat}",
    "subject_token_type": PAT_TOKEN_TYPE,
}

# fmt: off
ROWS = [
    # ---------------------------------------------------------- console   main   ua-A   app    end-A  anon   ua-B
    console("GET",  "index",                  "/admin/",                  OK,    HIDES, HIDES, LOGIN, LOGIN, OK),
    console("GET",  "an app's menu",          "/admin/tokens/",           OK,    HIDES, HIDES, LOGIN, LOGIN, OK),
    console("GET",  "dashboard",              "/admin/dashboard/",        SEES,  HIDES, E403,  LOGIN, LOGIN, SEES),
    console("GET",  "autocomplete owners",    AUTOCOMPLETE_OWNERS,        SEES,  HIDES, E403,  LOGIN, LOGIN, SEES),
    console("GET",  "autocomplete tokens",    AUTOCOMPLETE_TOKENS,        SEES,  HIDES, E403,  LOGIN, LOGIN, SEES),
    console("GET",  "autocomplete tenants",   AUTOCOMPLETE_TENANTS,       SEES,  HIDES, E403,  LOGIN, LOGIN, SEES),
    console("GET",  "view B's token on site", "/admin/r/{ct_token}/{b_token}/", E404, E404, E404, LOGIN, LOGIN, E404),

    # tokens: a read-only overview; revoking is the one action   main   ua-A   app    end-A  anon   ua-B
    console("GET",  "tokens",                 T,                          SEES,  HIDES, E403,  LOGIN, LOGIN, SEES),
    console("GET",  "tokens: search B's",     T + "?q={b_token_prefix}",  SEES,  HIDES, E403,  LOGIN, LOGIN, SEES),
    console("GET",  "tokens: tenant B's",     T + IN_TENANT_B,            SEES,  E400,  E403,  LOGIN, LOGIN, E400),
    console("GET",  "B's token",              T + "{b_token}/change/",    SEES,  E404,  E403,  LOGIN, LOGIN, SEES),
    console("POST", "B's token: edit",        T + "{b_token}/change/",    E403,  E403,  E403,  LOGIN, LOGIN, E403,
            body={"name": "hijacked"}),
    console("GET",  "B's token: history",     T + "{b_token}/history/",   HIST_T, E404, E403,  LOGIN, LOGIN, HIST_T),
    console("GET",  "tokens: B's user's",     T + "?owner={b_user}",      SEES,  E404,  E403,  LOGIN, LOGIN, SEES),
    console("GET",  "tokens: add",            T + "add/",                 E403,  E403,  E403,  LOGIN, LOGIN, E403),
    console("GET",  "B's token: delete",      T + "{b_token}/delete/",    E403,  E403,  E403,  LOGIN, LOGIN, E403),
    console("POST", "B's token: delete",      T + "{b_token}/delete/",    E403,  E403,  E403,  LOGIN, LOGIN, E403,
            body={"post": "yes"}),
    console("GET",  "B's token: revoke",      T + "{b_token}/revoke/",    SEES,  E404,  E403,  LOGIN, LOGIN, SEES),
    console("POST", "B's token: revoke",      T + "{b_token}/revoke/",    B302,  E404,  E403,  LOGIN, LOGIN, B302,
            body={"reason": "isolation test"}),
    console("POST", "bulk revoke B's: ask",   T,                          SEES,  BOUNCE, E403, LOGIN, LOGIN, SEES,
            body=action("revoke_selected", "b_token")),
    console("POST", "bulk revoke B's",        T,                          B302,  BOUNCE, E403, LOGIN, LOGIN, B302,
            body=action("revoke_selected", "b_token", post="yes")),
    console("POST", "bulk revoke A's and B's", T,                         AB302, A302,  E403,  LOGIN, LOGIN, B302,
            body=action("revoke_selected", "a_token", "b_token", post="yes")),
    console("GET",  "B's request: approve",   T + "{b_pending}/decide/",  SEES,  E404,  E403,  LOGIN, LOGIN, SEES),
    console("POST", "B's request: approve",   T + "{b_pending}/decide/",  B302,  E404,  E403,  LOGIN, LOGIN, B302,
            body={"decision": "approve", "post": "yes"}),
    console("POST", "B's request: deny",      T + "{b_pending}/decide/",  B302,  E404,  E403,  LOGIN, LOGIN, B302,
            body={"decision": "deny", "post": "yes", "note": "isolation test"}),
    console("POST", "bulk approve B's: ask",  T,                          SEES,  BOUNCE, E403, LOGIN, LOGIN, SEES,
            body=action("approve_selected", "b_pending")),
    console("POST", "bulk approve B's",       T,                          B302,  BOUNCE, E403, LOGIN, LOGIN, B302,
            body=action("approve_selected", "b_pending", post="yes")),
    console("POST", "bulk deny B's",          T,                          B302,  BOUNCE, E403, LOGIN, LOGIN, B302,
            body=action("deny_selected", "b_pending", post="yes", note="isolation test")),
    console("POST", "bulk delete B's",        T,                          BOUNCE, BOUNCE, E403, LOGIN, LOGIN, BOUNCE,
            body=action("delete_selected", "b_token", post="yes")),

    # users                                                      main   ua-A   app    end-A  anon   ua-B
    console("GET",  "users",                  U,                          SEES,  HIDES, E403,  LOGIN, LOGIN, SEES),
    console("GET",  "users: search B's",      U + "?q=Zebulon",           SEES,  HIDES, E403,  LOGIN, LOGIN, SEES),
    console("GET",  "users: tenant B's",      U + IN_TENANT_B,            SEES,  E400,  E403,  LOGIN, LOGIN, E400),
    console("GET",  "B's user",               U + "{b_user}/change/",     SEES,  E404,  E403,  LOGIN, LOGIN, SEES),
    console("POST", "B's user: change",       U + "{b_user}/change/",     B302,  E404,  E403,  LOGIN, LOGIN, B302,
            body=main_form(U + "{b_user}/change/", "user_form", email="hijacked@evil.example")),
    # Refused for everyone: B's application is not available in A's tenant, so its
    # roles are not among the form's choices (the form answers with the error).
    console("POST", "A's user: grant B's role", U + "{a_user}/change/",   OK,    HIDES, E403,  LOGIN, LOGIN, E404,
            body=granting_b_role_to_a_user),
    console("GET",  "B's user: history",      U + "{b_user}/history/",    HIST_U, E404, E403,  LOGIN, LOGIN, HIST_U),
    console("GET",  "B's user: password",     U + "{b_user}/password/",   SEES,  E404,  E403,  LOGIN, LOGIN, SEES),
    console("POST", "B's user: password",     U + "{b_user}/password/",   B302,  E404,  E403,  LOGIN, LOGIN, B302,
            body={"usable_password": "true", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}),
    console("GET",  "users: add",             U + "add/",                 SEES,  HIDES, E403,  LOGIN, LOGIN, SEES),
    console("POST", "users: add in B",        U + "add/",                 B302,  OK,    E403,  LOGIN, LOGIN, B302,
            body={"username": "planted", "email": "planted@evil.example", "tenant": "{b_tenant}",
                  "usable_password": "false", **NO_GRANTS}),
    console("GET",  "B's user: delete",       U + "{b_user}/delete/",     E403,  E403,  E403,  LOGIN, LOGIN, E403),
    console("POST", "B's user: delete",       U + "{b_user}/delete/",     E403,  E403,  E403,  LOGIN, LOGIN, E403,
            body={"post": "yes"}),

    # audit trail                                                main   ua-A   app    end-A  anon   ua-B
    console("GET",  "audit trail",            EV,                         SEES,  HIDES, E403,  LOGIN, LOGIN, SEES),
    console("GET",  "audit: search B's",      EV + "?q={b_token_prefix}", SEES,  HIDES, E403,  LOGIN, LOGIN, SEES),
    console("GET",  "audit: tenant B's",      EV + IN_TENANT_B,           SEES,  E400,  E403,  LOGIN, LOGIN, E400),
    console("GET",  "B's event",              EV + "{b_event}/change/",   SEES,  E404,  E403,  LOGIN, LOGIN, SEES),
    console("GET",  "B's event: history",     EV + "{b_event}/history/",  OK,    E404,  E403,  LOGIN, LOGIN, OK),
    console("GET",  "audit: B's token's",     EV + "?about=token:{b_token}", SEES, E404,  E403,  LOGIN, LOGIN, SEES),
    console("GET",  "audit: B's user's",      EV + "?about=user:{b_user}", SEES,  E404,  E403,  LOGIN, LOGIN, SEES),
    console("GET",  "audit: tenant B's events", EV + "?about=tenant:{b_tenant}", SEES, E404, E403, LOGIN, LOGIN, SEES),
    console("GET",  "audit: CSV, B's token",  EV + "export.csv?about=token:{b_token}", SEES, E404, E403, LOGIN, LOGIN,
            SEES),
    console("GET",  "audit: CSV",             EV + "export.csv",          SEES,  HIDES, E403,  LOGIN, LOGIN, SEES),
    console("GET",  "audit: CSV, B's",        EV + "export.csv" + IN_TENANT_B, SEES, E400, E403, LOGIN, LOGIN, E400),
    console("GET",  "audit: add",             EV + "add/",                E403,  E403,  E403,  LOGIN, LOGIN, E403),
    console("GET",  "B's event: delete",      EV + "{b_event}/delete/",   E403,  E403,  E403,  LOGIN, LOGIN, E403),

    # integration credentials                                    main   ua-A   app    end-A  anon   ua-B
    console("GET",  "credentials",            CR,                         SEES,  HIDES, E403,  LOGIN, LOGIN, SEES),
    console("GET",  "B's credential",         CR + "{b_credential}/change/", SEES, E404, E403, LOGIN, LOGIN, SEES),
    console("GET",  "B's credential: history", CR + "{b_credential}/history/", SEES, E404, E403, LOGIN, LOGIN, SEES),
    console("GET",  "credentials: add",       CR + "add/",                SEES,  HIDES, E403,  LOGIN, LOGIN, SEES),
    console("POST", "credentials: add in B",  CR + "add/",                B200,  OK,    E403,  LOGIN, LOGIN, B200,
            body={"tenant": "{b_tenant}", "name": "planted", "scopes": ["embed"]}),
    console("POST", "revoke B's credential",  CR,                         B302,  BOUNCE, E403, LOGIN, LOGIN, B302,
            body=action("revoke_credentials", "b_credential")),
    console("GET",  "B's credential: delete", CR + "{b_credential}/delete/", E403, E403, E403, LOGIN, LOGIN, E403),

    # webhook endpoints and their deliveries                     main   ua-A   app    end-A  anon   ua-B
    console("GET",  "webhooks",               WH,                         SEES,  HIDES, E403,  LOGIN, LOGIN, SEES),
    console("GET",  "B's webhook",            WH + "{b_webhook}/change/", SEES,  E404,  E403,  LOGIN, LOGIN, SEES),
    console("POST", "B's webhook: edit",      WH + "{b_webhook}/change/", E403,  E404,  E403,  LOGIN, LOGIN, E403,
            body={"url": "http://127.0.0.1:9/hijacked", "events": ["token.created"]}),
    console("GET",  "B's webhook: history",   WH + "{b_webhook}/history/", SEES, E404,  E403,  LOGIN, LOGIN, SEES),
    console("GET",  "webhooks: add",          WH + "add/",                SEES,  HIDES, E403,  LOGIN, LOGIN, SEES),
    console("POST", "webhooks: add in B",     WH + "add/",                B200,  OK,    E403,  LOGIN, LOGIN, B200,
            body={"tenant": "{b_tenant}", "url": "http://127.0.0.1:9/planted", "events": ["token.created"]}),
    console("GET",  "B's webhook: delete",    WH + "{b_webhook}/delete/", E403,  E403,  E403,  LOGIN, LOGIN, E403),
    console("POST", "B's webhook: test",      WH + "{b_webhook}/test/",   B302,  E404,  E403,  LOGIN, LOGIN, B302),
    console("POST", "B's webhook: disable",   WH + "{b_webhook}/active/", B302,  E404,  E403,  LOGIN, LOGIN, B302,
            body={"active": "0"}),
    console("GET",  "webhook deliveries",     WD,                         SEES,  HIDES, E403,  LOGIN, LOGIN, SEES),
    console("GET",  "B's delivery",           WD + "{b_delivery}/change/", SEES, E404,  E403,  LOGIN, LOGIN, SEES),
    console("GET",  "B's delivery: history",  WD + "{b_delivery}/history/", OK,  E404,  E403,  LOGIN, LOGIN, OK),
    console("GET",  "deliveries: add",        WD + "add/",                E403,  E403,  E403,  LOGIN, LOGIN, E403),
    console("GET",  "B's delivery: delete",   WD + "{b_delivery}/delete/", E403, E403,  E403,  LOGIN, LOGIN, E403),

    # tenants: main administrators create and rename them; a tenant's user
    # administrators see their own and change its policies   main   ua-A   app    end-A  anon   ua-B
    console("GET",  "tenants",                TN,                         SEES,  HIDES, E403,  LOGIN, LOGIN, SEES),
    console("GET",  "tenant B",               TN + "{b_tenant}/change/",  SEES,  E404,  E403,  LOGIN, LOGIN, SEES),
    console("POST", "tenant B: change",       TN + "{b_tenant}/change/",  B302,  E404,  E403,  LOGIN, LOGIN, BOUNCE,
            body=main_form(TN + "{b_tenant}/change/", "tenant_form", name="Globex hijacked")),
    console("POST", "tenant B: networks",     TN + "{b_tenant}/change/",  B302,  E404,  E403,  LOGIN, LOGIN, B302,
            body=main_form(TN + "{b_tenant}/change/", "tenant_form", allowed_networks="10.0.0.0/8")),
    console("GET",  "tenant B: history",      TN + "{b_tenant}/history/", HIST_TN, E404, E403, LOGIN, LOGIN, HIST_TN),
    console("GET",  "tenants: add",           TN + "add/",                OK,    E403,  E403,  LOGIN, LOGIN, E403),
    console("GET",  "tenant B: delete",       TN + "{b_tenant}/delete/",  E403,  E403,  E403,  LOGIN, LOGIN, E403),

    # applications, their switches and roles, OAuth clients: no tenant's own; main and
    # application administrators configure them across tenants  main   ua-A   app    end-A  anon   ua-B
    console("GET",  "applications",           AP,                         SEES,  E403,  SEES,  LOGIN, LOGIN, E403),
    console("GET",  "B's application",        AP + "{b_app}/change/",     SEES,  E403,  SEES,  LOGIN, LOGIN, E403),
    console("POST", "B's application: change", AP + "{b_app}/change/",    B302,  E403,  B302,  LOGIN, LOGIN, E403,
            body=main_form(AP + "{b_app}/change/", "application_form", description="changed")),
    console("GET",  "B's application: history", AP + "{b_app}/history/",  SEES,  E403,  SEES,  LOGIN, LOGIN, E403),
    console("GET",  "B's application: test a request", AP + "{b_app}/gateway-test/?method=GET&uri=/",
            SEES,  E403,  SEES,  LOGIN, LOGIN, E403),
    console("GET",  "applications: add",      AP + "add/",                OK,    E403,  OK,    LOGIN, LOGIN, E403),
    console("GET",  "B's application: delete", AP + "{b_app}/delete/",    E403,  E403,  E403,  LOGIN, LOGIN, E403),
    console("GET",  "switches",               SW,                         SEES,  E403,  SEES,  LOGIN, LOGIN, E403),
    console("GET",  "B's switch",             SW + "{b_link}/change/",    SEES,  E403,  SEES,  LOGIN, LOGIN, E403),
    console("GET",  "B's switch: history",    SW + "{b_link}/history/",   SEES,  E403,  SEES,  LOGIN, LOGIN, E403),
    console("GET",  "switches: add",          SW + "add/",                OK,    E403,  OK,    LOGIN, LOGIN, E403),
    console("GET",  "B's switch: delete",     SW + "{b_link}/delete/",    E403,  E403,  E403,  LOGIN, LOGIN, E403),
    console("POST", "B's switch: disallow",   SW,                         B302,  E403,  B302,  LOGIN, LOGIN, E403,
            body=action("disallow_pats", "b_link", _confirm_inactivation="yes")),
    console("POST", "B's switch: allow",      SW,                         BOUNCE, E403, BOUNCE, LOGIN, LOGIN, E403,
            body=action("allow_pats", "b_link")),
    console("GET",  "roles",                  RO,                         SEES,  E403,  SEES,  LOGIN, LOGIN, E403),
    console("GET",  "B's role",               RO + "{b_role}/change/",    SEES,  E403,  SEES,  LOGIN, LOGIN, E403),
    console("GET",  "B's role: history",      RO + "{b_role}/history/",   SEES,  E403,  SEES,  LOGIN, LOGIN, E403),
    console("GET",  "roles: add",             RO + "add/",                OK,    E403,  OK,    LOGIN, LOGIN, E403),
    console("GET",  "B's role: delete",       RO + "{b_role}/delete/",    E403,  E403,  E403,  LOGIN, LOGIN, E403),
    console("POST", "B's role: unavailable",  RO,                         B302,  E403,  B302,  LOGIN, LOGIN, E403,
            body=action("set_unavailable_for_pat", "b_role", _confirm_inactivation="yes")),
    console("POST", "B's role: available",    RO,                         BOUNCE, E403, BOUNCE, LOGIN, LOGIN, E403,
            body=action("set_available_for_pat", "b_role")),
    console("GET",  "OAuth clients",          OC,                         SEES,  E403,  SEES,  LOGIN, LOGIN, E403),
    console("GET",  "B's OAuth client",       OC + "{b_oauth}/change/",   SEES,  E403,  SEES,  LOGIN, LOGIN, E403),
    console("GET",  "B's client: history",    OC + "{b_oauth}/history/",  SEES,  E403,  SEES,  LOGIN, LOGIN, E403),
    console("GET",  "OAuth clients: add",     OC + "add/",                OK,    E403,  OK,    LOGIN, LOGIN, E403),
    console("GET",  "B's client: delete",     OC + "{b_oauth}/delete/",   E403,  E403,  E403,  LOGIN, LOGIN, E403),
    console("POST", "revoke B's client",      OC,                         B302,  E403,  B302,  LOGIN, LOGIN, E403,
            body=action("revoke_clients", "b_oauth")),

    # Django's groups: used by nobody here, so not in the console at all
    console("GET",  "groups",                 GR,                         E404,  E404,  E404,  LOGIN, LOGIN, E404),

    # ---------------------------------------------------------- self-service   main   ua-A   app    end-A  anon   end-B
    page("GET",  "my tokens",                 "/tokens/",                 HIDES, HIDES, HIDES, HIDES, LOGIN, SEES),
    page("GET",  "create form",               "/tokens/new/",             HIDES, HIDES, HIDES, HIDES, LOGIN, SEES),
    page("POST", "create in B's app",         "/tokens/new/",             E400,  E400,  E400,  E400,  LOGIN, B200,
         body=with_form_id(application="{b_app}", name="planted", expiry_preset="30", roles="{b_role}")),
    page("GET",  "edit B's token",            "/tokens/{b_token}/edit/",  E404,  E404,  E404,  E404,  LOGIN, SEES),
    page("POST", "edit B's token",            "/tokens/{b_token}/edit/",  E404,  E404,  E404,  E404,  LOGIN, B302,
         body={"name": "hijacked", "expires_on": "{b_token_expires_on}", "roles": ["{b_role}"]}),
    page("GET",  "regenerate B's token",      "/tokens/{b_token}/regenerate/", E404, E404, E404, E404, LOGIN, SEES),
    page("POST", "regenerate B's token",      "/tokens/{b_token}/regenerate/", E404, E404, E404, E404, LOGIN, B200,
         body=with_form_id(expiry_preset="30", grace="0")),
    page("GET",  "delete B's token",          "/tokens/{b_token}/delete/", E404, E404,  E404,  E404,  LOGIN, SEES),
    page("POST", "delete B's token",          "/tokens/{b_token}/delete/", E404, E404,  E404,  E404,  LOGIN, B302),
    # Only the caller's own revoked tokens: none of B's is listed or deleted for anyone of A.
    page("GET",  "delete revoked: confirm",   "/tokens/revoked/delete/",  HIDES, HIDES, HIDES, HIDES, LOGIN, OK),
    page("POST", "delete revoked",            "/tokens/revoked/delete/", BOUNCE, BOUNCE, BOUNCE, BOUNCE, LOGIN, BOUNCE),

    # ---------------------------------------------------------- API  main   ua-A   end-A  itc-em itc-mg anon   ua-B
    api("GET",    "me",                       "/api/v1/me",            HIDES, HIDES, HIDES, E401,  E401,  E401,  SEES),
    api("GET",    "health",                   HEALTH,                  OK,    E403,  E403,  E401,  E401,  E401,  E403),
    api("GET",    "audit events",             AUDIT,                   SEES,  HIDES, E403,  E401,  E401,  E401,  SEES),
    api("GET",    "audit events of B",        AUDIT_OF_B,              SEES,  HIDES, E403,  E401,  E401,  E401,  SEES),
    api("GET",    "audit of B's token",       AUDIT_OF_B_TOKEN,        SEES,  HIDES, E403,  E401,  E401,  E401,  SEES),
    api("GET",    "B's user's tokens",        MANAGE,                  SEES,  E404,  E403,  E403,  E404,  E401,  SEES),
    api("POST",   "token for B's user",       MANAGE,                  B201,  E404,  E403,  E403,  E404,  E401,  B201,
        body={"name": "planted", "expiresAt": "{in_a_week}", "applicationSlug": "globex-crm", "roles": ["reader"]}),
    api("PATCH",  "rename B's token",         B_TOKEN,                 B200,  E404,  E403,  E403,  E404,  E401,  B200,
        body={"name": "hijacked"}),
    api("DELETE", "end B's token",            B_TOKEN,                 B204,  E404,  E403,  E403,  E404,  E401,  B204),
    api("PATCH",  "rename B's token as A's",  B_TOKEN_AS_A,            E404,  E404,  E403,  E403,  E404,  E401,  E404,
        body={"name": "hijacked"}),
    api("DELETE", "end B's token as A's",     B_TOKEN_AS_A,            E404,  E404,  E403,  E403,  E404,  E401,  E404),
    api("POST",   "regenerate B's token",     B_TOKEN + "/rotate",     B201,  E404,  E403,  E403,  E404,  E401,  B201,
        body={}),
    api("POST",   "regenerate B's as A's",    B_TOKEN_AS_A + "/rotate", E404, E404,  E403,  E403,  E404,  E401,  E404,
        body={}),
    api("POST",   "regenerate itself",        "/api/v1/tokens/self/rotate", A201, A201, A201, E401, E401,  E401,  B201,
        body={}),
    api("POST",   "embed: B's user, email",   EMBED,                   E401,  E401,  E401,  E404,  E403,  E401,  E401,
        body={"email": "{b_email}", "appSlug": "globex-crm", "sessionExpiry": 5, "patExpiry": 600}),
    api("POST",   "embed: B's user, id",      EMBED,                   E401,  E401,  E401,  E404,  E403,  E401,  E401,
        body={"userId": "{b_user}", "appSlug": "acme-crm", "sessionExpiry": 5, "patExpiry": 600}),
    api("POST",   "embed: A's user, B's app", EMBED,                   E401,  E401,  E401,  E403,  E403,  E401,  E401,
        body={"email": "{a_email}", "appId": "{b_app}", "sessionExpiry": 5, "patExpiry": 600}),
    api("POST",   "embed: A's user, A's app", EMBED,                   E401,  E401,  E401,  A201,  E403,  E401,  E401,
        body={"email": "{a_email}", "appSlug": "acme-crm", "sessionExpiry": 5, "patExpiry": 600}),
    api("GET",    "open B's app with A's",    EMBED_OPEN,              NAMED, NAMED, NAMED, NAMED, NAMED, NAMED, NAMED),
    api("POST",   "report B's prefix leaked", LEAKS,                   P202,  P202,  P202,  P202,  P202,  P202,  P202,
        body={"token": "{b_token_prefix}"}),
    # The gateway, asked about B's application: no token of A (nor an administrative one) opens it.
    api("GET",    "gateway: B's application", "/auth/forward",         E403,  E403,  E403,  E401,  E401,  E401,  E403,
        headers={"X-IAM-Application": "globex-crm", "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/"}),
    api("GET",    "signing keys",             JWKS,                    HIDES, HIDES, HIDES, HIDES, HIDES, HIDES, HIDES),
    api("GET",    "server metadata",          METADATA,                HIDES, HIDES, HIDES, HIDES, HIDES, HIDES, HIDES),

    # ---------------------------------------------------------- OAuth: a client acts for its application
    #                                                                  client-A anon  client-B
    oauth("exchange B's PAT",                 "/oauth/token",          E400,  E401,  B200, body=EXCHANGE_B),
    oauth("introspect B's PAT",               "/oauth/introspect",     HIDES, E401,  SEES, body={"token": "{b_pat}"}),
    oauth("introspect B's access token",      "/oauth/introspect",     HIDES, E401,  SEES, body={"token": "{b_jwt}"}),
    oauth("revoke B's access token",          "/oauth/revoke",         OK,    E401,  B200, body={"token": "{b_jwt}"}),
]
# fmt: on

CASES = [
    pytest.param(row, actor, expected, id=f"{row.family}: {row.method} {row.what} as {actor}")
    for row in ROWS
    for actor, expected in zip(FAMILIES[row.family], row.expect, strict=True)
]


# ---------------------------------------------------------------- the two tenants


@dataclass
class Scene:
    ids: dict[str, object]
    users: dict[str, User]
    headers: dict[str, str]
    tenants: dict[str, int]
    jtis: dict[str, list[str]]
    markers: list[str]  # what only tenant B's objects show
    sessions: dict[str, str]  # a signed-in session of each user, made once for the module
    _clients: dict[str, Client] = field(default_factory=dict)

    def client(self, actor: str) -> Client:
        if actor not in self._clients:
            client = Client()
            if actor in self.sessions:
                client.cookies[settings.SESSION_COOKIE_NAME] = self.sessions[actor]
            self._clients[actor] = client
        return self._clients[actor]


def admin_pat(user: User, role: str) -> str:
    return administrative_pat(user, role).plaintext


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def administrator(world: World, username: str, *roles: str) -> User:
    user = UserFactory(username=username, tenant=world.tenant)
    grant(user, *(service_role(role) for role in roles))
    return user


def signed_in_session(user: User) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def build_scene() -> Scene:
    a, b = make_world("acme"), make_world("globex")
    main_admin = administrator(a, "main-admin", ServiceRole.MAIN_ADMINISTRATOR, ServiceRole.DEVELOPER)
    user_admin = administrator(a, "acme-user-admin", ServiceRole.USER_ADMINISTRATOR)
    other_user_admin = administrator(b, "globex-user-admin", ServiceRole.USER_ADMINISTRATOR)
    app_admin = administrator(a, "app-admin", ServiceRole.APPLICATION_ADMINISTRATOR)
    b.user.last_name = "Zebulon"  # what the console searches find B's user by
    b.user.save(update_fields=["last_name"])
    a_token = a.issue("Acme nightly import")
    b_token = b.issue("Globex payroll sync")
    auditor = Role.objects.create(
        application=b.application,
        code="auditor",
        name="Auditor",
        permissions=["ledger.read"],
        pat_eligible=True,
        needs_token_approval=True,
    )
    grant(b.user, auditor)
    b_pending = b.issue("Globex ledger export", roles=("auditor",))
    tenant_set_api_issuance(tenant=b.tenant, allowed=True, actor=None)  # so API refusals are about the tenant
    b_credential = integration_credential_create(tenant=b.tenant, name="Globex portal", actor=None)
    embed = integration_credential_create(tenant=a.tenant, name="Acme portal", actor=None)
    manage = integration_credential_create(
        tenant=a.tenant, name="Acme HR sync", actor=None, scopes=[IntegrationCredential.Scope.TOKENS_MANAGE]
    )
    client_a = oauth_client_create(application=a.application, name="Acme backend", actor=None, token_exchange=True)
    client_b = oauth_client_create(application=b.application, name="Globex backend", actor=None, token_exchange=True)
    b_jwt = token_exchange(client=client_b.client, subject_token=b_token.plaintext, subject_token_type=PAT_TOKEN_TYPE)[
        "access_token"
    ]
    a_embed = embed_token_issue(
        credential=embed.credential, user=a.user, application=a.application, session_minutes=5, pat_seconds=600
    )
    b_event = AuditEvent.objects.get(token=b_token.token, action=AuditAction.TOKEN_CREATED)
    b_webhook = webhook_endpoint_create(
        tenant=b.tenant, url="http://127.0.0.1:9/globex-hooks", events=["token.created"], actor=None
    ).endpoint
    b_delivery = webhook_test_send(endpoint=b_webhook, actor=other_user_admin)
    ids = {
        "a_user": a.user.pk,
        "a_email": a.user.email,
        "a_token": a_token.token.pk,
        "a_embed": a_embed.plaintext,
        "b_user": b.user.pk,
        "b_email": b.user.email,
        "b_tenant": b.tenant.pk,
        "b_app": b.application.pk,
        "b_link": TenantApplication.objects.get(tenant=b.tenant, application=b.application).pk,
        "b_role": b.reader.pk,
        "b_token": b_token.token.pk,
        "b_pending": b_pending.token.pk,
        "b_token_name": quote(b_token.token.name),
        "b_token_prefix": b_token.token.display_prefix,
        "b_token_expires_on": timezone.localtime(b_token.token.expires_at).date().isoformat(),
        "b_pat": b_token.plaintext,
        "b_jwt": b_jwt,
        "b_event": b_event.pk,
        "b_credential": b_credential.credential.pk,
        "b_oauth": client_b.client.pk,
        "b_webhook": b_webhook.pk,
        "b_delivery": b_delivery.pk,
        "ct_token": ContentType.objects.get_for_model(PersonalAccessToken).pk,
        "in_a_week": (timezone.now() + timedelta(days=7)).isoformat(),
    }
    users = {
        "main": main_admin,
        "user_admin_a": user_admin,
        "app_admin": app_admin,
        "end_user_a": a.user,
        "user_admin_b": other_user_admin,
        "end_user_b": b.user,
    }
    return Scene(
        ids=ids,
        users=users,
        sessions={actor: signed_in_session(user) for actor, user in users.items()},
        headers={
            "main_pat": f"Bearer {admin_pat(main_admin, ServiceRole.MAIN_ADMINISTRATOR)}",
            "user_admin_a_pat": f"Bearer {admin_pat(user_admin, ServiceRole.USER_ADMINISTRATOR)}",
            "user_admin_b_pat": f"Bearer {admin_pat(other_user_admin, ServiceRole.USER_ADMINISTRATOR)}",
            "end_user_a_pat": f"Bearer {a_token.plaintext}",
            "credential_a_embed": f"Basic {embed.plaintext}",
            "credential_a_manage": f"Basic {manage.plaintext}",
            "client_a": basic(client_a.client.client_id, client_a.secret),
            "client_b": basic(client_b.client.client_id, client_b.secret),
        },
        tenants={"a": a.tenant.pk, "b": b.tenant.pk},
        jtis={"a": [], "b": [access_token_claims(b_jwt)["jti"]]},
        markers=[
            "globex",
            b_token.token.display_prefix,
            b_credential.credential.display_prefix,
            client_b.client.client_id,
        ],
    )


@pytest.fixture(scope="module")
def built_scene(django_db_setup, django_db_blocker):
    """The two tenants, made once for the module in a transaction rolled back at
    its end. Each test runs in a savepoint inside it (pytest-django's ``db``), so
    what one test changes is gone before the next."""
    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
        try:
            yield build_scene()
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


@pytest.fixture
def scene(built_scene, db) -> Scene:
    return replace(built_scene, _clients={})


# ---------------------------------------------------------------- what a request may change


def world_state(scene: Scene) -> dict:
    """Everything an administrator's or integration's request could change, by
    tenant ("a", "b") and in total; not last-use times, which any authenticated
    request updates for its own credential. One query a table."""
    tenant_of = {pk: name for name, pk in scene.tenants.items()}
    state: dict = {name: defaultdict(list) for name in scene.tenants}

    def collect(table: str, rows) -> None:
        for tenant_id, *values in rows:
            if tenant_id in tenant_of:
                state[tenant_of[tenant_id]][table].append(tuple(values))

    tenants = list(scene.tenants.values())
    collect("tenant", Tenant.objects.filter(pk__in=tenants).values_list("pk", *TENANT_FIELDS))
    collect(
        "users",
        User.objects.order_by("pk").values_list(
            "tenant", "pk", "username", "email", "password", "is_active", "can_create_pats", "last_name"
        ),
    )
    collect("grants", RoleGrant.objects.order_by("pk").values_list("user__tenant", "user", "role"))
    collect(
        "tokens",
        PersonalAccessToken.objects.order_by("pk").values_list(
            "tenant", "pk", "name", "status", "approval", "expires_at", "revoked_at", "deleted_at"
        ),
    )
    collect(
        "token roles",
        PersonalAccessToken.roles.through.objects.order_by("pk").values_list(
            "personalaccesstoken__tenant", "personalaccesstoken", "role"
        ),
    )
    collect(
        "credentials",
        IntegrationCredential.objects.order_by("pk").values_list("tenant", "pk", "name", "scopes", "revoked_at"),
    )
    collect("switches", TenantApplication.objects.order_by("pk").values_list("tenant", "pk", "allows_pats"))
    collect(
        "applications",
        Application.objects.order_by("pk").values_list("tenant_links__tenant", "pk", "name", "slug", "description"),
    )
    collect(
        "roles",
        Role.objects.order_by("pk").values_list(
            "application__tenant_links__tenant", "pk", "name", "permissions", "pat_eligible"
        ),
    )
    collect(
        "OAuth clients",
        OAuthClient.objects.order_by("pk").values_list("application__tenant_links__tenant", "pk", "revoked_at"),
    )
    collect(
        "webhooks", WebhookEndpoint.objects.order_by("pk").values_list("tenant", "pk", "url", "events", "is_active")
    )
    collect("webhook deliveries", WebhookDelivery.objects.order_by("pk").values_list("endpoint__tenant", "pk"))
    collect("embed sessions", EmbedSession.objects.order_by("pk").values_list("token__tenant", "pk"))
    collect("audit", AuditEvent.objects.order_by("pk").values_list("tenant", "pk"))
    revoked = set(RevokedAccessToken.objects.values_list("jti", flat=True))
    for name, jtis in scene.jtis.items():
        state[name]["revoked access tokens"] = sorted(revoked & set(jtis))
    return {
        **{name: dict(tables) for name, tables in state.items()},
        "audit": AuditEvent.objects.count(),
        "console log": LogEntry.objects.count(),
        "revoked access tokens": len(revoked),
        "tokens": PersonalAccessToken.objects.count(),
        "users": User.objects.count(),
        "credentials": IntegrationCredential.objects.count(),
    }


TENANT_FIELDS = [field.name for field in Tenant._meta.concrete_fields if field.name != "id"]


# ---------------------------------------------------------------- asking


def fill(template, ids: dict):
    if isinstance(template, str):
        return template.format(**ids)
    if isinstance(template, list):
        return [fill(item, ids) for item in template]
    if isinstance(template, dict):
        return {key: fill(value, ids) for key, value in template.items()}
    return template


def prepare(scene: Scene, row: Row, actor: str) -> tuple[Callable[[], HttpResponse], list[str]]:
    """The row's request as ``actor``, ready to send, and what the request itself carries."""
    client = scene.client(actor)
    url = fill(row.url, scene.ids)
    body = row.body(scene, client) if callable(row.body) else fill(row.body, scene.ids)
    if row.family == "api" and isinstance(body, dict) and "userId" in body:
        body["userId"] = int(body["userId"])
    headers = {"Authorization": scene.headers[actor]} if actor in scene.headers else {}
    headers.update(fill(row.headers or {}, scene.ids))
    if row.family == "api":
        content = json.dumps(body) if body is not None else ""
        request = partial(client.generic, row.method, url, content, content_type="application/json", headers=headers)
    elif row.family == "oauth":
        content = urlencode(body)
        request = partial(
            client.generic, "POST", url, content, content_type="application/x-www-form-urlencoded", headers=headers
        )
    elif row.method == "GET":
        request = partial(client.get, url)
    else:
        request = partial(client.post, url, body or {})
    return request, [value for _, value in parse_qsl(urlsplit(url).query)]


def text_of(response: HttpResponse) -> str:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return content.decode(errors="replace")


def rows_written() -> int | None:
    """SQLite's count of rows written on this connection (it only grows), or None elsewhere."""
    if connection.vendor != "sqlite":
        return None
    connection.ensure_connection()
    return connection.connection.total_changes


def send_and_compare(scene: Scene, send: Callable[[], HttpResponse]) -> tuple[HttpResponse, str, dict, dict]:
    """Send; return the answer, its text and the world's state before and after.
    The states are only computed if the request wrote anything: after it, then
    before it, by rolling back to a savepoint taken just before the request."""
    savepoint = transaction.savepoint()
    written = rows_written()
    response = send()
    text = text_of(response)  # read now: a streamed answer reads the database as it goes
    if written is not None and rows_written() == written:
        transaction.savepoint_commit(savepoint)
        return response, text, {}, {}
    after = world_state(scene)
    transaction.savepoint_rollback(savepoint)
    return response, text, world_state(scene), after


@pytest.mark.parametrize(("row", "actor", "expected"), CASES)
def test_tenant_isolation(scene, row, actor, expected):
    request, sent = prepare(scene, row, actor)
    response, text, before, after = send_and_compare(scene, request)

    assert response.status_code == expected.status, text[:2000]
    if expected.location:
        assert expected.location in response["Location"]
    # The answer may repeat what the request carried (B's prefix as a search term); nothing more of B.
    for value in sent:
        if any(marker.lower() in value.lower() for marker in scene.markers):
            text = text.replace(value, "")
    shown = [marker for marker in scene.markers if marker.lower() in text.lower()]
    if expected.sees_b:
        assert shown, "tenant B's objects should be in the answer: the row does not reach them"
    elif expected.sees_b is False or expected.status >= 300:
        assert not shown, f"the answer shows tenant B: {shown}"

    changed = {name for name in ("a", "b") if before.get(name) != after.get(name)}
    assert changed == set(expected.writes), f"changed: {changed or 'nothing'}"
    if not expected.writes:
        assert before == after, "a refused or read-only request wrote something"


# ---------------------------------------------------------------- counts


def changelist_count(response) -> int:
    return response.context["cl"].result_count


def dashboard_count(response) -> int:
    return sum(value for _, value in response.context["figures"].by_status)


def api_count(response) -> int:
    return response.json()["count"]


def scoped(queryset, tenants: list[int] | None):
    return queryset if tenants is None else queryset.filter(tenant_id__in=tenants)


# (page, how the page counts, what it counts); an administrator's counts cover
# exactly the tenant they administer (every one, for a main administrator).
COUNTED = [
    (T, changelist_count, lambda tenants: scoped(PersonalAccessToken.objects.all(), tenants)),
    (U, changelist_count, lambda tenants: scoped(User.objects.all(), tenants)),
    (EV, changelist_count, lambda tenants: scoped(AuditEvent.objects.all(), tenants)),
    (CR, changelist_count, lambda tenants: scoped(IntegrationCredential.objects.all(), tenants)),
    ("/admin/dashboard/", dashboard_count, lambda tenants: scoped(PersonalAccessToken.objects.all(), tenants)),
]
ADMINISTERS = {"main": None, "user_admin_a": "a", "user_admin_b": "b"}


@pytest.mark.parametrize("actor", ADMINISTERS)
@pytest.mark.parametrize(("url", "count", "expected"), COUNTED, ids=[url for url, _, _ in COUNTED])
def test_console_counts_cover_only_the_administered_tenant(scene, actor, url, count, expected):
    administered = ADMINISTERS[actor]
    response = scene.client(actor).get(url)
    assert response.status_code == 200
    assert count(response) == expected(None if administered is None else [scene.tenants[administered]]).count() > 0


@pytest.mark.parametrize(("actor", "administered"), [("main_pat", None), ("user_admin_a_pat", "a")])
def test_audit_api_counts_cover_only_the_administered_tenant(scene, actor, administered):
    response = Client().get("/api/v1/admin/audit-events", headers={"Authorization": scene.headers[actor]})
    tenants = None if administered is None else [scene.tenants[administered]]
    assert api_count(response) == scoped(AuditEvent.objects.all(), tenants).count() > 0


def test_application_administrators_hold_no_administrative_token(scene):
    from core.errors import DomainError

    with pytest.raises(DomainError):
        admin_pat(scene.users["app_admin"], ServiceRole.APPLICATION_ADMINISTRATOR)


# ---------------------------------------------------------------- every endpoint has rows


def url_names(patterns, namespace: str = ""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}:{pattern.namespace}".strip(":") if pattern.namespace else namespace
            yield from url_names(pattern.url_patterns, inner)
        elif isinstance(pattern, URLPattern) and pattern.name:
            yield f"{namespace}:{pattern.name}".strip(":")


def covered(scene: Scene, families: set[str]) -> set[tuple[str, str]]:
    """(method, URL name) of every row of ``families``."""
    routes = set()
    for row in ROWS:
        if row.family in families:
            match = resolve(urlsplit(fill(row.url, scene.ids)).path)
            routes.add((row.method, match.view_name))
    return routes


# Not tenant data: what each of these answers is the same whoever asks.
NOT_TENANT_SCOPED = {
    "login": "the sign-in page",
    "logout": "signs the caller out",
    "embed-frame": "a static frame page; the session secret is in the URL fragment, never sent",
    "demo-app": "the demo application's static page",
    "demo-app-whoami": "the demo application's backend: the embed session secret alone is the credential "
    "(tests/tokens/api/test_embedding.py)",
    "api-schema": "the public OpenAPI description",
    "api-docs": "the public API documentation",
    "admin:login": "the sign-in page",
    "admin:logout": "signs the caller out",
    "admin:password_change": "changes the caller's own password",
    "admin:password_change_done": "a static page",
    "admin:jsi18n": "the console's translations",
}


def test_every_api_operation_in_the_schema_has_rows(scene):
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = set()
    for path, methods in schema["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "1", path)  # any value resolves to the view
        for method in methods:
            if method in {"get", "post", "put", "patch", "delete"}:
                operations.add((method.upper(), resolve(concrete).view_name))
    missing = operations - covered(scene, {"api", "oauth"})
    assert not missing, f"API operations without an isolation row: {sorted(missing)}"


def test_every_page_and_console_url_has_rows(scene):
    names = set(url_names(get_resolver().url_patterns))
    rows = {name for _, name in covered(scene, set(FAMILIES))}
    missing = names - rows - set(NOT_TENANT_SCOPED)
    assert not missing, f"URLs without an isolation row (or a reason in NOT_TENANT_SCOPED): {sorted(missing)}"


def test_every_console_action_has_rows(scene):
    request = RequestFactory().get("/admin/")
    request.user = scene.users["main"]
    available = {
        name for model_admin in admin.site._registry.values() for name in model_admin.get_actions(request) or {}
    }
    declared = {
        name
        for model_admin in admin.site._registry.values()
        for name in (model_admin.actions or [])
        if isinstance(name, str)
    }
    rows = {row.body["action"] for row in ROWS if isinstance(row.body, dict) and "action" in row.body}
    missing = (available | declared) - rows
    assert not missing, f"console actions without an isolation row: {sorted(missing)}"
