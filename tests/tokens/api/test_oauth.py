"""OAuth 2.0: token exchange (RFC 8693), introspection (RFC 7662), revocation
(RFC 7009), JWKS and metadata, through a real OAuth client library."""

import base64
import time

import jwt
import pytest
from authlib.integrations.requests_client import OAuth2Session
from django.core import mail
from django.test import override_settings

from iam.services import role_grant_remove
from tests.conftest import bearer
from tokens.models import TokenStatus
from tokens.oauth import GRANT_TOKEN_EXCHANGE, LOGTO_PAT_TOKEN_TYPE, PAT_TOKEN_TYPE, oauth_client_create
from tokens.services import token_revoke

pytestmark = pytest.mark.django_db


@pytest.fixture
def oauth_client(world):
    return oauth_client_create(application=world.application, name="crm backend", actor=None, token_exchange=True)


def exchange(api, client, subject_token, *, method="basic", token_type=PAT_TOKEN_TYPE, **params):
    data = {
        "grant_type": GRANT_TOKEN_EXCHANGE,
        "subject_token": subject_token,
        "subject_token_type": token_type,
        **params,
    }
    extra = {}
    if method == "basic":
        credentials = base64.b64encode(f"{client.client.client_id}:{client.secret}".encode()).decode()
        extra["HTTP_AUTHORIZATION"] = f"Basic {credentials}"
    else:
        data.update(client_id=client.client.client_id, client_secret=client.secret)
    return api.generic("POST", "/oauth/token", _form(data), content_type="application/x-www-form-urlencoded", **extra)


def _form(data: dict) -> str:
    from urllib.parse import urlencode

    return urlencode(data, doseq=True)


