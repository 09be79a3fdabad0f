"""The embedding API (seeds 000/002), embed sessions and the demo application."""

import base64
import re
import threading

import pytest
from django.db import connection
from rest_framework.test import APIClient

from iam.models import AuditAction, AuditEvent
from tests.conftest import bearer
from tests.factories import UserFactory
from tokens.credentials import integration_credential_revoke
from tokens.models import EmbedSession, PersonalAccessToken, TokenKind, TokenStatus
from tokens.services import token_delete, token_revoke

pytestmark = pytest.mark.django_db

URL = "/api/ext/users/personal-access-token"


def issue(api: APIClient, credential: str | None, body, **extra):
    headers = {"HTTP_AUTHORIZATION": f"Basic {credential}"} if credential else {}
    return api.post(URL, body, format="json", **headers, **extra)


def payload(world, **overrides):
    body = {"email": world.user.email, "appId": str(world.application.pk), "sessionExpiry": 60, "patExpiry": 3600}
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not None}


def test_issues_an_embedding_token_with_a_redirect_url(api, world, credential, settings):
    response = issue(api, credential.plaintext, payload(world))
    assert response.status_code == 201
    body = response.json()
    token = body["personalAccessToken"]
    assert re.fullmatch(r"pat_[0-9A-Za-z]{36}", token)
    assert (
        body["redirectUrl"] == f"{settings.PUBLIC_URL}/embed-apps/{world.application.pk}?personal-access-token={token}"
    )
    stored = PersonalAccessToken.objects.get(kind=TokenKind.EMBED)
    assert stored.owner == world.user and stored.embed_session_minutes == 60
    assert sorted(stored.roles.values_list("code", flat=True)) == ["reader", "writer"]
    assert 3590 <= (stored.expires_at - stored.created_at).total_seconds() <= 3600
    event = AuditEvent.objects.get(token=stored, action=AuditAction.TOKEN_CREATED)
    assert "portal" in event.actor_label and event.actor is None


def test_slug_and_user_id_instead_of_uuid_and_email(api, world, credential):
    body = {"userId": world.user.pk, "appSlug": world.application.slug, "sessionExpiry": 5, "patExpiry": 60}
    assert issue(api, credential.plaintext, body).status_code == 201


def test_standard_basic_encoding_of_the_credential_is_accepted(api, world, credential):
    encoded = base64.b64encode(f"portal:{credential.plaintext}".encode()).decode()
    assert issue(api, encoded, payload(world)).status_code == 201


def test_one_active_embedding_token_per_user_and_application(api, world, credential):
    first = issue(api, credential.plaintext, payload(world)).json()["personalAccessToken"]
    second = issue(api, credential.plaintext, payload(world)).json()["personalAccessToken"]
    assert first != second
    active = PersonalAccessToken.objects.filter(kind=TokenKind.EMBED, status=TokenStatus.ACTIVE)
    assert active.count() == 1
    assert PersonalAccessToken.objects.filter(kind=TokenKind.EMBED, status=TokenStatus.REVOKED).count() == 1
    # The replaced token no longer opens anything.
    app = world.application.pk
    assert api.get(f"/embed-apps/{app}", {"personal-access-token": first}).status_code == 401
    assert api.get(f"/embed-apps/{app}", {"personal-access-token": second}).status_code == 303


def test_user_not_in_the_credentials_tenant_is_404(api, world, other_world, credential):
    response = issue(api, credential.plaintext, payload(world, email=other_world.user.email))
    assert response.status_code == 404 and response.json()["error"]["code"] == "user_not_found"
    assert issue(api, credential.plaintext, payload(world, email="nobody@example.test")).status_code == 404


