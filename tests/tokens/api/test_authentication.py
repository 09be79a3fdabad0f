from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from iam.services import role_grant_remove, user_set_pat_creation_right
from tests.conftest import bearer
from tokens import keys
from tokens.models import PersonalAccessToken
from tokens.services import token_delete, token_revoke

pytestmark = pytest.mark.django_db

ME = "/api/v1/me"
INVALID_BODY = {"error": {"code": "invalid_token", "message": "The access token is invalid, expired or revoked."}}


def assert_refused(response):
    assert response.status_code == 401
    assert response.json() == INVALID_BODY
    assert response["WWW-Authenticate"] == 'Bearer realm="iam", error="invalid_token"'


def test_me_describes_the_credential(api, world):
    issued = world.issue("ci")
    response = bearer(api, issued.plaintext).get(ME)
    assert response.status_code == 200
    body = response.json()
    assert body["user"] == {"id": world.user.pk, "username": world.user.username, "email": world.user.email}
    assert body["tenant"]["slug"] == "acme"
    assert body["application"] == {
        "id": str(world.application.pk),
        "slug": world.application.slug,
        "name": world.application.name,
    }
    assert body["token"]["id"] == issued.token.pk and body["token"]["name"] == "ci"
    assert body["token"]["prefix"] == issued.plaintext[:10] and body["token"]["administrative"] is False
    assert body["token"]["expires_at"]
    assert body["permissions"] == ["orders.read", "orders.write"]
    assert issued.plaintext not in response.content.decode()


def test_missing_credentials_get_401_with_a_challenge(api):
    response = api.get(ME)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer",
        "Bearer ",
        "Bearer  {token}",
        "Bearer {token} ",
        "Bearer {token} extra",
        "Bearer\t{token}",
        "Bearer {token}x",
        "Bearer {truncated}",
        "Bearer {upper}",
        "Bearer pat_",
        "Bearer " + "a" * 5000,
        "Bearer {token}\u200b",
    ],
)
def test_malformed_bearer_headers_get_the_same_401(api, world, header):
    token = world.issue().plaintext
    value = header.format(token=token, truncated=token[:-3], upper=token.upper())
    response = api.get(ME, HTTP_AUTHORIZATION=value)
    # "Bearer\t..." is not our scheme at all, so it is simply unauthenticated.
    assert response.status_code == 401
    if (value.startswith("Bearer ") or value == "Bearer") and value != "Bearer":
        assert_refused(response)