def test_exchange_with_authlib_and_verify_with_pyjwt_against_the_jwks(live_server, world, oauth_client, settings):
    pat = world.issue("exchange me", roles=("reader",)).plaintext
    session = OAuth2Session(
        oauth_client.client.client_id, oauth_client.secret, token_endpoint_auth_method="client_secret_basic"
    )
    token = session.fetch_token(
        f"{live_server.url}/oauth/token",
        grant_type=GRANT_TOKEN_EXCHANGE,
        subject_token=pat,
        subject_token_type=LOGTO_PAT_TOKEN_TYPE,
        scope="orders.read",
    )
    assert token["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert token["token_type"] == "Bearer" and token["scope"] == "orders.read" and token["expires_in"] == 3600
    jwk_client = jwt.PyJWKClient(f"{live_server.url}/.well-known/jwks.json")
    key = jwk_client.get_signing_key_from_jwt(token["access_token"])
    claims = jwt.decode(
        token["access_token"], key.key, algorithms=["RS256"], audience=settings.PUBLIC_URL, issuer=settings.PUBLIC_URL
    )
    assert claims["sub"] == str(world.user.pk) and claims["client_id"] == oauth_client.client.client_id
    assert claims["scope"] == "orders.read" and claims["tenant"] == "acme"
    assert claims["application"] == str(world.application.pk) and claims["jti"]
    assert jwt.get_unverified_header(token["access_token"])["kid"] == "test-2"

    # Introspection and revocation through the same library.
    introspected = session.introspect_token(f"{live_server.url}/oauth/introspect", token=token["access_token"]).json()
    assert introspected["active"] is True and introspected["scope"] == "orders.read"
    assert introspected["username"] == world.user.username and introspected["token_type"] == "Bearer"
    assert introspected["token_kind"] == "access_token" and introspected["client_id"] == oauth_client.client.client_id
    assert settings.PUBLIC_URL in introspected["aud"]
    assert session.revoke_token(f"{live_server.url}/oauth/revoke", token=token["access_token"]).status_code == 200
    assert session.introspect_token(f"{live_server.url}/oauth/introspect", token=token["access_token"]).json() == {
        "active": False
    }


def test_client_secret_post_and_the_default_scope(api, world, oauth_client):
    response = exchange(api, oauth_client, world.issue().plaintext, method="post")
    assert response.status_code == 200
    assert response.json()["scope"] == "orders.read orders.write"
    assert response["Cache-Control"] == "no-store"


def test_the_access_token_works_on_our_api_until_the_pat_stops(api, world, oauth_client, user_admin):
    issued = world.issue(roles=("reader", "writer"))
    access = exchange(api, oauth_client, issued.plaintext, scope="orders.read").json()["access_token"]
    me = bearer(api, access).get("/api/v1/me")
    assert me.status_code == 200 and me.json()["permissions"] == ["orders.read"]
    role_grant_remove(user=world.user, role=world.writer, actor=user_admin)  # PAT inactive
    assert bearer(api, access).get("/api/v1/me").status_code == 401


def test_a_revoked_pat_stops_its_access_tokens_at_once(api, world, oauth_client, user_admin):
    issued = world.issue()
    access = exchange(api, oauth_client, issued.plaintext).json()["access_token"]
    assert bearer(api, access).get("/api/v1/me").status_code == 200
    token_revoke(token=issued.token, actor=user_admin)
    assert bearer(api, access).get("/api/v1/me").status_code == 401


@pytest.mark.parametrize(
    ("change", "status", "error"),
    [
        ({"grant_type": "client_credentials"}, 400, "unsupported_grant_type"),
        ({"grant_type": ""}, 400, "invalid_request"),
        ({"subject_token": ""}, 400, "invalid_request"),
        ({"subject_token_type": "urn:ietf:params:oauth:token-type:jwt"}, 400, "invalid_request"),
        ({"subject_token": "pat_" + "A" * 36}, 400, "invalid_grant"),
        ({"scope": "settings.manage"}, 400, "invalid_scope"),
        ({"scope": "orders.read orders.delete"}, 400, "invalid_scope"),
        ({"resource": "https://elsewhere.example"}, 400, "invalid_target"),
    ],
)
def test_token_endpoint_errors_follow_rfc_6749(api, world, oauth_client, change, status, error):
    params = {"subject_token": world.issue().plaintext, **change}
    data = {"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token_type": PAT_TOKEN_TYPE, **params}
    credentials = base64.b64encode(f"{oauth_client.client.client_id}:{oauth_client.secret}".encode()).decode()
    response = api.generic(
        "POST",
        "/oauth/token",
        _form(data),
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=f"Basic {credentials}",
    )
    assert response.status_code == status
    assert response.json()["error"] == error and response.json()["error_description"]


def test_wrong_or_missing_client_authentication_is_invalid_client(api, world, oauth_client):
    pat = world.issue().plaintext
    data = _form({"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": pat, "subject_token_type": PAT_TOKEN_TYPE})
    for header in (
        {},
        {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"oc_x:ocs_wrong").decode()},
        {"HTTP_AUTHORIZATION": "Basic !!!"},
    ):
        response = api.generic("POST", "/oauth/token", data, content_type="application/x-www-form-urlencoded", **header)
        assert response.status_code == 401 and response.json()["error"] == "invalid_client"
        assert response["WWW-Authenticate"].startswith("Basic")


def test_parameters_come_from_the_form_body_only_and_once(api, world, oauth_client):
    pat = world.issue().plaintext
    credentials = base64.b64encode(f"{oauth_client.client.client_id}:{oauth_client.secret}".encode()).decode()
    auth = {"HTTP_AUTHORIZATION": f"Basic {credentials}"}
    as_json = api.post(
        "/oauth/token",
        {"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": pat, "subject_token_type": PAT_TOKEN_TYPE},
        format="json",
        **auth,
    )
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"
    in_query = api.generic(
        "POST",
        f"/oauth/token?{_form({'grant_type': GRANT_TOKEN_EXCHANGE})}",
        "",
        content_type="application/x-www-form-urlencoded",
        **auth,
    )
    assert in_query.json()["error"] == "invalid_request"
    repeated = _form(
        {"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": [pat, pat], "subject_token_type": PAT_TOKEN_TYPE}
    )
    response = api.generic("POST", "/oauth/token", repeated, content_type="application/x-www-form-urlencoded", **auth)
    assert response.json()["error"] == "invalid_request" and "repeated" in response.json()["error_description"]


