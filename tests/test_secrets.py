"""The plaintext of a token exists only in the creation response: never in the
database, never in a log line."""

import logging

import pytest
from django.apps import apps
from django.contrib.auth.hashers import identify_hasher
from django.db import connection

from tests.conftest import bearer
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def all_database_text() -> str:
    chunks = []
    for model in apps.get_models():
        for row in model.objects.all().values_list():
            chunks.append(repr(row))
    return "\n".join(chunks)


def test_plaintext_is_nowhere_in_the_database_or_the_logs(api, world, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    connection.force_debug_cursor = True  # log every SQL statement with its parameters
    try:
        issued = world.issue("secret check", ip="10.0.0.9")
        assert bearer(api, issued.plaintext).get("/api/v1/me").status_code == 200
        api.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {issued.plaintext[:-1]}x")
    finally:
        connection.force_debug_cursor = False
    logged = "\n".join(record.getMessage() + repr(getattr(record, "params", "")) for record in caplog.records)
    assert "SELECT" in logged  # the SQL log was really captured
    secret_part = issued.plaintext[10:]  # everything after the display prefix
    assert secret_part not in logged
    assert secret_part not in all_database_text()
    assert issued.token.display_prefix in all_database_text()


def test_passwords_are_hashed_with_argon2(world):
    import iam.settings

    assert iam.settings.PASSWORD_HASHERS[0] == "django.contrib.auth.hashers.Argon2PasswordHasher"
    assert identify_hasher(world.user.password).algorithm == "argon2"
    assert world.user.check_password(PASSWORD)
    assert PASSWORD not in all_database_text()


def test_integration_secrets_are_nowhere_in_the_database_or_the_logs(api, world, caplog):
    from tokens.credentials import integration_credential_create
    from tokens.oauth import oauth_client_create

    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    connection.force_debug_cursor = True
    try:
        credential = integration_credential_create(tenant=world.tenant, name="portal", actor=None)
        client = oauth_client_create(application=world.application, name="c", actor=None, token_exchange=True)
        embed = api.post(
            "/api/ext/users/personal-access-token",
            {"email": world.user.email, "appId": str(world.application.pk), "sessionExpiry": 5, "patExpiry": 600},
            format="json",
            HTTP_AUTHORIZATION=f"Basic {credential.plaintext}",
        ).json()["personalAccessToken"]
        location = api.get(f"/embed-apps/{world.application.pk}", {"personal-access-token": embed})["Location"]
        session_secret = location.split("#session=")[1]
        assert api.get("/demo-app/api/whoami", HTTP_AUTHORIZATION=f"Bearer {session_secret}").status_code == 200
    finally:
        connection.force_debug_cursor = False
    logged = "\n".join(record.getMessage() + repr(getattr(record, "params", "")) for record in caplog.records)
    stored = all_database_text()
    for secret in (credential.plaintext, client.secret, embed, session_secret):
        assert secret[10:] not in logged, secret[:4]
        assert secret[10:] not in stored, secret[:4]


# ---------------------------------------------------------------- after the answer that created it


def test_no_answer_after_the_creating_one_holds_a_secret(world, main_admin, user_admin, credential):
    """Every secret (PAT, embedding token, embed session, integration credential,
    OAuth client secret, access token) is in the answer that created it and in
    no later answer: API lists and details, introspection, console lists, detail
    pages, confirmations, CSV export, dashboard, self-service pages."""
    import base64
    from datetime import timedelta

    from django.test import Client
    from django.utils import timezone

    from iam.models import AuditEvent, ServiceRole
    from iam.tenancy import tenant_set_api_issuance
    from tokens.models import PersonalAccessToken
    from tokens.oauth import GRANT_TOKEN_EXCHANGE, PAT_TOKEN_TYPE, oauth_client_create
    from tokens.services import token_create

    def pat_of(user, role) -> str:
        expires_at = timezone.now() + timedelta(days=7)
        return token_create(owner=user, application=None, name=role, role_codes=[role], expires_at=expires_at).plaintext

    main_pat, user_admin_pat = (
        pat_of(main_admin, ServiceRole.MAIN_ADMINISTRATOR),
        pat_of(user_admin, "user_administrator"),
    )
    console, owner, api = Client(), Client(), Client()
    console.force_login(main_admin)
    owner.force_login(world.user)

    # Created through every path, each answer read once.
    service_pat = world.issue("by the service").plaintext
    owner.get("/tokens/new/")
    form_id = owner.session["token_create_form_ids"][-1]
    page_pat = owner.post(
        "/tokens/new/",
        {
            "form_id": form_id,
            "application": world.application.pk,
            "name": "by the page",
            "expiry_preset": "30",
            "roles": [world.reader.pk],
        },
    ).context["plaintext"]
    tenant_set_api_issuance(tenant=world.tenant, allowed=True, actor=None)
    api_pat = api.post(
        f"/api/v1/users/{world.user.pk}/personal-access-tokens",
        {
            "name": "by the API",
            "expiresAt": (timezone.now() + timedelta(days=3)).isoformat(),
            "applicationSlug": world.application.slug,
            "roles": ["reader"],
        },
        content_type="application/json",
        headers={"Authorization": f"Bearer {user_admin_pat}"},
    ).json()["token"]
    embed = api.post(
        "/api/ext/users/personal-access-token",
        {"email": world.user.email, "appId": str(world.application.pk), "sessionExpiry": 5, "patExpiry": 600},
        content_type="application/json",
        headers={"Authorization": f"Basic {credential.plaintext}"},
    ).json()["personalAccessToken"]
    session = api.get(f"/embed-apps/{world.application.pk}", {"personal-access-token": embed})["Location"]
    session = session.split("#session=")[1]
    client = oauth_client_create(application=world.application, name="backend", actor=None, token_exchange=True)
    basic = "Basic " + base64.b64encode(f"{client.client.client_id}:{client.secret}".encode()).decode()
    oauth = {"content_type": "application/x-www-form-urlencoded", "headers": {"Authorization": basic}}
    access_token = api.post(
        "/oauth/token",
        f"grant_type={GRANT_TOKEN_EXCHANGE}&subject_token={service_pat}&subject_token_type={PAT_TOKEN_TYPE}",
        **oauth,
    ).json()["access_token"]
    secrets = [
        main_pat,
        user_admin_pat,
        service_pat,
        page_pat,
        api_pat,
        embed,
        session,
        credential.plaintext,
        client.secret,
        access_token,
    ]

    # Everything that shows tokens, credentials and clients afterwards.
    answers = []
    for value in (main_pat, service_pat, page_pat, api_pat, access_token):
        answers.append(api.get("/api/v1/me", headers={"Authorization": f"Bearer {value}"}))
    as_admin = {"headers": {"Authorization": f"Bearer {main_pat}"}}
    answers += [
        api.get(f"/api/v1/users/{world.user.pk}/personal-access-tokens", **as_admin),
        api.patch(
            f"/api/v1/users/{world.user.pk}/personal-access-tokens/by the API",
            {"name": "renamed"},
            content_type="application/json",
            **as_admin,
        ),
        api.get("/api/v1/admin/audit-events", **as_admin),
        api.get("/demo-app/api/whoami", headers={"Authorization": f"Bearer {session}"}),
    ]
    for value in (service_pat, page_pat, embed, session, access_token):
        answers.append(api.post("/oauth/introspect", f"token={value}", **oauth))
    pages = [
        "/admin/tokens/personalaccesstoken/",
        "/admin/tokens/integrationcredential/",
        "/admin/tokens/oauthclient/",
        "/admin/iam/auditevent/",
        "/admin/iam/auditevent/export.csv",
        "/admin/dashboard/",
        f"/admin/iam/user/{world.user.pk}/change/",
        f"/admin/tokens/integrationcredential/{credential.credential.pk}/change/",
        f"/admin/tokens/oauthclient/{client.client.pk}/change/",
    ]
    for token in PersonalAccessToken.objects.all():
        pages += [
            f"/admin/tokens/personalaccesstoken/{token.pk}/change/",
            f"/admin/tokens/personalaccesstoken/{token.pk}/revoke/",
        ]
    pages += [f"/admin/iam/auditevent/{pk}/change/" for pk in AuditEvent.objects.values_list("pk", flat=True)]
    answers += [console.get(page) for page in pages]
    answers.append(owner.get("/tokens/"))
    for token in PersonalAccessToken.objects.filter(owner=world.user):
        answers += [owner.get(f"/tokens/{token.pk}/edit/"), owner.get(f"/tokens/{token.pk}/delete/")]

    assert all(answer.status_code in (200, 303, 409) for answer in answers), [a.status_code for a in answers]
    for answer in answers:
        text = (b"".join(answer.streaming_content) if answer.streaming else answer.content).decode()
        for secret in secrets:
            assert secret[10:] not in text, (answer.request["PATH_INFO"], secret[:4])


@pytest.mark.parametrize(
    ("page", "form"),
    [
        (
            "/admin/tokens/integrationcredential/add/",
            lambda world: {"tenant": world.tenant.pk, "name": "portal", "scopes": ["embed"]},
        ),
        (
            "/admin/tokens/oauthclient/add/",
            lambda world: {"application": world.application.pk, "name": "backend", "access_token_lifetime": 3600},
        ),
    ],
    ids=["integration credential", "OAuth client"],
)
def test_the_one_time_secret_page_logs_no_secret(world, main_admin, no_secret_in_logs, page, form):
    """Django logs each failed variable lookup at DEBUG with the whole template
    context, so a secret in the context reaches the log unless its repr hides it."""
    from django.test import Client

    console = Client()
    console.force_login(main_admin)
    response = console.post(page, form(world))
    assert response.status_code == 200 and response.context["secret"]
    leaks = [f"{leak.line.level} {leak.line.logger}: {leak.why}" for leak in no_secret_in_logs.leaks()]
    no_secret_in_logs.forget()  # reported here, not again at teardown
    assert not leaks
