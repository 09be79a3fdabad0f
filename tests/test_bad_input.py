"""Bad input to every body the service accepts: the JSON API, the OAuth
endpoints (form-encoded) and the self-service pages' forms.

Each bad request gets a 4xx with a message a program can act on (the API's
error shape, RFC 6749's on /oauth, form errors on the pages) and writes
nothing: no token, no audit event, no session, no revocation.

Unknown fields: the JSON API refuses them (400 naming the field), as Logto
and ToolJet do. OAuth ignores unknown parameters, as RFC 6749 §3.2 requires,
and the pages ignore unknown form fields, as HTML forms do (browsers send
the CSRF token and the form id alongside the fields).
"""

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.utils import timezone
from django.utils.html import escape
from rest_framework.test import APIClient

from iam.models import AuditEvent, ServiceRole
from iam.tenancy import tenant_set_api_issuance
from tests.factories import UserFactory, administrative_pat, grant, service_role
from tokens.credentials import integration_credential_create
from tokens.models import EmbedSession, IntegrationCredential, PersonalAccessToken, RevokedAccessToken
from tokens.oauth import GRANT_TOKEN_EXCHANGE, PAT_TOKEN_TYPE, oauth_client_create

pytestmark = pytest.mark.django_db

HUGE = 3 * 1024 * 1024  # bytes: beyond Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB)
LONG = "x" * 10_001


@dataclass
class Setup:
    world: object
    pat: str
    admin_pat: str
    credential: str
    oauth_basic: str
    renamed: PersonalAccessToken

    def snapshot(self) -> tuple:
        """Everything a request could write."""
        token = PersonalAccessToken.objects.get(pk=self.renamed.pk)
        return (
            PersonalAccessToken.objects.count(),
            PersonalAccessToken.objects.filter(revoked_at__isnull=False).count(),
            AuditEvent.objects.count(),
            EmbedSession.objects.count(),
            RevokedAccessToken.objects.count(),
            (token.name, token.status, token.expires_at),
        )


@pytest.fixture
def setup(world, settings) -> Setup:
    settings.TOKEN_CREATIONS_PER_MINUTE = 1_000_000
    settings.LEAK_REPORTS_PER_MINUTE = 1_000_000
    admin = UserFactory(username="bad-input-admin", tenant=world.tenant)
    grant(admin, service_role(ServiceRole.MAIN_ADMINISTRATOR))
    tenant_set_api_issuance(tenant=world.tenant, allowed=True, actor=None)
    admin_pat = administrative_pat(admin, ServiceRole.MAIN_ADMINISTRATOR)
    credential = integration_credential_create(
        tenant=world.tenant,
        name="portal",
        actor=None,
        scopes=[IntegrationCredential.Scope.EMBED, IntegrationCredential.Scope.TOKENS_MANAGE],
    )
    client = oauth_client_create(application=world.application, name="backend", actor=None, token_exchange=True)
    basic = base64.b64encode(f"{client.client.client_id}:{client.secret}".encode()).decode()
    return Setup(
        world=world,
        pat=world.issue("exchanged").plaintext,
        admin_pat=admin_pat.plaintext,
        credential=credential.plaintext,
        oauth_basic=f"Basic {basic}",
        renamed=world.issue("to rename").token,
    )


# ---------------------------------------------------------------- the JSON API


@dataclass(frozen=True)
class JsonEndpoint:
    method: str
    path: Callable[[Setup], str]
    authorization: Callable[[Setup], str | None]
    body: Callable[[Setup], dict]
    fields: dict[str, str]  # name -> kind
    required: tuple[str, ...]
    success: int
    expected_writes: bool = field(default=True)


def _future(days: int = 30) -> str:
    return (timezone.now() + timedelta(days=days)).isoformat()