def test_exchange_is_off_by_default_and_the_pat_must_be_of_the_clients_application(api, world, other_world):
    closed = oauth_client_create(application=world.application, name="no exchange", actor=None)
    assert exchange(api, closed, world.issue().plaintext).json()["error"] == "unauthorized_client"
    foreign = oauth_client_create(application=other_world.application, name="other", actor=None, token_exchange=True)
    response = exchange(api, foreign, world.issue("x").plaintext)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_allowed_scopes_of_the_client_narrow_the_grant(api, world):
    client = oauth_client_create(
        application=world.application, name="narrow", actor=None, token_exchange=True, allowed_scopes=["orders.read"]
    )
    assert exchange(api, client, world.issue().plaintext).json()["scope"] == "orders.read"


def test_introspection_of_pats_embed_sessions_and_garbage(api, world, oauth_client, other_world, credential):
    credentials = base64.b64encode(f"{oauth_client.client.client_id}:{oauth_client.secret}".encode()).decode()

    def introspect(value):
        return api.generic(
            "POST",
            "/oauth/introspect",
            _form({"token": value}),
            content_type="application/x-www-form-urlencoded",
            HTTP_AUTHORIZATION=f"Basic {credentials}",
        ).json()

    pat = world.issue()
    described = introspect(pat.plaintext)
    assert described["active"] is True and described["token_type"] == "Bearer"
    assert described["token_kind"] == "personal_access_token"
    assert "client_id" not in described and "aud" not in described  # issued to its owner, by no OAuth client
    assert described["sub"] == str(world.user.pk) and described["tenant"] == "acme"
    assert described["exp"] == int(pat.token.expires_at.timestamp())
    for value in ("garbage", "a.b.c", "pat_" + "A" * 36, other_world.issue().plaintext, "emb_" + "B" * 36):
        assert introspect(value) == {"active": False}
    embed = api.post(
        "/api/ext/users/personal-access-token",
        {"email": world.user.email, "appId": str(world.application.pk), "sessionExpiry": 5, "patExpiry": 600},
        format="json",
        HTTP_AUTHORIZATION=f"Basic {credential.plaintext}",
    ).json()["personalAccessToken"]
    location = api.get(f"/embed-apps/{world.application.pk}", {"personal-access-token": embed})["Location"]
    session = introspect(location.split("#session=")[1])
    assert session["active"] is True and session["token_type"] == "Bearer" and session["token_kind"] == "embed_session"


def test_jwks_keeps_rotated_keys_so_old_tokens_verify(api, world, oauth_client, settings):
    rotated = dict(reversed(list(settings.JWT_SIGNING_KEYS.items())))  # test-1 signs now
    old = exchange(api, oauth_client, world.issue().plaintext).json()["access_token"]
    with override_settings(JWT_SIGNING_KEYS=rotated):
        keys = api.get("/.well-known/jwks.json").json()["keys"]
        assert [key["kid"] for key in keys] == ["test-1", "test-2"]
        assert all(key["kty"] == "RSA" and key["alg"] == "RS256" and "d" not in key for key in keys)
        new = exchange(api, oauth_client, world.issue("second").plaintext).json()["access_token"]
        assert jwt.get_unverified_header(new)["kid"] == "test-1"
        assert bearer(api, old).get("/api/v1/me").status_code == 200
        assert bearer(api, new).get("/api/v1/me").status_code == 200