@pytest.mark.parametrize("cause", ["no_role", "switch_off", "no_right", "unknown_app", "foreign_app"])
def test_user_without_access_to_the_application_is_403(api, world, other_world, credential, cause):
    body = payload(world)
    if cause == "no_role":
        body["email"] = UserFactory(tenant=world.tenant).email
    elif cause == "switch_off":
        world.tenant.application_links.update(allows_pats=False)
    elif cause == "no_right":
        world.user.can_create_pats = False
        world.user.save()
    elif cause == "unknown_app":
        body["appId"] = "00000000-0000-4000-8000-000000000000"
    else:
        body["appId"] = str(other_world.application.pk)
    response = issue(api, credential.plaintext, body)
    assert response.status_code == 403 and response.json()["error"]["code"] == "no_application_access"
    assert not PersonalAccessToken.objects.exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"email": None, "userId": None}, "email"),
        ({"userId": 5}, "email"),
        ({"appId": None}, "appId"),
        ({"appSlug": "crm"}, "appId"),
        ({"appId": "not-a-uuid"}, "appId"),
        ({"appId": 12345}, "appId"),
        ({"sessionExpiry": 0}, "sessionExpiry"),
        ({"sessionExpiry": -5}, "sessionExpiry"),
        ({"sessionExpiry": "60"}, "sessionExpiry"),
        ({"sessionExpiry": 60.5}, "sessionExpiry"),
        ({"sessionExpiry": True}, "sessionExpiry"),
        ({"sessionExpiry": 100000}, "sessionExpiry"),
        ({"patExpiry": 0}, "patExpiry"),
        ({"patExpiry": 10**12}, "patExpiry"),
        ({"patExpiry": None}, "patExpiry"),
        ({"email": 42}, "email"),
        ({"email": "not-an-email"}, "email"),
        ({"extra": "field"}, "extra"),
    ],
)
def test_invalid_payloads_are_400_with_per_field_messages(api, world, credential, change, field):
    response = issue(api, credential.plaintext, payload(world, **change))
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert not PersonalAccessToken.objects.exists()


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", '"a string"', "", "{"])
def test_non_json_or_non_object_bodies_are_400(api, world, credential, raw):
    response = api.generic(
        "POST", URL, raw, content_type="application/json", HTTP_AUTHORIZATION=f"Basic {credential.plaintext}"
    )
    assert response.status_code == 400 and "error" in response.json()


def test_patexpiry_beyond_the_tenants_maximum_is_400(api, world, credential):
    world.tenant.pat_max_lifetime_days = 1
    world.tenant.save()
    response = issue(api, credential.plaintext, payload(world, patExpiry=86401))
    assert response.status_code == 400 and "patExpiry" in response.json()["error"]["fields"]


@pytest.mark.parametrize("header", [None, "Basic", "Basic itc_wrong", "Bearer x", "Basic " + "A" * 40])
def test_missing_or_wrong_credentials_are_401(api, world, credential, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = api.post(URL, payload(world), format="json", **extra)
    assert response.status_code == 401


def test_revoked_credentials_are_401(api, world, credential):
    integration_credential_revoke(credential=credential.credential, actor=None)
    assert issue(api, credential.plaintext, payload(world)).status_code == 401


def test_more_than_ten_creations_a_minute_get_429_with_retry_after(api, world, credential):
    codes = [issue(api, credential.plaintext, payload(world)).status_code for _ in range(11)]
    assert codes == [201] * 10 + [429]
    response = issue(api, credential.plaintext, payload(world))
    assert response.status_code == 429 and 1 <= int(response["Retry-After"]) <= 60


def test_embedding_tokens_are_not_api_bearer_tokens(api, world, credential):
    token = issue(api, credential.plaintext, payload(world)).json()["personalAccessToken"]
    assert bearer(APIClient(), token).get("/api/v1/me").status_code == 401


def test_opening_the_embed_url_makes_an_isolated_session(client, world, credential, api):
    world.application.embed_url = "http://localhost:8000/demo-app/"
    world.application.embed_parent_origins = "https://portal.example https://other.example"
    world.application.save()
    token = issue(api, credential.plaintext, payload(world, sessionExpiry=15)).json()["personalAccessToken"]
    response = client.get(f"/embed-apps/{world.application.pk}", {"personal-access-token": token})
    assert response.status_code == 303
    location = response["Location"]
    assert location.startswith(f"/embed-apps/{world.application.pk}/frame#session=emb_")
    assert token not in location
    assert not response.cookies and "sessionid" not in client.cookies
    assert response["Referrer-Policy"] == "no-referrer"
    assert "frame-ancestors https://portal.example https://other.example" in response["Content-Security-Policy"]
    session = EmbedSession.objects.get()
    assert 14 * 60 < (session.expires_at - session.created_at).total_seconds() <= 15 * 60

    frame = client.get(f"/embed-apps/{world.application.pk}/frame")
    assert frame.status_code == 200 and "X-Frame-Options" not in frame
    assert "frame-src http://localhost:8000" in frame["Content-Security-Policy"]

    secret = location.split("#session=")[1]
    whoami = client.get("/demo-app/api/whoami", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert whoami.status_code == 200
    assert whoami.json()["user"]["username"] == world.user.username
    assert whoami.json()["permissions"] == ["orders.read", "orders.write"]


def test_invalid_or_expired_tokens_show_an_error_page(client, world, credential, api):
    response = client.get(f"/embed-apps/{world.application.pk}", {"personal-access-token": "pat_nope"})
    assert response.status_code == 401 and b"invalid or has expired" in response.content
    assert client.get("/embed-apps/not-a-uuid", {"personal-access-token": "x"}).status_code == 401
    token = issue(api, credential.plaintext, payload(world)).json()["personalAccessToken"]
    PersonalAccessToken.objects.update(expires_at="2000-01-01T00:00Z", created_at="1999-01-01T00:00Z")
    assert client.get(f"/embed-apps/{world.application.pk}", {"personal-access-token": token}).status_code == 401


def test_token_for_another_application_does_not_open_this_one(client, world, credential, api, other_world):
    token = issue(api, credential.plaintext, payload(world)).json()["personalAccessToken"]
    assert client.get(f"/embed-apps/{other_world.application.pk}", {"personal-access-token": token}).status_code == 401


@pytest.mark.parametrize("ending", ["revoke", "delete"])
def test_revoking_or_deleting_the_token_ends_its_sessions(client, world, credential, api, user_admin, ending):
    token = issue(api, credential.plaintext, payload(world)).json()["personalAccessToken"]
    location = client.get(f"/embed-apps/{world.application.pk}", {"personal-access-token": token})["Location"]
    secret = location.split("#session=")[1]
    assert client.get("/demo-app/api/whoami", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200
    stored = PersonalAccessToken.objects.get(kind=TokenKind.EMBED)
    if ending == "revoke":
        token_revoke(token=stored, actor=user_admin)
    else:
        token_delete(token=stored, actor=world.user)
    assert client.get("/demo-app/api/whoami", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 401


def test_owner_sees_embedding_tokens_in_the_profile_list(client, world, credential, api):
    issue(api, credential.plaintext, payload(world))
    client.force_login(world.user)
    assert "Embedding · " in client.get("/tokens/").content.decode()


@pytest.mark.django_db(transaction=True)
def test_concurrent_issuance_leaves_exactly_one_active_token(world, credential):
    barrier = threading.Barrier(4)
    codes: list[int] = []

    def run():
        try:
            barrier.wait()
            codes.append(issue(APIClient(), credential.plaintext, payload(world)).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == [201] * 4
    tokens = PersonalAccessToken.objects.filter(kind=TokenKind.EMBED)
    assert tokens.count() == 4 and tokens.filter(status=TokenStatus.ACTIVE).count() == 1


def test_a_challenge_driven_basic_client_gets_a_basic_challenge_and_then_sends_its_credential(
    live_server, world, credential
):
    """Python's HTTPBasicAuthHandler sends credentials only after a ``Basic`` challenge (RFC 9110 §11.6.1)."""
    import json
    import urllib.request

    url = f"{live_server.url}{URL}"
    refused = urllib.request.Request(url, data=json.dumps(payload(world)).encode(), method="POST")
    refused.add_header("Content-Type", "application/json")
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(refused, timeout=10)
    assert error.value.code == 401 and error.value.headers["WWW-Authenticate"] == 'Basic realm="iam"'

    passwords = urllib.request.HTTPPasswordMgrWithDefaultRealm()
    passwords.add_password(None, url, "portal", credential.plaintext)
    opener = urllib.request.build_opener(urllib.request.HTTPBasicAuthHandler(passwords))
    request = urllib.request.Request(url, data=json.dumps(payload(world)).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    with opener.open(request, timeout=10) as response:
        assert response.status == 201 and json.loads(response.read())["personalAccessToken"].startswith("pat_")
    # A bad credential is challenged the same way; the bearer APIs keep their Bearer challenge.
    bad = urllib.request.Request(url, data=b"{}", method="POST", headers={"Authorization": "Basic bm9wZTo="})
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(bad, timeout=10)
    assert error.value.headers["WWW-Authenticate"] == 'Basic realm="iam"'
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(f"{live_server.url}/api/v1/me", timeout=10)
    assert error.value.headers["WWW-Authenticate"].startswith("Bearer")