JSON_ENDPOINTS = {
    "leak report": JsonEndpoint(
        "POST",
        lambda s: "/api/v1/leaked-tokens",
        lambda s: None,
        lambda s: {"token": s.pat},
        {"token": "text"},
        ("token",),
        202,
    ),
    "embed token": JsonEndpoint(
        "POST",
        lambda s: "/api/ext/users/personal-access-token",
        lambda s: f"Basic {s.credential}",
        lambda s: {
            "email": s.world.user.email,
            "appId": str(s.world.application.pk),
            "sessionExpiry": 60,
            "patExpiry": 3600,
        },
        {"email": "email", "appId": "uuid", "sessionExpiry": "int", "patExpiry": "int"},
        ("email", "appId", "sessionExpiry", "patExpiry"),
        201,
    ),
    "token create": JsonEndpoint(
        "POST",
        lambda s: f"/api/v1/users/{s.world.user.pk}/personal-access-tokens",
        lambda s: f"Bearer {s.admin_pat}",
        lambda s: {
            "name": "Nightly import",
            "expiresAt": _future(),
            "applicationSlug": s.world.application.slug,
            "roles": ["reader"],
        },
        {"name": "name", "expiresAt": "datetime", "applicationSlug": "slug", "roles": "list"},
        ("name", "expiresAt", "applicationSlug", "roles"),
        201,
    ),
    "token create (credential)": JsonEndpoint(
        "POST",
        lambda s: f"/api/v1/users/{s.world.user.pk}/personal-access-tokens",
        lambda s: f"Basic {s.credential}",
        lambda s: {
            "name": "Nightly import",
            "expiresAt": _future(),
            "applicationId": str(s.world.application.pk),
            "roles": ["reader", "writer"],
        },
        {"name": "name", "expiresAt": "datetime", "applicationId": "uuid", "roles": "list"},
        ("name", "expiresAt", "applicationId", "roles"),
        201,
    ),
    "token rename": JsonEndpoint(
        "PATCH",
        lambda s: f"/api/v1/users/{s.world.user.pk}/personal-access-tokens/{s.renamed.name}",
        lambda s: f"Bearer {s.admin_pat}",
        lambda s: {"name": "renamed"},
        {"name": "name"},
        ("name",),
        200,
    ),
}

# Values of the wrong JSON type, or out of range, for each kind of field.
WRONG_VALUES = {
    "text": [5, 5.5, True, None, [], ["x"], {}, {"a": "b"}, "", "a\x00b", LONG],
    "name": [5, True, None, ["x"], {}, "", "   ", "a\x00b", LONG],
    "email": [5, True, None, ["a@b.example"], {}, "not an email", LONG + "@example.com"],
    "uuid": [5, True, None, [], {}, "not-a-uuid", "0" * 10_000],
    "slug": [5, True, None, [], {}, "not a slug!", "s" * 10_000],
    "datetime": [5, True, None, [], {}, "tomorrow", "2027-13-45T00:00:00Z", "9999-12-31T23:59:59-15:00", LONG],
    "int": ["60", 60.5, True, None, [], {}, 0, -1, 10**30],
    "list": ["reader", 5, None, {}, {"0": "reader"}, [5], [None], [["reader"]], [""], [LONG], ["reader"] * 51, []],
}

INVALID_JSON = [
    b"",
    b"{",
    b"not json",
    b'{"name": "a",}',
    b'{"name": NaN}',
    b"\xff\xfe\x00{",
    b"[" * 100_000 + b"]" * 100_000,
    b"[1, 2]",
    b'"a string"',
    b"null",
    b"42",
]


def json_cases():
    for name, endpoint in JSON_ENDPOINTS.items():
        for field_name, kind in endpoint.fields.items():
            for index, value in enumerate(WRONG_VALUES[kind]):
                yield pytest.param(name, {field_name: value}, field_name, id=f"{name}-{field_name}-{kind}{index}")
        for field_name in endpoint.required:
            yield pytest.param(name, {field_name: ...}, field_name, id=f"{name}-missing-{field_name}")
        yield pytest.param(name, {"isAdmin": True}, "isAdmin", id=f"{name}-unknown-field")


def send(setup: Setup, endpoint: JsonEndpoint, raw: bytes, content_type: str):
    api = APIClient()
    api.raise_request_exception = False
    headers = {}
    if (authorization := endpoint.authorization(setup)) is not None:
        headers["HTTP_AUTHORIZATION"] = authorization
    return api.generic(endpoint.method, endpoint.path(setup), raw, content_type=content_type, **headers)