def test_forged_or_expired_access_tokens_are_refused(api, world, oauth_client, settings):
    access = exchange(api, oauth_client, world.issue().plaintext).json()["access_token"]
    claims = jwt.decode(access, options={"verify_signature": False})
    forged = jwt.encode({**claims, "scope": "settings.manage"}, "s" * 40, algorithm="HS256", headers={"kid": "test-2"})
    assert bearer(api, forged).get("/api/v1/me").status_code == 401
    none_alg = jwt.encode({**claims}, None, algorithm="none")
    assert bearer(api, none_alg).get("/api/v1/me").status_code == 401
    from tokens.signing import _signing_keys

    expired = jwt.encode(
        {**claims, "exp": int(time.time()) - 10}, _signing_keys()[0][1], algorithm="RS256", headers={"kid": "test-2"}
    )
    assert bearer(api, expired).get("/api/v1/me").status_code == 401


def test_metadata(api, settings):
    body = api.get("/.well-known/oauth-authorization-server").json()
    assert body["issuer"] == settings.PUBLIC_URL and body["token_endpoint"].endswith("/oauth/token")
    assert GRANT_TOKEN_EXCHANGE in body["grant_types_supported"]
    assert body["jwks_uri"].endswith("/.well-known/jwks.json")


def test_report_a_leaked_token(api, world, django_capture_on_commit_callbacks):
    issued = world.issue("leaky")
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/v1/leaked-tokens", {"token": issued.plaintext}, format="json")
    assert response.status_code == 202 and response.json() == {"status": "received"}
    issued.token.refresh_from_db()
    assert issued.token.status == TokenStatus.REVOKED
    assert len(mail.outbox) == 1 and "leaked" in mail.outbox[0].subject
    assert mail.outbox[0].to == [world.user.email] and issued.plaintext not in mail.outbox[0].body
    # The same answer for a token that does not exist.
    assert api.post("/api/v1/leaked-tokens", {"token": "pat_" + "A" * 36}, format="json").json() == {
        "status": "received"
    }


def test_leak_reports_are_rate_limited(api):
    codes = [api.post("/api/v1/leaked-tokens", {"token": "x"}, format="json").status_code for _ in range(11)]
    assert codes[-1] == 429 and codes[0] == 202