def test_other_schemes_are_not_ours(api, world):
    token = world.issue().plaintext
    response = api.get(ME, HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 401 and response.json()["error"]["code"] == "not_authenticated"


def test_scheme_is_case_insensitive(api, world):
    token = world.issue().plaintext
    assert api.get(ME, HTTP_AUTHORIZATION=f"bearer {token}").status_code == 200


def test_unknown_well_formed_token_is_refused(api, world):
    assert_refused(bearer(api, keys.generate()).get(ME))


def test_expired_token_is_refused_with_the_same_body(api, world):
    issued = world.issue()
    PersonalAccessToken.objects.filter(pk=issued.token.pk).update(
        created_at=timezone.now() - timedelta(days=5), expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert_refused(bearer(api, issued.plaintext).get(ME))


def test_revoked_token_is_refused_on_the_next_request(api, world, user_admin):
    issued = world.issue()
    assert bearer(api, issued.plaintext).get(ME).status_code == 200
    token_revoke(token=issued.token, actor=user_admin)
    assert_refused(api.get(ME))


def test_deleted_token_is_refused(api, world):
    issued = world.issue()
    token_delete(token=issued.token, actor=world.user)
    assert_refused(bearer(api, issued.plaintext).get(ME))


def test_inactive_token_is_refused_and_works_again_when_the_right_returns(api, world, user_admin):
    issued = world.issue()
    user_set_pat_creation_right(user=world.user, allowed=False, actor=user_admin)
    assert_refused(bearer(api, issued.plaintext).get(ME))
    user_set_pat_creation_right(user=world.user, allowed=True, actor=user_admin)
    assert api.get(ME).status_code == 200


def test_role_removal_makes_the_token_inactive(api, world, user_admin):
    issued = world.issue(roles=("writer",))
    role_grant_remove(user=world.user, role=world.writer, actor=user_admin)
    assert_refused(bearer(api, issued.plaintext).get(ME))


def test_token_authenticated_requests_create_no_session_and_set_no_cookie(api, world):
    response = bearer(api, world.issue().plaintext).get(ME)
    assert response.status_code == 200
    assert not response.cookies
    assert "Set-Cookie" not in response


def test_csrf_does_not_apply_to_token_requests(world):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    response = client.post(ME, {}, format="json", HTTP_AUTHORIZATION=f"Bearer {world.issue().plaintext}")
    # Authenticated (not 401/403 for CSRF); POST is simply not allowed on this endpoint.
    assert response.status_code == 405


def test_last_used_is_written_at_most_once_a_minute(api, world, django_assert_num_queries):
    issued = world.issue()
    client = bearer(api, issued.plaintext)
    client.get(ME, REMOTE_ADDR="10.9.8.7")
    issued.token.refresh_from_db()
    first = issued.token.last_used_at
    assert first is not None and issued.token.last_used_ip == "10.9.8.7"
    # Within the minute: one read, no write.
    with django_assert_num_queries(1):
        client.get(ME, REMOTE_ADDR="10.9.8.8")
    issued.token.refresh_from_db()
    assert issued.token.last_used_at == first and issued.token.last_used_ip == "10.9.8.7"
    PersonalAccessToken.objects.filter(pk=issued.token.pk).update(last_used_at=first - timedelta(seconds=61))
    client.get(ME, REMOTE_ADDR="10.9.8.8")
    issued.token.refresh_from_db()
    assert issued.token.last_used_at > first and issued.token.last_used_ip == "10.9.8.8"


def test_malformed_tokens_are_refused_without_a_query(api, world, django_assert_num_queries):
    token = world.issue().plaintext
    broken = token[:-1] + ("B" if token.endswith("A") else "A")  # one token in 62 ends with "A" already
    with django_assert_num_queries(0):
        response = api.get(ME, HTTP_AUTHORIZATION=f"Bearer {broken}")
    assert response.status_code == 401


def test_unknown_and_unusable_tokens_cost_the_same_queries(api, world, user_admin, django_assert_num_queries):
    revoked = world.issue("revoked")
    token_revoke(token=revoked.token, actor=user_admin)
    for token in (keys.generate(), revoked.plaintext):
        with django_assert_num_queries(1):
            assert_refused(api.get(ME, HTTP_AUTHORIZATION=f"Bearer {token}"))


def test_tokens_hashed_under_a_retired_pepper_still_work_and_move_to_the_current_one(api, world):
    with override_settings(TOKEN_PEPPERS={"old": b"o" * 40}):
        issued = world.issue()
    assert issued.token.pepper_id == "old"
    with override_settings(TOKEN_PEPPERS={"new": b"n" * 40, "old": b"o" * 40}):
        assert bearer(api, issued.plaintext).get(ME).status_code == 200
        issued.token.refresh_from_db()
        assert issued.token.pepper_id == "new" and issued.token.digest == keys.digest(issued.plaintext)
    with override_settings(TOKEN_PEPPERS={"new": b"n" * 40}):
        assert api.get(ME).status_code == 200


def test_a_token_of_one_tenant_sees_only_its_own_identity(api, world, other_world):
    mine = world.issue()
    theirs = other_world.issue()
    assert bearer(api, mine.plaintext).get(ME).json()["tenant"]["slug"] == "acme"
    assert bearer(api, theirs.plaintext).get(ME).json()["tenant"]["slug"] == "globex"


def test_unknown_api_paths_answer_json_404(api):
    response = api.get("/api/v1/does-not-exist")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "Not found."}}