def assert_api_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code and error["message"], error
    return error


@pytest.mark.parametrize("name", JSON_ENDPOINTS)
def test_the_valid_body_succeeds_so_each_bad_one_below_changes_one_thing(setup, name):
    endpoint = JSON_ENDPOINTS[name]
    before = setup.snapshot()
    response = send(setup, endpoint, json.dumps(endpoint.body(setup)).encode(), "application/json")
    assert response.status_code == endpoint.success, response.content
    assert setup.snapshot() != before


@pytest.mark.parametrize(("name", "change", "field_name"), list(json_cases()))
def test_bad_fields_are_400_naming_the_field_and_write_nothing(setup, name, change, field_name):
    endpoint = JSON_ENDPOINTS[name]
    body = endpoint.body(setup)
    for key, value in change.items():
        if value is ...:
            del body[key]
        else:
            body[key] = value
    before = setup.snapshot()
    response = send(setup, endpoint, json.dumps(body).encode(), "application/json")
    error = assert_api_error(response, 400, "validation_failed")
    assert any(key == field_name or key.startswith(f"{field_name}.") for key in error["fields"]), error
    assert all(isinstance(messages, list) and messages for messages in error["fields"].values()), error
    assert setup.snapshot() == before


@pytest.mark.parametrize("raw", INVALID_JSON, ids=lambda raw: repr(raw[:20]))
@pytest.mark.parametrize("name", JSON_ENDPOINTS)
def test_bodies_that_are_not_a_json_object_are_400(setup, name, raw):
    before = setup.snapshot()
    response = send(setup, JSON_ENDPOINTS[name], raw, "application/json")
    assert response.status_code == 400, (response.status_code, response.content[:300])
    assert response.json()["error"]["code"] in {"parse_error", "validation_failed"}
    assert setup.snapshot() == before


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain", "text/xml"]
)
@pytest.mark.parametrize("name", JSON_ENDPOINTS)
def test_other_content_types_are_415(setup, name, content_type):
    endpoint = JSON_ENDPOINTS[name]
    before = setup.snapshot()
    response = send(setup, endpoint, urlencode(endpoint.body(setup), doseq=True).encode(), content_type)
    assert_api_error(response, 415, "unsupported_media_type")
    assert setup.snapshot() == before


@pytest.mark.parametrize("name", JSON_ENDPOINTS)
def test_huge_bodies_are_413_before_being_read(setup, name):
    endpoint = JSON_ENDPOINTS[name]
    body = {**endpoint.body(setup), "padding": "x" * HUGE}
    before = setup.snapshot()
    response = send(setup, endpoint, json.dumps(body).encode(), "application/json")
    assert_api_error(response, 413, "request_too_large")
    assert setup.snapshot() == before


# ---------------------------------------------------------------- OAuth (form-encoded)

OAUTH_ENDPOINTS = {
    "token": (
        "/oauth/token",
        lambda s: {"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": s.pat, "subject_token_type": PAT_TOKEN_TYPE},
        ("grant_type", "subject_token", "subject_token_type"),
    ),
    "introspect": ("/oauth/introspect", lambda s: {"token": s.pat}, ("token",)),
    # A PAT is not a client's to revoke (400 unsupported_token_type): an unknown token is a valid request.
    "revoke": ("/oauth/revoke", lambda s: {"token": "eyJ.unknown.token"}, ("token",)),
}


def oauth_send(setup: Setup, name: str, raw: bytes, content_type: str = "application/x-www-form-urlencoded"):
    api = APIClient()
    api.raise_request_exception = False
    return api.generic(
        "POST", OAUTH_ENDPOINTS[name][0], raw, content_type=content_type, HTTP_AUTHORIZATION=setup.oauth_basic
    )


def assert_oauth_error(response, status: int, error: str) -> None:
    assert response.status_code == status, (response.status_code, response.content[:300])
    body = response.json()
    assert body["error"] == error and isinstance(body["error_description"], str), body
    assert response["Cache-Control"] == "no-store"