def test_openapi_schema_and_docs_are_served(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in (
        "/api/v1/me",
        "/api/ext/users/personal-access-token",
        "/oauth/token",
        "/oauth/introspect",
        "/api/v1/users/{userId}/personal-access-tokens",
        "/api/v1/leaked-tokens",
    ):
        assert path in paths
    embed = paths["/api/ext/users/personal-access-token"]["post"]
    assert {"201", "400", "401", "403", "404", "429"} <= set(embed["responses"])
    docs = api.get("/api/docs/")
    assert docs.status_code == 200 and b"<script>" not in docs.content


def test_every_operation_documents_examples_and_errors(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            name = f"{method.upper()} {path}"
            responses = operation["responses"]
            if not path.startswith("/.well-known/"):  # public discovery documents have no error cases
                assert any(code.startswith("4") for code in responses), f"{name} documents no error response"
            has_example = any(
                "examples" in content or "example" in content
                for part in [operation.get("requestBody", {}), *responses.values()]
                for content in part.get("content", {}).values()
            )
            assert has_example, f"{name} has no example"


def test_an_empty_parameter_counts_as_omitted(api, world, oauth_client):
    # RFC 6749 §3.1. An empty client_secret beside a Basic header was refused as two authentications.
    response = exchange(api, oauth_client, world.issue().plaintext, client_secret="", scope="")
    assert response.status_code == 200, response.json()
    response = exchange(api, oauth_client, "")
    assert response.status_code == 400 and response.json()["error_description"] == "subject_token is required."


def test_oversized_crowded_or_huge_forms_get_rfc_6749_errors(api, world, oauth_client):
    # Too many parameters and a body past DATA_UPLOAD_MAX_MEMORY_SIZE were Django's HTML 400 page.
    response = exchange(api, oauth_client, "x" * 8193)
    assert response.status_code == 400 and "longer than 8192" in response.json()["error_description"]
    crowded = exchange(api, oauth_client, world.issue().plaintext, **{f"p{i}": "1" for i in range(1001)})
    assert crowded.status_code == 400 and crowded.json()["error"] == "invalid_request"
    huge = exchange(api, oauth_client, world.issue("huge").plaintext, padding="x" * 3_000_000)
    assert huge.status_code == 413 and huge.json()["error"] == "invalid_request"


def test_a_leak_report_pasted_with_a_newline_still_revokes(api, world):
    issued = world.issue("pasted")
    response = api.post("/api/v1/leaked-tokens", {"token": f"{issued.plaintext}\n"}, format="json")
    assert response.status_code == 202
    issued.token.refresh_from_db()
    assert issued.token.status == TokenStatus.REVOKED


def test_exchanged_access_tokens_are_rfc_9068_jwt_access_tokens(live_server, world, oauth_client, settings):
    """Judged by joserfc (the header) and Authlib's RFC 9068 resource-server validator (the claims)."""
    from authlib.oauth2.rfc9068 import JWTBearerTokenValidator
    from joserfc import jwt as jose_jwt
    from joserfc.jwk import KeySet

    pat = world.issue("rfc 9068", roles=("reader",)).plaintext
    access_token = exchange(api_client(), oauth_client, pat).json()["access_token"]
    keys = KeySet.import_key_set(requests_get(f"{live_server.url}/.well-known/jwks.json"))
    decoded = jose_jwt.decode(access_token, keys, algorithms=["RS256"])
    assert decoded.header["typ"] == "at+jwt"  # §2.1

    class Validator(JWTBearerTokenValidator):
        def get_jwks(self):
            return KeySet.import_key_set(requests_get(f"{live_server.url}/.well-known/jwks.json"))

    validator = Validator(issuer=settings.PUBLIC_URL, resource_server=settings.PUBLIC_URL)
    claims = validator.authenticate_token(access_token)  # §2.2: iss, exp, aud, sub, client_id, iat, jti essential
    validator.validate_token(claims, scopes=["orders.read"], request=None)
    assert claims["client_id"] == oauth_client.client.client_id and claims["sub"] == str(world.user.pk)


def test_a_jwt_signed_with_our_key_but_not_typed_as_an_access_token_is_refused(api, world, oauth_client):
    from tokens.signing import _signing_keys

    pat = world.issue("typed", roles=("reader",)).plaintext
    access_token = exchange(api, oauth_client, pat).json()["access_token"]
    assert bearer(api, access_token).get("/api/v1/me").status_code == 200
    claims = jwt.decode(access_token, options={"verify_signature": False})
    kid, key = _signing_keys()[0]
    for typ in ("JWT", None, "id_token+jwt"):
        headers = {"kid": kid, **({"typ": typ} if typ else {})}
        forged = jwt.encode(claims, key, algorithm="RS256", headers=headers)
        assert bearer(api, forged).get("/api/v1/me").status_code == 401, typ


def test_metadata_passes_authlibs_rfc_8414_validation(api, settings):
    from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

    settings.PUBLIC_URL = "https://iam.example"  # RFC 8414 §2: the issuer is an https URL
    body = api.get("/.well-known/oauth-authorization-server").json()
    AuthorizationServerMetadata(body).validate()
    assert "token_endpoint_auth_signing_alg_values_supported" not in body  # no JWT client authentication offered


def test_revoking_a_pat_through_oauth_is_refused_never_a_false_success(live_server, world, oauth_client):
    """RFC 7009 §2.2.1, judged by Authlib's generic revoke_token()."""
    issued = world.issue("not the client's to revoke", roles=("reader",))
    session = OAuth2Session(oauth_client.client.client_id, oauth_client.secret)
    response = session.revoke_token(f"{live_server.url}/oauth/revoke", token=issued.plaintext)
    assert response.status_code == 400 and response.json()["error"] == "unsupported_token_type"
    me = requests_get(f"{live_server.url}/api/v1/me", headers={"Authorization": f"Bearer {issued.plaintext}"})
    assert me["user"]["username"] == world.user.username  # still active: nothing pretended otherwise
    # A value of no known form is still answered as RFC 7009 §2.2 asks (200, nothing revealed).
    assert session.revoke_token(f"{live_server.url}/oauth/revoke", token="garbage").status_code == 200


def api_client():
    from rest_framework.test import APIClient

    return APIClient()


def requests_get(url: str, headers: dict | None = None) -> dict:
    import requests

    response = requests.get(url, headers=headers or {}, timeout=10)
    response.raise_for_status()
    return response.json()


def test_a_resource_server_protects_an_endpoint_with_authlibs_introspection_validator(live_server, world, oauth_client):
    """Authlib's RFC 7662 validator, as a resource server would run it, against our introspection."""
    import requests
    from authlib.oauth2.rfc6750 import InsufficientScopeError, InvalidTokenError
    from authlib.oauth2.rfc7662 import IntrospectTokenValidator

    class Validator(IntrospectTokenValidator):
        def introspect_token(self, token_string):
            response = requests.post(
                f"{live_server.url}/oauth/introspect",
                data={"token": token_string},
                auth=(oauth_client.client.client_id, oauth_client.secret),
                timeout=10,
            )
            response.raise_for_status()
            return response.json()

    validator = Validator()
    issued = world.issue("behind a resource server", roles=("reader",))
    access_token = exchange(api_client(), oauth_client, issued.plaintext).json()["access_token"]
    for value in (issued.plaintext, access_token):
        token = validator.authenticate_token(value)
        validator.validate_token(token, ["orders.read"], None)  # allowed
        assert token["token_type"].lower() == validator.TOKEN_TYPE  # the type the validator protects: bearer
        with pytest.raises(InsufficientScopeError):
            validator.validate_token(token, ["orders.write"], None)
    token_revoke(token=issued.token, actor=None, actor_label="test")
    for value in (issued.plaintext, access_token):
        with pytest.raises(InvalidTokenError):
            validator.validate_token(validator.authenticate_token(value), ["orders.read"], None)


def test_several_resources_and_audiences_and_a_clear_refusal_of_delegation(live_server, world, oauth_client, settings):
    """RFC 8693 §2.1. Repeated parameters through requests (Authlib's token request folds them into
    one); the refusals through Authlib."""
    import requests
    from authlib.integrations.base_client import OAuthError as AuthlibOAuthError

    pat = world.issue("several targets", roles=("reader",)).plaintext
    session = OAuth2Session(oauth_client.client.client_id, oauth_client.secret)
    application = f"urn:iam:application:{world.application.pk}"
    base = {"subject_token": pat, "subject_token_type": PAT_TOKEN_TYPE}
    auth = (oauth_client.client.client_id, oauth_client.secret)

    def exchange_for(*targets):
        data = [("grant_type", GRANT_TOKEN_EXCHANGE), *base.items(), *targets]
        return requests.post(f"{live_server.url}/oauth/token", data=data, auth=auth, timeout=10)

    granted = exchange_for(("resource", settings.PUBLIC_URL), ("resource", application), ("audience", application))
    assert granted.status_code == 200, granted.text
    claims = jwt.decode(granted.json()["access_token"], options={"verify_signature": False})
    assert claims["aud"] == [settings.PUBLIC_URL, application]  # each once, in the order asked
    unknown = exchange_for(("resource", settings.PUBLIC_URL), ("resource", "https://elsewhere.example"))
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_target"

    for extra, words in (
        ({"actor_token": pat}, "go together"),
        ({"actor_token_type": PAT_TOKEN_TYPE}, "go together"),
        ({"actor_token": pat, "actor_token_type": PAT_TOKEN_TYPE}, "not offered"),
    ):
        with pytest.raises(AuthlibOAuthError) as refused:
            session.fetch_token(f"{live_server.url}/oauth/token", grant_type=GRANT_TOKEN_EXCHANGE, **base, **extra)
        assert "invalid_request" in str(refused.value) and words in str(refused.value), extra
