"""The OpenAPI schema says what the API does: regression tests for the
mismatches schemathesis found (tests/test_api_fuzz.py)."""

import re

import pytest
import schemathesis
from django.test import Client
from schemathesis.specs.openapi.adapter.security import declares_security, has_effective_optional_auth
from schemathesis.specs.openapi.checks import get_security_parameters

pytestmark = pytest.mark.django_db

BODY_OPERATIONS = [
    ("/api/v1/leaked-tokens", "post"),
    ("/api/ext/users/personal-access-token", "post"),
    ("/api/v1/users/{userId}/personal-access-tokens", "post"),
    ("/api/v1/users/{userId}/personal-access-tokens/{name}", "patch"),
]
OAUTH_CLIENT_OPERATIONS = ["/oauth/token", "/oauth/introspect", "/oauth/revoke"]
AUTHENTICATED_OPERATIONS = [
    ("/api/v1/me", "get"),
    ("/api/v1/admin/health", "get"),
    ("/api/v1/admin/audit-events", "get"),
    ("/api/ext/users/personal-access-token", "post"),
    ("/api/v1/users/{userId}/personal-access-tokens", "get"),
    ("/api/v1/users/{userId}/personal-access-tokens", "post"),
    ("/api/v1/users/{userId}/personal-access-tokens/{name}", "patch"),
    ("/api/v1/users/{userId}/personal-access-tokens/{name}", "delete"),
]


@pytest.fixture
def schema(client) -> dict:
    return client.get("/api/schema/", {"format": "json"}).json()


def component(schema: dict, reference: dict) -> dict:
    return schema["components"]["schemas"][reference["$ref"].rsplit("/", 1)[1]]


def request_body(schema: dict, path: str, method: str, media_type: str = "application/json") -> dict:
    return component(schema, schema["paths"][path][method]["requestBody"]["content"][media_type]["schema"])


def test_the_audit_trail_documents_its_page_and_nullable_fields(schema):
    responses = schema["paths"]["/api/v1/admin/audit-events"]["get"]["responses"]
    assert {"200", "400", "401", "403", "429"} <= set(responses)
    page = component(schema, responses["200"]["content"]["application/json"]["schema"])
    event = component(schema, page["properties"]["results"]["items"])
    assert event["properties"]["tenant"]["nullable"] and event["properties"]["token"]["nullable"]


def test_the_audit_trail_parameters_state_their_bounds(schema):
    parameters = {p["name"]: p["schema"] for p in schema["paths"]["/api/v1/admin/audit-events"]["get"]["parameters"]}
    assert parameters["token"] == {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
    assert parameters["limit"] == {"type": "integer", "minimum": 1, "maximum": 500}
    assert parameters["offset"]["minimum"] == 0
    assert parameters["tenant"]["minLength"] == 1


def test_tokens_never_used_have_null_last_use(schema):
    token = schema["components"]["schemas"]["Token"]["properties"]
    assert token["lastUsedAt"]["nullable"] and token["lastUsedIp"]["nullable"]
    assert "token" in schema["components"]["schemas"]["CreatedToken"]["properties"]


@pytest.mark.parametrize(("path", "method"), BODY_OPERATIONS)
def test_json_bodies_refuse_unknown_fields_and_document_size_and_type_errors(schema, path, method):
    assert request_body(schema, path, method)["additionalProperties"] is False
    assert {"400", "413", "415"} <= set(schema["paths"][path][method]["responses"])


@pytest.mark.parametrize(("path", "method"), AUTHENTICATED_OPERATIONS)
def test_authenticated_operations_document_401_and_429(schema, path, method):
    assert {"400", "401", "429"} <= set(schema["paths"][path][method]["responses"])


def test_a_change_needs_a_name_or_a_purpose(schema):
    body = request_body(schema, "/api/v1/users/{userId}/personal-access-tokens/{name}", "patch")
    assert body["allOf"] == [{"anyOf": [{"required": ["name"]}, {"required": ["purpose"]}]}]
    assert body["additionalProperties"] is False


def test_alternatives_are_exactly_one_of(schema):
    embed = request_body(schema, "/api/ext/users/personal-access-token", "post")
    assert embed["allOf"] == [
        {"oneOf": [{"required": ["email"]}, {"required": ["userId"]}]},
        {"oneOf": [{"required": ["appId"]}, {"required": ["appSlug"]}]},
    ]
    create = request_body(schema, "/api/v1/users/{userId}/personal-access-tokens", "post")
    assert create["allOf"] == [{"oneOf": [{"required": ["applicationId"]}, {"required": ["applicationSlug"]}]}]


def test_oauth_forms_take_single_unknown_parameters_and_name_the_grant(schema):
    exchange = request_body(schema, "/oauth/token", "post", "application/x-www-form-urlencoded")
    assert exchange["additionalProperties"] == {"type": "string", "maxLength": 8192}
    assert component(schema, exchange["properties"]["grant_type"])["enum"] == [
        "urn:ietf:params:oauth:grant-type:token-exchange"
    ]
    assert "minLength" not in exchange["properties"]["scope"]  # an empty parameter counts as omitted
    assert "413" in schema["paths"]["/oauth/token"]["post"]["responses"]


def test_oauth_operations_declare_client_authentication(schema):
    # Judged by schemathesis: its validator (OpenAPI 3.0's own JSON Schema) and its reading of the
    # security requirements, which decides what a generated client sends.
    loaded = schemathesis.openapi.from_dict(schema)
    loaded.validate()
    basic = schema["components"]["securitySchemes"]["oauthClientBasic"]
    assert (basic["type"], basic["scheme"]) == ("http", "basic")
    assert "client_id:client_secret" in basic["description"] and "client_secret_post" in basic["description"]
    for path in OAUTH_CLIENT_OPERATIONS:
        operation = schema["paths"][path]["post"]
        assert operation["security"] == [{"oauthClientBasic": []}]  # never {}: that would be anonymous
        assert "client_secret_post" in operation["description"]
        body = request_body(schema, path, "post", "application/x-www-form-urlencoded")
        assert {"client_id", "client_secret"} <= set(body["properties"])
        assert not {"client_id", "client_secret"} & set(body.get("required", []))  # Basic is the other way
        parsed = loaded[path]["POST"]
        assert declares_security(parsed) and not has_effective_optional_auth(parsed, schema)
        (header,) = get_security_parameters(parsed)
        assert (header.name, header.definition["schema"]["format"]) == ("Authorization", "_basic_auth")
    for path in ("/.well-known/jwks.json", "/.well-known/oauth-authorization-server"):
        assert schema["paths"][path]["get"]["security"] == [{}]
        assert has_effective_optional_auth(loaded[path]["GET"], schema)


def test_unknown_api_paths_answer_json_404_to_any_method():
    # CSRF used to answer a POST, PATCH or DELETE here with its HTML 403 page.
    client = Client(enforce_csrf_checks=True)
    for method in ("post", "patch", "delete"):
        response = getattr(client, method)("/api/v1/users/-5/personal-access-tokens")
        assert response.status_code == 404
        assert response.json() == {"error": {"code": "not_found", "message": "Not found."}}


def test_component_names_say_what_they_are_once(schema):
    # drf-spectacular appends "Request" to request components; a serializer already named so keeps its name.
    names = set(schema["components"]["schemas"])
    assert {"EmbedTokenRequest", "TokenExchangeRequest", "TokenCreateRequest"} <= names
    assert not [name for name in names if re.search(r"(Request|Response){2}$", name)]