def oauth_cases():
    for name, (_, _, required) in OAUTH_ENDPOINTS.items():
        for parameter in required:
            yield pytest.param(name, {parameter: ...}, id=f"{name}-missing-{parameter}")
            yield pytest.param(name, {parameter: ""}, id=f"{name}-empty-{parameter}")
            yield pytest.param(name, {parameter: "x" * 10_000}, id=f"{name}-oversized-{parameter}")
            yield pytest.param(name, {parameter: ["a", "b"]}, id=f"{name}-repeated-{parameter}")
        yield pytest.param(name, {"client_secret": "ocs_x"}, id=f"{name}-two-client-authentications")
    yield pytest.param("token", {"grant_type": "password"}, id="token-unsupported-grant")
    yield pytest.param("token", {"subject_token_type": "urn:x"}, id="token-unknown-subject-token-type")
    yield pytest.param("token", {"subject_token": "pat_unknown"}, id="token-invalid-subject-token")
    yield pytest.param("token", {"scope": "x" * 9000}, id="token-oversized-scope")
    yield pytest.param("token", {"audience": "https://elsewhere.example"}, id="token-foreign-audience")
    for name in OAUTH_ENDPOINTS:
        yield pytest.param(name, {"client_id": "a\x00b"}, id=f"{name}-nul-character")  # core.middleware's answer


@pytest.mark.parametrize(("name", "change"), list(oauth_cases()))
def test_bad_oauth_parameters_are_400_invalid_request_and_write_nothing(setup, name, change):
    params = OAUTH_ENDPOINTS[name][1](setup)
    for key, value in change.items():
        if value is ...:
            del params[key]
        else:
            params[key] = value
    before = setup.snapshot()
    response = oauth_send(setup, name, urlencode(params, doseq=True).encode())
    assert response.status_code == 400, (response.status_code, response.content[:300])
    assert response.json()["error"] in {
        "invalid_request",
        "invalid_grant",
        "invalid_scope",
        "invalid_target",
        "unsupported_grant_type",
    }
    assert isinstance(response.json()["error_description"], str)
    assert setup.snapshot() == before


@pytest.mark.parametrize("name", OAUTH_ENDPOINTS)
def test_unknown_oauth_parameters_are_ignored_as_rfc_6749_requires(setup, name):
    params = {**OAUTH_ENDPOINTS[name][1](setup), "unknown": "ignored"}
    assert oauth_send(setup, name, urlencode(params).encode()).status_code == 200


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b'{"token": "x"}', "application/json"),
        (b"token=x", "text/plain"),
        (b"--x\r\nContent-Disposition: form-data; name=token\r\n\r\nx\r\n--x--", "multipart/form-data; boundary=x"),
        (b"%ff%fe=%zz&&&=", "application/x-www-form-urlencoded"),
        (b"&".join(b"p%d=1" % i for i in range(2000)), "application/x-www-form-urlencoded"),
    ],
    ids=["json", "text", "multipart", "garbled", "too-many-fields"],
)
@pytest.mark.parametrize("name", OAUTH_ENDPOINTS)
def test_oauth_bodies_that_are_not_a_proper_form_are_400(setup, name, raw, content_type):
    before = setup.snapshot()
    response = oauth_send(setup, name, raw, content_type)
    assert_oauth_error(response, 400, "invalid_request")
    assert setup.snapshot() == before


@pytest.mark.parametrize("name", OAUTH_ENDPOINTS)
def test_huge_oauth_bodies_are_413(setup, name):
    params = {**OAUTH_ENDPOINTS[name][1](setup), "padding": "x" * HUGE}
    before = setup.snapshot()
    response = oauth_send(setup, name, urlencode(params).encode())
    assert_oauth_error(response, 413, "invalid_request")
    assert setup.snapshot() == before


# ---------------------------------------------------------------- the self-service pages


@pytest.fixture
def browser(setup) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(setup.world.user)
    return client


