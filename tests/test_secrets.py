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
    from tokens.integrations import integration_credential_create
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