def create_form(setup: Setup, browser: Client) -> dict:
    page = browser.get("/tokens/new/")
    return {
        "form_id": page.context["form_id"],
        "application": str(setup.world.application.pk),
        "name": "Calendar sync",
        "expiry_preset": "30",
        "roles": [str(setup.world.reader.pk)],
    }


def edit_form(setup: Setup, browser: Client) -> dict:
    return {"name": "renamed", "expires_on": _future(10)[:10], "roles": [str(setup.world.reader.pk)]}


PAGES = {"create": ("/tokens/new/", create_form), "edit": (None, edit_form)}

FORM_CASES = {
    "create": {
        "application": ["", "not-a-uuid", "00000000-0000-0000-0000-000000000000", LONG],
        "name": ["", "   ", LONG],
        "expiry_preset": ["", "7.5", "-1", "100000", LONG],
        "roles": [[""], ["abc"], ["99999999999999999999999"], ["-99999999999999999999999"], ["-1"], [LONG]],
    },
    "edit": {
        "name": ["", "   ", LONG],
        "expires_on": ["", "tomorrow", "2027-02-30", "0001-01-01", "9999-12-31", "99999-01-01", LONG],
        "roles": [[""], ["abc"], ["99999999999999999999999"], [LONG]],
    },
}


def form_cases():
    for page, fields in FORM_CASES.items():
        for field_name, values in fields.items():
            for index, value in enumerate(values):
                yield pytest.param(page, {field_name: value}, field_name, id=f"{page}-{field_name}{index}")
            if values:
                yield pytest.param(page, {field_name: ...}, field_name, id=f"{page}-missing-{field_name}")
    yield pytest.param("create", {"expiry_preset": "custom"}, "expires_on", id="create-custom-without-date")
    yield pytest.param(
        "create", {"expiry_preset": "custom", "expires_on": "0001-01-01"}, "expires_on", id="create-date-in-year-1"
    )
    yield pytest.param(
        "create", {"expiry_preset": "custom", "expires_on": "9999-12-31"}, "expires_on", id="create-date-in-year-9999"
    )
    yield pytest.param("create", {"form_id": ...}, "__all__", id="create-missing-form-id")


def page_url(setup: Setup, page: str) -> str:
    return PAGES[page][0] or f"/tokens/{setup.renamed.pk}/edit/"


@pytest.mark.parametrize(("page", "change", "field_name"), list(form_cases()))
def test_bad_form_fields_are_400_on_the_field_and_write_nothing(setup, browser, page, change, field_name):
    data = PAGES[page][1](setup, browser)
    for key, value in change.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    before = setup.snapshot()
    response = browser.post(page_url(setup, page), data)
    assert response.status_code == 400, (response.status_code, response.content[:300])
    errors = response.context["form"].errors
    assert field_name in errors, errors
    assert all(escape(message) in response.content.decode() for message in errors[field_name])
    assert setup.snapshot() == before


@pytest.mark.parametrize("page", PAGES)
def test_a_json_body_to_a_page_is_400_and_writes_nothing(setup, browser, page):
    data = PAGES[page][1](setup, browser)
    before = setup.snapshot()
    response = browser.post(page_url(setup, page), json.dumps(data), content_type="application/json")
    assert response.status_code == 400
    assert response.context["form"].errors
    assert setup.snapshot() == before


@pytest.mark.parametrize("page", PAGES)
def test_a_huge_form_is_400_and_writes_nothing(setup, browser, page):
    data = {**PAGES[page][1](setup, browser), "padding": "x" * HUGE}
    before = setup.snapshot()
    response = browser.post(page_url(setup, page), data)
    assert response.status_code in (400, 413), response.status_code
    assert setup.snapshot() == before


@pytest.mark.parametrize("page", PAGES)
def test_unknown_form_fields_are_ignored_as_html_forms_are(setup, browser, page):
    data = {**PAGES[page][1](setup, browser), "is_admin": "on"}
    response = browser.post(page_url(setup, page), data)
    assert response.status_code in (200, 302), response.status_code
    assert "is_admin" not in response.content.decode()
